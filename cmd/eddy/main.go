// Command eddy is the telemetry streaming appliance: `eddy run` is the
// daemon; the other subcommands help technicians and operators around it.
package main

import (
	"fmt"
	"io"
	"os"
)

// Exit statuses.
const (
	exitOK     = 0
	exitFail   = 1
	exitConfig = 2 // a bad config or command line
)

const usage = `usage: eddy <command> [flags]

commands:
  run          [--config FILE] [--listen ADDR] [--data DIR]   run the daemon
  tail         URL [--topic F]... [--last-event-id ID] [--http3] [--token T] [--ca FILE | --fingerprint SHA256]
               subscribe and print one JSON record per line, resuming after disconnects
  cert         [--config FILE] [--data DIR]                  the device certificate's fingerprint and CA file
  token        [--config FILE] [--data DIR]                  the access token
  check-config FILE                                        validate a config file
  version                                                  print version information
`

func main() {
	os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
}

func realMain(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitConfig
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "run":
		return runCmd(rest, stderr)
	case "tail":
		return tailCmd(rest, stdout, stderr)
	case "cert":
		return certCmd(rest, stdout, stderr)
	case "token":
		return tokenCmd(rest, stdout, stderr)
	case "collect":
		return collectCmd(rest, stderr)
	case "check-config":
		return checkConfigCmd(rest, stdout, stderr)
	case "version", "--version", "-version":
		printVersion(stdout)
		return exitOK
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	fmt.Fprintf(stderr, "eddy: unknown command %q\n%s", cmd, usage)
	return exitConfig
}
