package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/distribution/distribution/v3/configuration"
	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/dockyard-dev/dockyard/internal/compliance"
	"github.com/dockyard-dev/dockyard/internal/registryconfig"
	"github.com/dockyard-dev/dockyard/internal/scan"
	"github.com/dockyard-dev/dockyard/internal/workload/access"
	"github.com/dockyard-dev/dockyard/internal/workload/referrers"
	"github.com/dockyard-dev/dockyard/internal/workload/route"
	"github.com/dockyard-dev/dockyard/internal/workload/storage"
)

// complianceGate refuses the manifest of a non-compliant image to clients outside the
// cluster (spec.scanning.policy.pullAction: Deny), with the words the admission webhook
// uses. It judges with the same code as admission (compliance.Checker), reading
// manifests, reports and signatures from a second, read-only and in-process instance of
// distribution on the same storage: nothing leaves the process, no credential is needed,
// and what it reads is never recorded as a pull.
//
// Never refused: whoever may delete in the repository (a Manager), the operator's pull
// Secrets (the kubelet's pulls, judged by admission), its replicator and the scanner,
// and callers who may not pull at all (they get distribution's usual 401 or 403, not a
// verdict about an image they may not see). HEAD requests and blobs are served. Without
// access control (a standalone registry) every caller is judged.
type complianceGate struct {
	file  string
	users *access.Controller // nil without auth: every caller is judged
	log   *slog.Logger
	// reader serves GET requests of the read-only registry instance.
	reader http.Handler

	state    atomic.Pointer[gateState]
	refused  *prometheus.CounterVec
	failures prometheus.Counter
}

type gateState struct {
	raw     []byte
	policy  compliance.Policy
	checker *compliance.Checker
	scanner string // the scanner keys the checker trusts (PEM)
}

// newComplianceGate reads the policy file (it must be valid at start) and builds the
// read-only registry instance the gate reads through.
func newComplianceGate(ctx context.Context, cfg *registryconfig.Config, driver storagedriver.StorageDriver,
	users *access.Controller, log *slog.Logger,
) (*complianceGate, error) {
	driverName, driverParams, release := storage.Share(driver)
	defer release() // distribution holds the driver once NewApp returns
	dc := &configuration.Configuration{Version: "0.1"}
	dc.Storage = configuration.Storage{
		driverName: driverParams,
		// Read only: this instance never writes, deletes or purges anything.
		"maintenance": {"readonly": map[any]any{"enabled": true}, "uploadpurging": map[any]any{"enabled": false}},
		"redirect":    {"disable": true},
	}
	dc.Validation.Manifests.URLs.Allow = []string{`^https?://`}
	dc.Log.Level = configuration.Loglevel(cfg.Log.Level)
	dc.Log.AccessLog.Disabled = true
	dc.HTTP.Secret = "unused: this instance takes no uploads"
	app, err := newApp(ctx, dc)
	if err != nil {
		return nil, fmt.Errorf("compliance gate: %w", err)
	}
	g := &complianceGate{
		file: cfg.Compliance.PolicyFile, users: users, log: log,
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dockyard_registry_compliance_refused_total",
			Help: "Manifest pulls the registry refused because the image is not compliant (spec.scanning.policy.pullAction: Deny), by reason.",
		}, []string{"reason"}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dockyard_registry_compliance_check_failures_total",
			Help: "Manifest pulls answered 503 because the image's compliance could not be decided.",
		}),
	}
	g.reader = (&referrersAPI{index: referrers.Index{Driver: driver}, log: log}).middleware(app)
	if _, err := g.reload(); err != nil {
		return nil, err
	}
	return g, nil
}

// collectors are the gate's metrics.
func (g *complianceGate) collectors() []prometheus.Collector {
	return []prometheus.Collector{g.refused, g.failures}
}

