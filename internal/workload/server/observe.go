package server

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/dockyard-dev/dockyard/internal/registryconfig"
	"github.com/dockyard-dev/dockyard/internal/workload/route"
)

// metrics are the workload's own Prometheus metrics. Each Server has its own registry, so
// several servers can live in one process (tests); distribution's storage metrics come
// from the default registry.
type metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	inFlight prometheus.Gauge
	certExp  prometheus.Gauge
	sent     *prometheus.CounterVec
	received *prometheus.CounterVec
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dockyard_registry_http_requests_total",
			Help: "Registry API requests by method, route and status code.",
		}, []string{"method", "route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "dockyard_registry_http_request_duration_seconds",
			Help:    "Registry API request latency by method and route.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"method", "route"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "dockyard_registry_http_in_flight_requests",
			Help: "Registry API requests being served.",
		}),
		certExp: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "dockyard_registry_tls_certificate_expiry_timestamp_seconds",
			Help: "NotAfter of the serving certificate, as a Unix timestamp.",
		}),
	}
	m.sent = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "dockyard_registry_http_response_bytes_total",
		Help: "Bytes of registry API response bodies (blobs and manifests served), by method and route.",
	}, []string{"method", "route"})
	m.received = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "dockyard_registry_http_request_bytes_total",
		Help: "Bytes of registry API request bodies read (blobs and manifests pushed), by method and route.",
	}, []string{"method", "route"})
	m.reg.MustRegister(m.requests, m.duration, m.inFlight, m.certExp, m.sent, m.received)
	return m
}

// handler serves the workload's metrics plus the process-wide default registry
// (Go runtime, process and distribution's storage metrics).
func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(prometheus.Gatherers{m.reg, prometheus.DefaultGatherer}, promhttp.HandlerOpts{})
}

// routeLabel names a request's route for metrics, from the route WithRoute parsed.
func routeLabel(r *http.Request) string {
	switch r.URL.Path {
	case registryconfig.HealthPath, registryconfig.LivenessPath:
		return "health"
	case registryconfig.TokenPath:
		return "token"
	}
	if rt, ok := route.Of(r); ok {
		return rt.Label()
	}
	return "other"
}

// statusWriter records the status code and the body bytes written, for metrics.
type statusWriter struct {
	http.ResponseWriter
	code int
	n    int64
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.n += int64(n)
	return n, err
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// ReadFrom keeps http.ServeContent's zero-copy path (sendfile when TLS is off).
func (w *statusWriter) ReadFrom(r io.Reader) (int64, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	var n int64
	var err error
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(r)
	} else {
		n, err = io.Copy(writerOnly{w.ResponseWriter}, r)
	}
	w.n += n
	return n, err
}

// countingBody counts the request body bytes the handlers read.
type countingBody struct {
	io.ReadCloser
	n int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	return n, err
}

// writerOnly hides every method but Write, so io.Copy cannot recurse into ReadFrom.
type writerOnly struct{ io.Writer }

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (m *metrics) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		// The one parse of the path; every middleware after this reads it from the context.
		r = route.WithRoute(r)
		m.inFlight.Inc()
		sw := &statusWriter{ResponseWriter: w}
		var body *countingBody
		if r.Body != nil && r.Body != http.NoBody {
			body = &countingBody{ReadCloser: r.Body}
			r.Body = body
		}
		defer func() {
			m.inFlight.Dec()
			rl := routeLabel(r)
			code := sw.code
			if code == 0 {
				code = http.StatusOK
			}
			m.requests.WithLabelValues(r.Method, rl, strconv.Itoa(code)).Inc()
			m.duration.WithLabelValues(r.Method, rl).Observe(time.Since(start).Seconds())
			if sw.n > 0 {
				m.sent.WithLabelValues(r.Method, rl).Add(float64(sw.n))
			}
			if body != nil && body.n > 0 {
				m.received.WithLabelValues(r.Method, rl).Add(float64(body.n))
			}
		}()
		next.ServeHTTP(sw, r)
	})
}

// livenessHandler answers 200: the process is serving. Storage health is readiness's
// concern (healthHandler); a liveness failure restarts the pod, which cures no storage outage.
func livenessHandler(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache")
	_, _ = w.Write([]byte(`{"status":"ok"}` + "\n"))
}

// healthHandler answers 200 while the storage driver is healthy and the server is not
// draining, 503 otherwise, with the failing checks in the body.
func (s *Server) healthHandler(w http.ResponseWriter, r *http.Request) {
	status := map[string]string{}
	if s.draining.Load() {
		status["server"] = "shutting down"
	}
	for k, v := range s.health.CheckStatus(r.Context()) {
		status[k] = v
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache")
	if len(status) > 0 {
		w.WriteHeader(http.StatusServiceUnavailable)
		_ = json.NewEncoder(w).Encode(map[string]any{"status": "unhealthy", "checks": status})
		return
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"status": "ok"})
}
