package workload

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/dockyard-dev/dockyard/internal/registryconfig"
	"github.com/dockyard-dev/dockyard/internal/workload/prune"
	"github.com/dockyard-dev/dockyard/internal/workload/storage"
)

// runRetention carries out one RetentionPolicy run (see registryconfig.RetentionRun). The
// summary goes to stdout and, with --summary-file, to that file (the pod's
// termination-message path), trimmed to fit; a failed run still writes it and exits
// non-zero.
func runRetention(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("retention", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", registryconfig.ConfigPath, "registry config file")
	summaryFile := fs.String("summary-file", "", "write the JSON summary here too (e.g. "+registryconfig.TerminationMessagePath+")")
	runJSON := fs.String("run", "", "the run, as JSON (registryconfig.RetentionRun)")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %w", ErrUsage, err)
	}
	var run registryconfig.RetentionRun
	if err := json.Unmarshal([]byte(*runJSON), &run); err != nil {
		return fmt.Errorf("%w: --run: %w", ErrUsage, err)
	}
	sum, err := retain(ctx, *configPath, run, stderr)
	b := append(registryconfig.FitRetentionSummary(sum), '\n')
	if _, werr := orStdout(stdout).Write(b); werr != nil {
		err = errors.Join(err, werr)
	}
	if *summaryFile != "" {
		if werr := os.WriteFile(*summaryFile, b, 0o644); werr != nil {
			err = errors.Join(err, fmt.Errorf("write summary file: %w", werr))
		}
	}
	if err != nil {
		return fmt.Errorf("retention run failed: %w", err)
	}
	return nil
}

func retain(ctx context.Context, configPath string, run registryconfig.RetentionRun, stderr io.Writer) (registryconfig.RetentionSummary, error) {
	fail := func(err error) (registryconfig.RetentionSummary, error) {
		return registryconfig.RetentionSummary{Result: registryconfig.RetentionFailed, Message: err.Error(), Enforced: run.Enforce}, err
	}
	cfg, err := registryconfig.Load(configPath)
	if err != nil {
		return fail(err)
	}
	log := setupLogging(cfg.Log, stderr)
	if cfg.Storage.InMemory != nil {
		return fail(errors.New("storage.inmemory: retention needs storage shared with the registry"))
	}
	driver, err := storage.NewDriver(ctx, cfg.Storage, os.Getenv)
	if err != nil {
		return fail(err)
	}
	sum, err := prune.Run(ctx, prune.Options{Driver: driver, Run: run, ImmutableTags: cfg.ImmutableTags, Logger: log.With("component", "retention", "policy", run.Policy)})
	if err != nil {
		log.Error("Retention run failed", "err", err)
	}
	return sum, err
}
