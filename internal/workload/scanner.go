package workload

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/dockyard-dev/dockyard/internal/registryconfig"
	"github.com/dockyard-dev/dockyard/internal/scan"
)

// runScanner is the scanner workload: it takes scan jobs from the operator, scans them
// with Trivy and stores the reports in the registry, until ctx ends.
func runScanner(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("scanner", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", registryconfig.ScannerConfigPath, "scanner config file")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %w", ErrUsage, err)
	}
	cfg, err := registryconfig.LoadScanner(*configPath)
	if err != nil {
		return err
	}
	log := setupLogging(cfg.Log, stderr).With("component", "scanner")
	// The credential is read again at every use: the operator renews it in its Secret.
	if _, _, err := registryconfig.ScannerCredentials(cfg.CredentialsDir); err != nil {
		return err
	}
	var cred *scan.Credentials
	if cfg.CredentialsDir != "" {
		cred = &scan.Credentials{Dir: cfg.CredentialsDir}
	}
	auth := cred.Authenticator()
	tr := http.DefaultTransport.(*http.Transport).Clone()
	var env []string
	home, err := os.MkdirTemp("", "scanner-home-")
	if err != nil {
		return fmt.Errorf("make a home directory for trivy: %w", err)
	}
	env = append(env, "HOME="+home)
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		switch {
		case errors.Is(err, os.ErrNotExist):
			// A TLS Secret without ca.crt: the certificate is publicly trusted.
			log.Info("The registry's TLS Secret has no ca.crt; trusting the system's roots", "caFile", cfg.CAFile)
		case err != nil:
			return fmt.Errorf("read the registry's CA: %w", err)
		default:
			pool, err := x509.SystemCertPool()
			if err != nil {
				pool = x509.NewCertPool()
			}
			if !pool.AppendCertsFromPEM(pem) {
				return fmt.Errorf("%s holds no PEM certificate", cfg.CAFile)
			}
			tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
			// Trivy trusts the registry's CA and the system's roots (a database from a
			// public mirror): one bundle of both.
			bundle := filepath.Join(home, "ca-bundle.crt")
			if err := os.WriteFile(bundle, append(systemRoots(), append([]byte("\n"), pem...)...), 0o600); err != nil {
				return fmt.Errorf("write the CA bundle: %w", err)
			}
			env = append(env, "SSL_CERT_FILE="+bundle)
		}
	}
	keyPEM, err := os.ReadFile(cfg.SigningKeyFile)
	if err != nil {
		return fmt.Errorf("read the signing key: %w", err)
	}
	key, err := scan.ParseSigningKey(keyPEM)
	if err != nil {
		return fmt.Errorf("signing key %s: %w", cfg.SigningKeyFile, err)
	}
	trivy := scan.Trivy{Binary: cfg.Trivy.Binary, CacheDir: cfg.Trivy.CacheDir, DBRepository: cfg.Trivy.DBRepository,
		JavaDBRepository: cfg.Trivy.JavaDBRepository, Insecure: cfg.Insecure, Env: env, Timeout: cfg.Trivy.Timeout.Duration}
	// The registry's credentials go only to the registry: a database from anywhere else
	// (a public mirror) is downloaded anonymously.
	// Likewise plain HTTP (a registry without TLS): only to the registry itself, never to
	// a mirror elsewhere, whose certificate is checked.
	var dbCred *scan.Credentials
	dbTrivy := trivy
	dbTrivy.Insecure = false
	if sameRegistry(cfg.Trivy.DBRepository, cfg.Registry) && (cfg.Trivy.JavaDBRepository == "" || sameRegistry(cfg.Trivy.JavaDBRepository, cfg.Registry)) {
		dbCred = cred
		dbTrivy.Insecure = cfg.Insecure
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	svc := &scan.Service{Trivy: dbTrivy, DBCredentials: dbCred, DBUpdateInterval: cfg.DBUpdateInterval.Duration,
		SweepInterval: cfg.SweepInterval.Duration, RescanPulledWithin: cfg.RescanPulledWithin.Duration, TokenFile: cfg.TokenFile, Log: log,
		Queue: &scan.Queue{Registry: cfg.Registry, Insecure: cfg.Insecure, Scanner: trivy, Pull: cred, Key: key,
			Remote:    []remote.Option{remote.WithTransport(tr), remote.WithAuth(auth), remote.WithUserAgent(scan.UserAgent)},
			Transport: tr, Auth: auth,
			Concurrency: cfg.Concurrency, Size: cfg.QueueSize,
			// The scanner credential (with access control) may not delete: older reports stay.
			NoPrune: cfg.CredentialsDir != ""}}
	metrics := prometheus.NewRegistry()
	metrics.MustRegister(svc.Collectors()...)
	mux := http.NewServeMux()
	mux.Handle("/", svc.Handler())
	mux.Handle("GET /metrics", promhttp.HandlerFor(metrics, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("Scanner ready", "listen", ln.Addr().String(), "registry", cfg.Registry, "concurrency", cfg.Concurrency,
		"dbRepository", cfg.Trivy.DBRepository)
	done := make(chan struct{})
	go func() { svc.Run(ctx); close(done) }()
	select {
	case <-ctx.Done():
	case err := <-errc:
		cancel()
		<-done
		return fmt.Errorf("serve scan jobs: %w", err)
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	<-done
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// sameRegistry is true when repository ref is in the registry at host.
func sameRegistry(ref, host string) bool {
	h, _, ok := strings.Cut(ref, "/")
	return ok && strings.EqualFold(h, host)
}

// systemRoots returns the system's CA bundle (SSL_CERT_FILE, or the first of the usual
// places that exists), empty when there is none.
func systemRoots() []byte {
	files := []string{"/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/ca-bundle.pem",
		"/etc/pki/tls/cacert.pem", "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem", "/etc/ssl/cert.pem"}
	if f := os.Getenv("SSL_CERT_FILE"); f != "" {
		files = append([]string{f}, files...)
	}
	for _, f := range files {
		if data, err := os.ReadFile(f); err == nil {
			return data
		}
	}
	return nil
}
