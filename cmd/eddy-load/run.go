package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"syscall"
)

// run measures the chosen scenarios and prints their reports.
func run(ctx context.Context, f flags, logger *slog.Logger) error {
	// The tool shares the machine with the server it measures: collect
	// garbage less often to leave it more CPU (its heap stays small).
	debug.SetGCPercent(400)
	if f.cpuprof != "" {
		pf, err := os.Create(f.cpuprof)
		if err != nil {
			return fmt.Errorf("load: cpu profile: %w", err)
		}
		defer pf.Close()
		if err := pprof.StartCPUProfile(pf); err != nil {
			return fmt.Errorf("load: cpu profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	nofile, err := raiseNoFile()
	if err != nil {
		return err
	}
	dir := f.dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "eddy-load-"); err != nil {
			return fmt.Errorf("load: work dir: %w", err)
		}
		defer os.RemoveAll(dir)
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("load: work dir: %w", err)
	}
	bin := f.eddy
	if bin == "" {
		logger.Info("building eddy")
		if bin, err = buildEddy(ctx, dir); err != nil {
			return err
		}
	}
	fmt.Fprintf(f.out, "# eddy-load: %d CPUs (GOMAXPROCS %d), %s/%s, %s, NOFILE %d, work dir %s\n",
		runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.GOOS, runtime.GOARCH, runtime.Version(), nofile, dir)
	e := env{f: f, bin: bin, dir: dir, lg: logger}
	if f.scenario == "stream" || f.scenario == "all" {
		if err := e.stream(ctx); err != nil {
			return err
		}
	}
	if f.scenario == "ingest" || f.scenario == "all" {
		if err := e.ingest(ctx); err != nil {
			return err
		}
	}
	if f.scenario == "hostile" {
		if err := e.hostile(ctx); err != nil {
			return err
		}
	}
	if f.scenario == "upstream" || f.scenario == "all" {
		if err := e.upstream(ctx); err != nil {
			return err
		}
	}
	return nil
}

// env is what the scenarios share.
type env struct {
	f   flags
	bin string // eddy binary
	dir string
	lg  *slog.Logger
	seq int // numbers the sub-directories of dir
}

// subdir makes a fresh directory under the work dir for one server run.
func (e *env) subdir(name string) (string, error) {
	e.seq++
	d := fmt.Sprintf("%s/%02d-%s", e.dir, e.seq, name)
	if err := os.MkdirAll(d, 0o755); err != nil {
		return "", fmt.Errorf("load: %w", err)
	}
	return d, nil
}

// raiseNoFile lifts the soft open-files limit to the hard one, for the
// tool and for the children it starts (they inherit it): thousands of
// streams need thousands of descriptors on the client side.
func raiseNoFile() (uint64, error) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0, fmt.Errorf("load: getrlimit: %w", err)
	}
	l.Cur = l.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0, fmt.Errorf("load: setrlimit NOFILE %d: %w", l.Max, err)
	}
	return l.Cur, nil
}
