package server

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/dockyard-dev/dockyard/internal/workload/access"
	"github.com/dockyard-dev/dockyard/internal/workload/referrers"
	"github.com/dockyard-dev/dockyard/internal/workload/route"
)

// Headers of the OCI distribution spec 1.1.
const (
	headerOCISubject        = "OCI-Subject"
	headerOCIFiltersApplied = "OCI-Filters-Applied"
)

// referrersAPI serves GET /v2/<name>/referrers/<digest> from the referrers index and keeps
// the index current: a manifest PUT with a subject is recorded before the client is told
// it succeeded (so an acknowledged push is always listed), and answered with OCI-Subject.
type referrersAPI struct {
	index referrers.Index
	users *access.Controller // nil without auth
	log   *slog.Logger
}

func (a *referrersAPI) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rt, ok := route.Of(r)
		if !ok {
			next.ServeHTTP(w, r)
			return
		}
		switch {
		case rt.Kind == route.Referrers:
			a.serveList(w, r, rt)
		case rt.Kind == route.Manifest && r.Method == http.MethodPut:
			body, err := bufferBody(r, maxManifestBytes)
			if err != nil {
				writeOCIError(w, http.StatusBadRequest, "MANIFEST_INVALID", "read manifest: "+err.Error())
				return
			}
			if body == nil {
				next.ServeHTTP(w, r) // too large: distribution refuses it
				return
			}
			subject, desc, ok := referrers.Describe(body, r.Header.Get("Content-Type"), "")
			if !ok {
				next.ServeHTTP(w, r)
				return
			}
			next.ServeHTTP(&subjectWriter{ResponseWriter: w, r: r, a: a, name: rt.Name, subject: subject, desc: desc}, r)
		default:
			next.ServeHTTP(w, r)
		}
	})
}

func (a *referrersAPI) serveList(w http.ResponseWriter, r *http.Request, rt route.Route) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeOCIError(w, http.StatusMethodNotAllowed, "UNSUPPORTED", "the referrers API supports GET and HEAD only")
		return
	}
	if a.users != nil && !a.users.Authorize(w, r, rt.Name, access.ActionPull) {
		return
	}
	subject, err := digest.Parse(rt.Digest)
	if err != nil {
		writeOCIError(w, http.StatusBadRequest, "DIGEST_INVALID", "invalid subject digest: "+err.Error())
		return
	}
	artifactType := r.URL.Query().Get("artifactType")
	list, err := a.index.List(r.Context(), rt.Name, subject, artifactType)
	if err != nil {
		a.log.Error("List referrers", "err", err, "repository", rt.Name, "subject", subject.String())
		writeOCIError(w, http.StatusServiceUnavailable, "UNAVAILABLE", "storage is unavailable, retry")
		return
	}
	body, err := json.Marshal(v1.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: v1.MediaTypeImageIndex,
		Manifests: list,
	})
	if err != nil {
		writeOCIError(w, http.StatusInternalServerError, "UNKNOWN", "encode referrers")
		return
	}
	if artifactType != "" {
		w.Header().Set(headerOCIFiltersApplied, "artifactType")
	}
	w.Header().Set("Content-Type", v1.MediaTypeImageIndex)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = w.Write(body)
	}
}

// subjectWriter records the index entry of a manifest with a subject when distribution
// accepts it, before the 201 reaches the client; if recording fails, the client gets a 503
// instead and retries the (idempotent) PUT.
type subjectWriter struct {
	http.ResponseWriter
	r       *http.Request
	a       *referrersAPI
	name    string
	subject digest.Digest
	desc    v1.Descriptor
	failed  bool
	wrote   bool
}

func (w *subjectWriter) WriteHeader(code int) {
	if w.wrote {
		w.ResponseWriter.WriteHeader(code)
		return
	}
	w.wrote = true
	if code != http.StatusCreated {
		w.ResponseWriter.WriteHeader(code)
		return
	}
	d, err := digest.Parse(w.Header().Get("Docker-Content-Digest"))
	if err == nil {
		w.desc.Digest = d
		err = w.a.index.Add(w.r.Context(), w.name, w.subject, w.desc)
	}
	if err != nil {
		w.a.log.Error("Record referrer", "err", err, "repository", w.name, "subject", w.subject.String())
		w.failed = true
		h := w.Header()
		h.Del("Location")
		h.Del("Docker-Content-Digest")
		h.Del("Content-Length")
		writeOCIError(w.ResponseWriter, http.StatusServiceUnavailable, "UNAVAILABLE", "the manifest was stored but its referrers entry was not; retry the push")
		return
	}
	w.Header().Set(headerOCISubject, w.subject.String())
	w.ResponseWriter.WriteHeader(code)
}

func (w *subjectWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	if w.failed {
		return len(b), nil
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *subjectWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
