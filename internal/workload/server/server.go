// Package server runs `dockyard registry serve`: distribution's registry app, built from
// our config, behind our own HTTP servers (API with reloading TLS, and metrics), with
// Dockyard access control and the bookkeeping that makes garbage collection safe.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/health"
	"github.com/distribution/distribution/v3/registry/handlers"
	dstorage "github.com/distribution/distribution/v3/registry/storage"
	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"

	"github.com/dockyard-dev/dockyard/internal/registryconfig"
	"github.com/dockyard-dev/dockyard/internal/workload/access"
	"github.com/dockyard-dev/dockyard/internal/workload/events"
	"github.com/dockyard-dev/dockyard/internal/workload/referrers"
	"github.com/dockyard-dev/dockyard/internal/workload/storage"
)

// Options are the server's inputs besides the config.
type Options struct {
	// Logger receives the workload's own logs; nil discards them.
	Logger *slog.Logger
	// Getenv reads credentials; nil means os.Getenv.
	Getenv storage.Getenv
	// ReloadInterval is how often TLS and users files are re-read. Default 1s.
	ReloadInterval time.Duration
}

// Server is a running registry: listeners are open once New returns.
type Server struct {
	cfg      *registryconfig.Config
	log      *slog.Logger
	interval time.Duration

	app       *handlers.App
	appCancel context.CancelFunc
	health    *health.Registry
	certs     *certReloader
	users     *access.Controller
	driver    storagedriver.StorageDriver
	pulls     *pullRecorder
	immutable *immutableTags
	metrics   *metrics
	draining  atomic.Bool

	api, metricsSrv  *http.Server
	apiLn, metricsLn net.Listener
	notifier         *events.Notifier
	cache            *pullThrough
	gate             *complianceGate
}

// New builds the registry and opens its listeners.
func New(ctx context.Context, cfg *registryconfig.Config, opts Options) (*Server, error) {
	s := &Server{cfg: cfg, log: opts.Logger, interval: opts.ReloadInterval, metrics: newMetrics(),
		health: health.NewRegistry()}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.interval <= 0 {
		s.interval = time.Second
	}
	getenv := opts.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	if cfg.Auth != nil {
		c, err := access.NewController(*cfg.Auth, s.log.With("component", "access"))
		if err != nil {
			return nil, fmt.Errorf("set up access control: %w", err)
		}
		s.users = c
		s.metrics.reg.MustRegister(c.Collectors()...)
	}
	appCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.appCancel = cancel
	driver, err := storage.NewDriver(appCtx, cfg.Storage, getenv)
	if err != nil {
		cancel()
		return nil, err
	}
	driverName, driverParams, release := storage.Share(driver)
	dc, err := distributionConfig(cfg, driverName, driverParams, getenv, s.users)
	if err != nil {
		release()
		cancel()
		return nil, err
	}
	s.app, err = newApp(appCtx, dc)
	release() // distribution holds the driver now
	if err != nil {
		cancel()
		return nil, err
	}
	s.app.RegisterHealthChecks(s.health)
	s.driver = driver

	var canPush func(*http.Request, string) bool
	if s.users != nil {
		canPush = s.users.CanPush
	}
	touch := newToucher(driver, canPush, s.log.With("component", "gc-guard"))
	s.pulls = newPullRecorder(driver, s.log.With("component", "pulls"))
	ns, err := dstorage.NewRegistry(ctx, driver)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("open registry storage: %w", err)
	}
	s.immutable = &immutableTags{rules: cfg.ImmutableTags, ns: ns, driver: driver, log: s.log.With("component", "immutable-tags")}
	if s.users != nil {
		s.immutable.can = s.users.Can
	}
	if fs := cfg.Storage.Filesystem; fs != nil {
		touch.fsRoot = fs.RootDirectory
	}
	if cfg.Cache != nil && len(cfg.Cache.Upstreams) > 0 {
		s.cache = newPullThrough(cfg.Cache, ns, driver, s.log.With("component", "pull-through-cache"))
		if s.users != nil {
			s.cache.can = s.users.Can
		}
	}

	if cfg.Compliance != nil {
		if s.gate, err = newComplianceGate(appCtx, cfg, driver, s.users, s.log.With("component", "compliance")); err != nil {
			cancel()
			return nil, err
		}
		s.metrics.reg.MustRegister(s.gate.collectors()...)
	}

	if t := cfg.HTTP.TLS; t != nil {
		if s.certs, err = newCertReloader(t.CertFile, t.KeyFile, s.log.With("component", "tls")); err != nil {
			cancel()
			return nil, err
		}
		s.setCertExpiry()
	}
	if e := cfg.Events; e != nil {
		s.notifier = events.New(*e, nil, s.log.With("component", "events"))
		s.metrics.reg.MustRegister(s.notifier.Collectors()...)
	}
	if err := s.listen(s.apiHandler(touch)); err != nil {
		cancel()
		return nil, err
	}
	return s, nil
}

