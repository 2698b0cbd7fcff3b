package workload

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/dockyard-dev/dockyard/internal/registryconfig"
	"github.com/dockyard-dev/dockyard/internal/workload/gc"
	"github.com/dockyard-dev/dockyard/internal/workload/storage"
)

// runGC collects garbage once. The summary goes to stdout and, with --summary-file, to
// that file (the pod's termination-message path); a failed run still writes it and
// returns an error so the process exits non-zero.
func runGC(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("gc", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", registryconfig.ConfigPath, "registry config file")
	summaryFile := fs.String("summary-file", "", "write the JSON summary here too (e.g. "+registryconfig.TerminationMessagePath+")")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %w", ErrUsage, err)
	}
	start := time.Now()
	res, err := collect(ctx, *configPath, stderr)
	summary := gc.Summary(res, err, time.Since(start))
	if werr := writeSummary(summary, stdout, *summaryFile); werr != nil {
		err = errors.Join(err, werr)
	}
	if err != nil {
		return fmt.Errorf("garbage collection failed: %w", err)
	}
	return nil
}

func collect(ctx context.Context, configPath string, stderr io.Writer) (gc.Result, error) {
	cfg, err := registryconfig.Load(configPath)
	if err != nil {
		return gc.Result{}, err
	}
	log := setupLogging(cfg.Log, stderr)
	if cfg.Storage.InMemory != nil {
		return gc.Result{}, errors.New("storage.inmemory: garbage collection needs storage shared with the registry")
	}
	driver, err := storage.NewDriver(ctx, cfg.Storage, os.Getenv)
	if err != nil {
		return gc.Result{}, err
	}
	res, err := gc.Collect(ctx, gc.Options{
		Driver:         driver,
		DeleteUntagged: cfg.GC.DeleteUntagged,
		GracePeriod:    cfg.GC.GracePeriod.Duration,
		Logger:         log.With("component", "gc"),
	})
	if err != nil {
		log.Error("Garbage collection failed", "err", err)
	}
	return res, err
}

// writeSummary prints a run's JSON summary and, when file is set, writes it there too (the
// pod's termination-message path).
func writeSummary(s any, stdout io.Writer, file string) error {
	b, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("encode summary: %w", err)
	}
	b = append(b, '\n')
	if _, err := orStdout(stdout).Write(b); err != nil {
		return fmt.Errorf("print summary: %w", err)
	}
	if file != "" {
		if err := os.WriteFile(file, b, 0o644); err != nil {
			return fmt.Errorf("write summary file: %w", err)
		}
	}
	return nil
}
