package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/eddy-iot/eddy/config"
)

// runFlags are eddy run's command-line flags; token and cert take the
// config and data ones.
type runFlags struct {
	config string
	listen string
	data   string
	debug  string // pprof listen address; empty: none
}

// addConfigFlags adds --config and --data, which every command that
// works on the daemon's data takes.
func addConfigFlags(fs *flag.FlagSet, f *runFlags) {
	fs.StringVar(&f.config, "config", "", "config `FILE` (default "+config.DefaultPath+" when it exists, else the embedded defaults)")
	fs.StringVar(&f.data, "data", "", "data `DIR`, overrides storage.dir (default ./eddy-data, or $STATE_DIRECTORY under systemd)")
}

const runNotes = `
With no config file eddy runs on embedded defaults: listen :8443 (HTTP/2 on
TCP, HTTP/3 on UDP), data in ./eddy-data (or $STATE_DIRECTORY), the system
sensor every second, a generated certificate and access token, no MQTT.
It logs where it listens, the certificate's fingerprint and the token file.
SIGINT (Ctrl-C) or SIGTERM stops it within 5 s; SIGHUP reloads tokens,
sensors and MQTT. Exit status 2: a bad config or command line.`

func parseRunFlags(args []string, stdout, stderr io.Writer) (runFlags, error) {
	var f runFlags
	fs := newFlagSet("run", stderr)
	addConfigFlags(fs, &f)
	fs.StringVar(&f.listen, "listen", "", "`ADDR` to listen on, overrides server.listen (e.g. 127.0.0.1:8443)")
	fs.StringVar(&f.debug, "debug-listen", "", "serve Go's pprof profiles on this `ADDR` (plain HTTP, no auth: use loopback)")
	pos, err := parseFlags(fs, "run", runNotes, args, stdout, stderr)
	if err != nil {
		return f, err
	}
	if len(pos) > 0 {
		usageError(stderr, "run", fmt.Sprintf("unexpected argument %q", pos[0]))
		return f, fmt.Errorf("eddy run: unexpected argument %q", pos[0])
	}
	return f, nil
}

// loadConfig reads the config named by the flags, or the default path
// when it exists, or the embedded defaults; then applies the flag overrides
// and validates the result.
func loadConfig(f runFlags) (*config.Config, string, error) {
	path := f.config
	if path == "" {
		if _, err := os.Stat(config.DefaultPath); err == nil {
			path = config.DefaultPath
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, "", fmt.Errorf("config: %w", err)
		}
	}
	cfg := config.Default()
	if path != "" {
		var err error
		if cfg, err = config.Load(path); err != nil {
			return nil, path, err
		}
	}
	if f.listen != "" {
		cfg.Server.Listen = f.listen
	}
	if f.data != "" {
		cfg.Storage.Dir = f.data
	}
	if err := cfg.Validate(); err != nil {
		return nil, path, err
	}
	return cfg, path, nil
}

const checkConfigNotes = `
Loads FILE as eddy run would and prints "FILE: ok", or every error in it,
one per line, each with the file, line and key. Exit status 0 when the
file is valid, 2 when it is not.`

func checkConfigCmd(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("check-config", stderr)
	pos, err := parseFlags(fs, "check-config", checkConfigNotes, args, stdout, stderr)
	if err != nil {
		return flagsExit(err)
	}
	if len(pos) != 1 {
		return usageError(stderr, "check-config", "want exactly one FILE")
	}
	if data, err := os.ReadFile(pos[0]); err == nil && config.IsCollect(data) {
		// A collect.toml: the fleet collector's config.
		if _, _, err := loadCollect(pos[0]); err != nil {
			fmt.Fprintln(stderr, err)
			return exitConfig
		}
		fmt.Fprintf(stdout, "%s: ok\n", pos[0])
		return exitOK
	}
	cfg, err := config.Load(pos[0])
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitConfig
	}
	if len(cfg.Sensors) == 0 && len(cfg.MQTT) == 0 {
		fmt.Fprintf(stdout, "%s: ok, but it has no [[sensor]] and no [[mqtt]] block: eddy run will record nothing\n", pos[0])
		return exitOK
	}
	fmt.Fprintf(stdout, "%s: ok\n", pos[0])
	return exitOK
}

// printConfigError reports a config that does not load: every error on
// its own line (they name the file, line and key already).
func printConfigError(stderr io.Writer, cmd string, err error) {
	var es config.Errors
	if errors.As(err, &es) {
		fmt.Fprintf(stderr, "eddy %s: the config has %d error(s):\n%v\n", cmd, len(es), err)
		return
	}
	fmt.Fprintf(stderr, "eddy %s: %v\n", cmd, err)
	if errors.Is(err, fs.ErrPermission) {
		fmt.Fprintf(stderr, "  The config is readable by the daemon's user only: run eddy %s as that user or with sudo.\n", cmd)
	}
}