// newApp builds distribution's app, turning its panics on bad configuration into errors.
func newApp(ctx context.Context, dc *configuration.Configuration) (app *handlers.App, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("start registry: %v", r)
		}
	}()
	return handlers.NewApp(ctx, dc), nil
}

func (s *Server) apiHandler(touch *toucher) http.Handler {
	var h http.Handler = s.app
	h = (&digestAliases{driver: s.driver, log: s.log}).middleware(h)
	h = touch.middleware(h)
	h = s.pulls.middleware(h)
	h = s.immutable.middleware(h)
	if s.gate != nil {
		// Inside the pull-through cache: what a cache repository just fetched is judged
		// too. Outside the pull recorder and the GC markers: a refused pull is no pull.
		h = s.gate.middleware(h)
	}
	if s.cache != nil {
		h = s.cache.middleware(h)
	}
	refs := &referrersAPI{index: referrers.Index{Driver: s.driver}, users: s.users, log: s.log.With("component", "referrers")}
	h = refs.middleware(h)
	h = (&pullsAPI{driver: s.driver, users: s.users, log: s.log.With("component", "pulls")}).middleware(h)
	if s.notifier != nil {
		h = eventsMiddleware(s.notifier, h)
	}
	if s.users != nil {
		h = s.users.Middleware(h)
	}
	if fs := s.cfg.Storage.Filesystem; fs != nil {
		h = (&fastBlobs{root: fs.RootDirectory, users: s.users}).middleware(h)
	}
	h = refuseMalformed(h)
	if s.users != nil {
		inner := h
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { inner.ServeHTTP(w, access.WithAuthMemo(r)) })
	}
	mux := http.NewServeMux()
	mux.HandleFunc(registryconfig.HealthPath, s.healthHandler)
	if s.users != nil && s.cfg.Auth.Token != nil {
		mux.Handle(registryconfig.TokenPath, s.users.TokenHandler())
	}
	if s.users != nil && s.cfg.Auth.OIDC != nil {
		mux.Handle(registryconfig.OIDCLoginPath, s.users.OIDCLoginHandler())
	}
	mux.Handle("/", h)
	return s.metrics.instrument(mux)
}

func (s *Server) listen(api http.Handler) error {
	ln, err := net.Listen("tcp", s.cfg.HTTP.Addr)
	if err != nil {
		return fmt.Errorf("listen on http.addr %s: %w", s.cfg.HTTP.Addr, err)
	}
	s.apiLn = ln
	s.api = &http.Server{
		Handler:           api,
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	if s.certs != nil {
		s.api.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: s.certs.getCertificate}
	}
	if s.cfg.Metrics.Addr != "" {
		mln, err := net.Listen("tcp", s.cfg.Metrics.Addr)
		if err != nil {
			_ = ln.Close()
			return fmt.Errorf("listen on metrics.addr %s: %w", s.cfg.Metrics.Addr, err)
		}
		s.metricsLn = mln
		mux := http.NewServeMux()
		mux.Handle(registryconfig.MetricsPath, s.metrics.handler())
		mux.HandleFunc(registryconfig.HealthPath, s.healthHandler)
		mux.HandleFunc(registryconfig.LivenessPath, livenessHandler)
		s.metricsSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	}
	return nil
}

