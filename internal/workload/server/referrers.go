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
			// The entry is recorded when distribution accepts the manifest, before the 201
			// reaches the client.
			next.ServeHTTP(&commitWriter{ResponseWriter: w, codes: []int{http.StatusCreated},
				failMessage: "the manifest was stored but its referrers entry was not; retry the push",
				onSuccess: func(h http.Header) error {
					d, err := digest.Parse(h.Get("Docker-Content-Digest"))
					if err == nil {
						desc.Digest = d
						err = a.index.Add(r.Context(), rt.Name, subject, desc)
					}
					if err != nil {
						a.log.Error("Record referrer", "err", err, "repository", rt.Name, "subject", subject.String())
						return err
					}
					h.Set(headerOCISubject, subject.String())
					return nil
				}}, r)
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
