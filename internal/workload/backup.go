package workload

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/dockyard-dev/dockyard/internal/registryconfig"
	"github.com/dockyard-dev/dockyard/internal/workload/backup"
	"github.com/dockyard-dev/dockyard/internal/workload/storage"
)

// runBackup writes one backup of the registry's storage into the configured store, then
// prunes the store. The summary goes to stdout and, with --summary-file, to that file; a
// failed run still writes it and exits non-zero.
func runBackup(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return runBackupCommand(ctx, "backup", args, stdout, stderr, func(ctx context.Context, cfg *registryconfig.Config, log *slog.Logger) (backup.Result, error) {
		b := cfg.Backup
		if b == nil {
			return backup.Result{}, errors.New("the config has no backup section")
		}
		src, err := storage.NewDriver(ctx, cfg.Storage, os.Getenv)
		if err != nil {
			return backup.Result{}, err
		}
		store, err := storage.NewDriver(ctx, b.Store, os.Getenv)
		if err != nil {
			return backup.Result{}, fmt.Errorf("backup store: %w", err)
		}
		return backup.Backup(ctx, backup.Options{Source: src, Store: store, Prefix: b.Name, Registry: b.Registry, Keep: b.Keep, Logger: log})
	})
}

// runRestore writes the configured backup into the registry's storage.
func runRestore(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return runBackupCommand(ctx, "restore", args, stdout, stderr, func(ctx context.Context, cfg *registryconfig.Config, log *slog.Logger) (backup.Result, error) {
		r := cfg.Restore
		if r == nil {
			return backup.Result{}, errors.New("the config has no restore section")
		}
		target, err := storage.NewDriver(ctx, cfg.Storage, os.Getenv)
		if err != nil {
			return backup.Result{}, err
		}
		store, err := storage.NewDriver(ctx, r.Store, os.Getenv)
		if err != nil {
			return backup.Result{}, fmt.Errorf("backup store: %w", err)
		}
		return backup.Restore(ctx, backup.RestoreOptions{Store: store, Target: target, Name: r.Backup, Logger: log})
	})
}

func runBackupCommand(ctx context.Context, name string, args []string, stdout, stderr io.Writer,
	run func(context.Context, *registryconfig.Config, *slog.Logger) (backup.Result, error)) error {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", registryconfig.ConfigPath, "registry config file")
	summaryFile := fs.String("summary-file", "", "write the JSON summary here too (e.g. "+registryconfig.TerminationMessagePath+")")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %w", ErrUsage, err)
	}
	start := time.Now()
	var res backup.Result
	cfg, err := registryconfig.Load(*configPath)
	if err == nil {
		log := setupLogging(cfg.Log, stderr).With("component", name)
		res, err = run(ctx, cfg, log)
		if err != nil {
			log.Error("The "+name+" failed", "err", err)
		}
	}
	s := registryconfig.BackupSummary{Result: registryconfig.GCResultSucceeded, Backup: res.Name, Repositories: res.Repositories,
		Tags: res.Tags, Manifests: res.Manifests, Blobs: res.Blobs, Bytes: res.Bytes, BytesCopied: res.BytesCopied,
		Skipped: res.Skipped, Pruned: res.Pruned, DurationSeconds: time.Since(start).Seconds()}
	if err != nil {
		s.Result, s.Message = registryconfig.GCResultFailed, truncateMessage(err.Error(), 1024)
	}
	if werr := writeSummary(s, stdout, *summaryFile); werr != nil {
		err = errors.Join(err, werr)
	}
	if err != nil {
		return fmt.Errorf("%s failed: %w", name, err)
	}
	return nil
}

func truncateMessage(s string, n int) string {
	if len(s) > n {
		return s[:n-3] + "..."
	}
	return s
}
