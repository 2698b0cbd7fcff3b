// Package workload is the registry process inside a Registry's pods: `dockyard registry
// serve` runs the registry, `dockyard registry gc` collects garbage once.
package workload

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/dockyard-dev/dockyard/internal/registryconfig"
	"github.com/dockyard-dev/dockyard/internal/workload/nodetrust"
	"github.com/dockyard-dev/dockyard/internal/workload/server"
)

const usage = `usage: dockyard registry <command> [flags]

commands:
  serve --config FILE                        run the registry until SIGTERM
  gc    --config FILE [--summary-file FILE]  collect garbage once and report a JSON summary
  retention --config FILE --run JSON [--summary-file FILE]
                                             plan (and, when the run says so, enforce) one
                                             RetentionPolicy run; report a JSON summary
  backup --config FILE [--summary-file FILE] write one backup of the storage into the config's
                                             backup store, prune it to backup.keep; JSON summary
  restore --config FILE [--summary-file FILE]
                                             write the config's restore.backup (default: the
                                             newest) into the storage; JSON summary
  htpasswd [--cost N] USER                   read a password from stdin, print USER's bcrypt
                                             htpasswd line (for the users Secret)
  scanner --config FILE                      scan images with Trivy as the operator sends them
                                             (spec.scanning); store reports as referrers
  copy-binary DEST                           copy this program to DEST (the scanner's init
                                             container puts it into the Trivy image's pod)
  node-trust --ca FILE --host H... [--containerd-dir DIR] [--crio-dir DIR]
                                             install the CA for the node's container runtime
                                             until SIGTERM, then remove it (spec.nodeTrust)
`

// ErrUsage is returned (wrapped) for a bad command line.
var ErrUsage = errors.New("usage error")

// Run executes `dockyard registry <args>` with the process's stdin. ctx is cancelled on
// SIGTERM/SIGINT.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return RunIO(ctx, args, os.Stdin, stdout, stderr)
}

// RunIO is Run with an explicit stdin (read only by `htpasswd`).
func RunIO(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("%w: missing command", ErrUsage)
	}
	switch args[0] {
	case "serve":
		return runServe(ctx, args[1:], stderr)
	case "gc":
		return runGC(ctx, args[1:], stdout, stderr)
	case "retention":
		return runRetention(ctx, args[1:], stdout, stderr)
	case "backup":
		return runBackup(ctx, args[1:], stdout, stderr)
	case "restore":
		return runRestore(ctx, args[1:], stdout, stderr)
	case "htpasswd":
		return runHtpasswd(args[1:], stdin, stdout, stderr)
	case "node-trust":
		return runNodeTrust(ctx, args[1:], stderr)
	case "scanner":
		return runScanner(ctx, args[1:], stderr)
	case "copy-binary":
		if len(args) != 2 {
			fmt.Fprint(stderr, usage)
			return fmt.Errorf("%w: copy-binary takes one destination", ErrUsage)
		}
		return copyBinary(args[1])
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("%w: unknown command %q", ErrUsage, args[0])
}

func runServe(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", registryconfig.ConfigPath, "registry config file")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %w", ErrUsage, err)
	}
	cfg, err := registryconfig.Load(*configPath)
	if err != nil {
		return err
	}
	log := setupLogging(cfg.Log, stderr)
	s, err := server.New(ctx, cfg, server.Options{Logger: log})
	if err != nil {
		log.Error("Start registry", "err", err)
		return err
	}
	return s.Run(ctx)
}

// setupLogging configures our slog logger and distribution's logrus logger (process-wide)
// with the same level and format, writing to w.
func setupLogging(c registryconfig.Log, w io.Writer) *slog.Logger {
	level := slog.LevelInfo
	lr := logrus.InfoLevel
	switch strings.ToLower(c.Level) {
	case "debug":
		level, lr = slog.LevelDebug, logrus.DebugLevel
	case "warn", "warning":
		level, lr = slog.LevelWarn, logrus.WarnLevel
	case "error":
		level, lr = slog.LevelError, logrus.ErrorLevel
	}
	logrus.SetOutput(w)
	logrus.SetLevel(lr)
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "text" {
		logrus.SetFormatter(&logrus.TextFormatter{FullTimestamp: true})
		return slog.New(slog.NewTextHandler(w, opts))
	}
	logrus.SetFormatter(&logrus.JSONFormatter{})
	return slog.New(slog.NewJSONHandler(w, opts))
}

// orStdout returns w, or os.Stdout when w is nil.
func orStdout(w io.Writer) io.Writer {
	if w == nil {
		return os.Stdout
	}
	return w
}

// hostList is a repeatable --host flag.
type hostList []string

func (h *hostList) String() string     { return strings.Join(*h, ",") }
func (h *hostList) Set(v string) error { *h = append(*h, v); return nil }

func runNodeTrust(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("node-trust", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := nodetrust.Options{}
	var hosts hostList
	fs.StringVar(&o.CAFile, "ca", "/ca/ca.crt", "PEM bundle of the CA to install")
	fs.Var(&hosts, "host", "host[:port] nodes pull from (repeatable)")
	fs.StringVar(&o.ContainerdDir, "containerd-dir", "", "containerd's certs.d directory")
	fs.StringVar(&o.CRIODir, "crio-dir", "", "CRI-O's containers certs.d directory")
	fs.DurationVar(&o.Interval, "interval", 10*time.Second, "how often the CA file is checked")
	fs.StringVar(&o.Registry, "registry", "", "namespace/name of the Registry (marks the files it owns)")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %w", ErrUsage, err)
	}
	o.Hosts = hosts
	o.Owner = os.Getenv("POD_UID")
	o.Log = slog.New(slog.NewJSONHandler(stderr, nil))
	return nodetrust.Run(ctx, o)
}
