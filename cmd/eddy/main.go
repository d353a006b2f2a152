// Command eddy is the telemetry streaming appliance: `eddy run` is the
// daemon; the other subcommands help technicians and operators around it.
//
// Every subcommand answers -h and --help with its own usage on stdout
// (exit 0); `eddy help` and `eddy` alone list the subcommands.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// Exit statuses.
const (
	exitOK     = 0
	exitFail   = 1
	exitConfig = 2 // a bad config or command line
)

// command is one subcommand: its name, the synopsis of its arguments, a
// one-line summary for `eddy help`, and its entry point.
type command struct {
	name     string
	synopsis string
	summary  string
	run      func(args []string, stdout, stderr io.Writer) int
}

// commands lists the subcommands in the order `eddy help` shows them.
// A subcommand that adds itself (e.g. `collect`, the fleet collector)
// takes one entry here and parses its flags with newFlagSet/parseFlags.
func commands() []command {
	return []command{
		{"run", "[--config FILE] [--listen ADDR] [--data DIR] [--debug-listen ADDR]", "run the daemon (sensors and MQTT into the ring log, streamed over HTTP/2 and HTTP/3)", func(a []string, o, e io.Writer) int { return runCmd(a, o, e) }},
		{"tail", "URL [--topic FILTER]... [--last-event-id ID] [--http3] [--token T] [--ca FILE | --fingerprint SHA256]", "subscribe to a device and print one JSON record per line, resuming after disconnects", tailCmd},
		{"token", "[--config FILE] [--data DIR]", "print the access token of the daemon that uses this config or data directory", tokenCmd},
		{"cert", "[--config FILE] [--data DIR]", "print the device certificate's SHA-256 fingerprint and the CA file to trust", certCmd},
		{"check-config", "FILE", "check a config file without starting anything; every error, with its line", checkConfigCmd},
		{"collect", "--config FILE", "the fleet collector: follow many devices' /events into NATS JetStream", collectCmd},
		{"version", "", "print version information", versionCmd},
		{"help", "[COMMAND]", "list the commands, or show one command's usage", nil},
	}
}

func main() {
	os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
}

func realMain(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		printCommands(stderr)
		return exitConfig
	}
	name, rest := args[0], args[1:]
	switch name {
	case "help", "-h", "-help", "--help":
		return helpCmd(rest, stdout, stderr)
	case "--version", "-version":
		name = "version"
	}
	for _, c := range commands() {
		if c.name == name && c.run != nil {
			return c.run(rest, stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "eddy: unknown command %q\n\n", name)
	printCommands(stderr)
	return exitConfig
}

// helpCmd lists the commands, or shows the usage of the one named.
func helpCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "-help" || args[0] == "--help" {
		printCommands(stdout)
		return exitOK
	}
	for _, c := range commands() {
		if c.name == args[0] && c.run != nil {
			return c.run([]string{"--help"}, stdout, stderr)
		}
	}
	if args[0] == "help" {
		printCommands(stdout)
		return exitOK
	}
	fmt.Fprintf(stderr, "eddy help: unknown command %q\n\n", args[0])
	printCommands(stderr)
	return exitConfig
}

// printCommands writes the one-line list of commands.
func printCommands(w io.Writer) {
	fmt.Fprint(w, "eddy streams sensor and MQTT readings from a ring log on the device as Server-Sent Events.\n\n")
	fmt.Fprint(w, "usage: eddy <command> [flags]\n\ncommands:\n")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-13s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, "\n`eddy <command> --help` shows a command's flags. Docs: README.md and docs/ in the source.\n")
}

// newFlagSet makes a subcommand's flag set. Its usage text (shown by
// -h/--help) is the synopsis, the summary, extra notes and the flags.
func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("eddy "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {} // parseFlags prints the usage where it belongs
	return fs
}

// usageOf writes the usage of the command called name, with its flags.
func usageOf(w io.Writer, fs *flag.FlagSet, name, notes string) {
	var c command
	for _, cc := range commands() {
		if cc.name == name {
			c = cc
		}
	}
	fmt.Fprintf(w, "usage: eddy %s %s\n\n%s.\n", name, c.synopsis, upperFirst(c.summary))
	if notes != "" {
		fmt.Fprintf(w, "\n%s\n", strings.TrimSpace(notes))
	}
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	if n > 0 {
		fmt.Fprint(w, "\nflags:\n")
		out := fs.Output()
		fs.SetOutput(w)
		fs.PrintDefaults()
		fs.SetOutput(out)
	}
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// errHelp means the usage was printed on request: exit 0.
var errHelp = errors.New("help requested")

// parseFlags parses args, flags and positional arguments in any order.
// -h or --help prints the usage to stdout and returns errHelp; a bad flag
// is reported on stderr with a pointer to --help. It returns the
// positional arguments.
func parseFlags(fs *flag.FlagSet, name, notes string, args []string, stdout, stderr io.Writer) ([]string, error) {
	var pos []string
	for {
		err := fs.Parse(args)
		if errors.Is(err, flag.ErrHelp) {
			usageOf(stdout, fs, name, notes)
			return nil, errHelp
		}
		if err != nil {
			fmt.Fprintf(stderr, "see `eddy %s --help`\n", name)
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// flagsExit is the exit status for an error from parseFlags.
func flagsExit(err error) int {
	if errors.Is(err, errHelp) {
		return exitOK
	}
	return exitConfig
}

// usageError reports a wrong number of arguments.
func usageError(stderr io.Writer, name, msg string) int {
	for _, c := range commands() {
		if c.name == name {
			fmt.Fprintf(stderr, "eddy %s: %s\nusage: eddy %s %s\nsee `eddy %s --help`\n", name, msg, name, c.synopsis, name)
		}
	}
	return exitConfig
}

func versionCmd(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("version", stderr)
	pos, err := parseFlags(fs, "version", "", args, stdout, stderr)
	if err != nil {
		return flagsExit(err)
	}
	if len(pos) > 0 {
		return usageError(stderr, "version", fmt.Sprintf("unexpected argument %q", pos[0]))
	}
	printVersion(stdout)
	return exitOK
}