// Addr is the API listener's address.
func (s *Server) Addr() string { return s.apiLn.Addr().String() }

// MetricsAddr is the metrics listener's address, or "" when metrics are off.
func (s *Server) MetricsAddr() string {
	if s.metricsLn == nil {
		return ""
	}
	return s.metricsLn.Addr().String()
}

func (s *Server) setCertExpiry() {
	if c, _ := s.certs.getCertificate(nil); c != nil && c.Leaf != nil {
		s.metrics.certExp.Set(float64(c.Leaf.NotAfter.Unix()))
	}
}

// Run serves until ctx is cancelled, then stops accepting connections and waits up to
// http.drainTimeout for in-flight requests before closing them.
func (s *Server) Run(ctx context.Context) error {
	defer s.appCancel()
	defer s.pulls.stop() // pull records in flight reach storage before the driver goes
	bg, stopBg := context.WithCancel(ctx)
	defer stopBg()
	if s.users != nil {
		go s.users.Watch(bg, s.interval)
	}
	if s.gate != nil {
		go s.gate.watch(bg, s.interval)
	}
	if s.notifier != nil {
		done := make(chan struct{})
		go func() { defer close(done); s.notifier.Run(bg) }()
		defer func() { <-done }() // the last events leave before the process does
		defer stopBg()
	}
	if s.certs != nil {
		go every(bg, s.interval, func() {
			if changed, err := s.certs.reload(); err != nil {
				s.certs.log.Warn("Reload TLS certificate, keeping the previous one", "err", err)
			} else if changed {
				s.setCertExpiry()
			}
		})
	}

	errc := make(chan error, 2)
	go func() {
		var err error
		if s.certs != nil {
			err = s.api.ServeTLS(s.apiLn, "", "")
		} else {
			err = s.api.Serve(s.apiLn)
		}
		errc <- fmt.Errorf("serve registry API: %w", err)
	}()
	if s.metricsSrv != nil {
		go func() { errc <- fmt.Errorf("serve metrics: %w", s.metricsSrv.Serve(s.metricsLn)) }()
	}
	s.log.Info("Serving registry", "addr", s.Addr(), "tls", s.certs != nil, "metricsAddr", s.MetricsAddr(),
		"auth", s.users != nil)

	select {
	case err := <-errc:
		_ = s.api.Close()
		if s.metricsSrv != nil {
			_ = s.metricsSrv.Close()
		}
		return err
	case <-ctx.Done():
	}
	return s.drain()
}

// every calls f every interval until ctx ends (files mounted from Secrets and ConfigMaps
// change by a symlink swap: they are re-read, not watched).
func every(ctx context.Context, interval time.Duration, f func()) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f()
		}
	}
}

func (s *Server) drain() error {
	s.draining.Store(true)
	if delay := s.cfg.HTTP.ShutdownDelay.Duration; delay > 0 {
		s.log.Info("Shutting down after a delay, health now failing", "delay", delay.String())
		time.Sleep(delay)
	}
	timeout := s.cfg.HTTP.DrainTimeout.Duration
	s.log.Info("Draining registry", "timeout", timeout.String())
	dctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	err := s.api.Shutdown(dctx)
	if errors.Is(err, context.DeadlineExceeded) {
		s.log.Warn("Drain timed out, closing remaining connections", "timeout", timeout.String())
		_ = s.api.Close()
		err = nil
	}
	if s.metricsSrv != nil {
		_ = s.metricsSrv.Shutdown(dctx)
	}
	if serr := s.app.Shutdown(); serr != nil {
		s.log.Warn("Shut down registry app", "err", serr)
	}
	if err != nil {
		return fmt.Errorf("drain registry API: %w", err)
	}
	s.log.Info("Registry stopped")
	return nil
}