// reload re-reads the policy file; an unchanged file changes nothing, a bad one keeps the
// policy in force (and is reported).
func (g *complianceGate) reload() (bool, error) {
	raw, err := os.ReadFile(g.file)
	if err != nil {
		return false, fmt.Errorf("read the compliance policy: %w", err)
	}
	old := g.state.Load()
	if old != nil && bytes.Equal(old.raw, raw) {
		return false, nil
	}
	cp, err := registryconfig.ParseCompliancePolicy(raw)
	if err != nil {
		return false, err
	}
	p, keys, err := compliance.FromConfig(*cp)
	if err != nil {
		return false, fmt.Errorf("compliance policy: %w", err)
	}
	st := &gateState{raw: raw, policy: p, scanner: cp.ScannerKeys}
	if old != nil && old.scanner == cp.ScannerKeys {
		st.checker = old.checker // the same reports count: keep what is cached
	} else {
		st.checker = &compliance.Checker{Keys: keys, Remote: []remote.Option{
			remote.WithTransport(inProcess{h: g.reader}), remote.WithUserAgent(scan.AdmissionUserAgent),
		}}
	}
	g.state.Store(st)
	return true, nil
}

// watch reloads the policy every interval until ctx ends.
func (g *complianceGate) watch(ctx context.Context, interval time.Duration) {
	every(ctx, interval, func() {
		if changed, err := g.reload(); err != nil {
			g.log.Error("Reload the compliance policy, keeping the one in force", "err", err)
		} else if changed {
			g.log.Info("Compliance policy reloaded")
		}
	})
}

// exempt reports whether the caller of r is never refused a manifest of repository repo,
// or may not pull from it at all (then distribution answers as usual).
func (g *complianceGate) exempt(r *http.Request, repo string) bool {
	if g.users == nil {
		return false
	}
	switch g.users.ProviderOf(r) {
	case access.ProviderPullSecret, access.ProviderReplication, access.ProviderScanner:
		return true
	}
	// MayPull is distribution's own answer (anonymous pulls included). A Manager pulls
	// with a pull-only token: whether the caller may delete is a question about who it
	// is, not about this token.
	return !g.users.MayPull(r, repo) || g.users.Permits(r, repo, access.ActionDelete)
}

func (g *complianceGate) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			next.ServeHTTP(w, r)
			return
		}
		rt, ok := route.Of(r)
		if !ok || rt.Kind != route.Manifest || g.exempt(r, rt.Name) {
			next.ServeHTTP(w, r)
			return
		}
		// The check reads through a fixed host (the in-process transport ignores it, and
		// caches are keyed by it); the message names the image as the client did.
		ref, err := gateReference(gateHost, rt)
		if err != nil {
			next.ServeHTTP(w, r) // distribution refuses what does not parse
			return
		}
		shown := ref
		if sr, err := gateReference(r.Host, rt); err == nil {
			shown = sr
		}
		st := g.state.Load()
		d, err := st.checker.Check(r.Context(), ref, st.policy)
		switch {
		case errors.Is(err, scan.ErrNotImage) || errors.Is(err, compliance.ErrManifestUnknown):
			// Not an image (signatures, attestations, reports), or no such manifest
			// (distribution answers 404): nothing to judge.
			next.ServeHTTP(w, r)
		case errors.Is(err, compliance.ErrUnjudgeable):
			g.refused.WithLabelValues("Unjudgeable").Inc()
			writeOCIError(w, http.StatusForbidden, "DENIED", fmt.Sprintf("image %s: %v", shown, err))
		case err != nil:
			g.failures.Inc()
			g.log.Error("Decide compliance of a pulled image", "err", err, "repository", rt.Name, "reference", rt.Reference)
			writeOCIError(w, http.StatusServiceUnavailable, "UNAVAILABLE",
				fmt.Sprintf("the compliance of %s cannot be decided now; retry", shown))
		case !d.Allowed:
			g.refused.WithLabelValues(string(d.Reason)).Inc()
			g.log.Info("Refused a non-compliant image", "repository", rt.Name, "reference", rt.Reference, "digest", d.Digest,
				"reason", string(d.Reason), "provider", g.provider(r))
			writeOCIError(w, http.StatusForbidden, "DENIED", d.Verdict.Message(shown.String()+" ("+d.Digest+")", st.policy))
		default:
			// A tag may move between the check and the answer: serve only the digest judged.
			next.ServeHTTP(&judgedDigest{ResponseWriter: w, digest: d.Digest, shown: shown.String()}, r)
		}
	})
}

