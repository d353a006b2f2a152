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

// runFlags are eddy run's command-line flags.
type runFlags struct {
	config string
	listen string
	data   string
	debug  string // pprof listen address; empty: none
}

func parseRunFlags(args []string, stderr io.Writer) (runFlags, error) {
	var f runFlags
	fs := flag.NewFlagSet("eddy run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.config, "config", "", "config file (default "+config.DefaultPath+" when it exists, else embedded defaults)")
	fs.StringVar(&f.listen, "listen", "", "listen address, overrides server.listen")
	fs.StringVar(&f.data, "data", "", "data directory, overrides storage.dir")
	fs.StringVar(&f.debug, "debug-listen", "", "serve Go's pprof profiles on this address (plain HTTP, no auth: use loopback)")
	if err := fs.Parse(args); err != nil {
		return f, err
	}
	if fs.NArg() > 0 {
		return f, fmt.Errorf("eddy run: unexpected argument %q", fs.Arg(0))
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

func checkConfigCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprintln(stderr, "usage: eddy check-config FILE")
		return exitConfig
	}
	load := func(path string) error { _, err := config.Load(path); return err }
	if data, err := os.ReadFile(args[0]); err == nil && config.IsCollect(data) {
		load = func(path string) error { _, _, err := loadCollect(path); return err } // a collect.toml
	}
	if err := load(args[0]); err != nil {
		fmt.Fprintln(stderr, err)
		return exitConfig
	}
	fmt.Fprintf(stdout, "%s: ok\n", args[0])
	return exitOK
}