// gateHost is the registry name the gate's checks use.
const gateHost = "registry.invalid"

// judgedDigest passes a manifest response through only when it is the digest that was
// judged; otherwise (the tag moved meanwhile) it answers 503, and the client retries.
type judgedDigest struct {
	http.ResponseWriter
	digest, shown string
	swallow       bool
}

func (j *judgedDigest) WriteHeader(code int) {
	if code == http.StatusOK {
		if got := j.Header().Get("Docker-Content-Digest"); got != "" && got != j.digest {
			j.swallow = true
			for k := range j.Header() {
				delete(j.Header(), k)
			}
			writeOCIError(j.ResponseWriter, http.StatusServiceUnavailable, "UNAVAILABLE",
				fmt.Sprintf("%s moved while its compliance was checked; retry", j.shown))
			return
		}
	}
	j.ResponseWriter.WriteHeader(code)
}

func (j *judgedDigest) Write(p []byte) (int, error) {
	if j.swallow {
		return len(p), nil
	}
	return j.ResponseWriter.Write(p)
}

func (g *complianceGate) provider(r *http.Request) string {
	if g.users == nil {
		return ""
	}
	return g.users.ProviderOf(r)
}

// gateReference is the manifest rt addresses, on host (gateHost when host is not a valid
// registry name: a client's Host header is only shown, never trusted).
func gateReference(host string, rt route.Route) (name.Reference, error) {
	repo, err := name.NewRepository(host+"/"+rt.Name, name.StrictValidation)
	if err != nil {
		if repo, err = name.NewRepository(gateHost+"/"+rt.Name, name.StrictValidation); err != nil {
			return nil, err
		}
	}
	if _, derr := name.NewDigest(repo.Name()+"@"+rt.Reference, name.StrictValidation); derr == nil {
		return repo.Digest(rt.Reference), nil
	}
	return name.NewTag(repo.Name()+":"+rt.Reference, name.StrictValidation)
}

// inProcess is an http.RoundTripper that serves requests with a handler of this process,
// buffering each response (at most maxInProcessResponse bytes: manifests, reports and
// signatures, never layers).
type inProcess struct{ h http.Handler }

const maxInProcessResponse = 16 << 20

func (t inProcess) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		return nil, fmt.Errorf("in-process registry: %s is not served", req.Method)
	}
	in := req.Clone(req.Context())
	in.RequestURI = req.URL.RequestURI()
	if in.Body == nil {
		in.Body = http.NoBody
	}
	rec := &bufferedResponse{header: http.Header{}}
	t.h.ServeHTTP(rec, in)
	if rec.tooLarge {
		return nil, fmt.Errorf("in-process registry: the response to %s exceeds %d bytes", req.URL.Path, maxInProcessResponse)
	}
	if rec.code == 0 {
		rec.code = http.StatusOK
	}
	length := int64(rec.body.Len())
	if req.Method == http.MethodHead {
		// No body, as over the network; the length is the header's.
		length = -1
		if n, err := strconv.ParseInt(rec.header.Get("Content-Length"), 10, 64); err == nil {
			length = n
		}
		rec.body.Reset()
	}
	return &http.Response{
		Status: strconv.Itoa(rec.code) + " " + http.StatusText(rec.code), StatusCode: rec.code,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: rec.header, Body: io.NopCloser(bytes.NewReader(rec.body.Bytes())),
		ContentLength: length, Request: req,
	}, nil
}

type bufferedResponse struct {
	header   http.Header
	code     int
	body     bytes.Buffer
	tooLarge bool
}

func (b *bufferedResponse) Header() http.Header { return b.header }

func (b *bufferedResponse) WriteHeader(code int) {
	if b.code == 0 {
		b.code = code
	}
}

func (b *bufferedResponse) Write(p []byte) (int, error) {
	if b.code == 0 {
		b.code = http.StatusOK
	}
	if b.body.Len()+len(p) > maxInProcessResponse {
		b.tooLarge = true
		return 0, errors.New("response too large")
	}
	return b.body.Write(p)
}
