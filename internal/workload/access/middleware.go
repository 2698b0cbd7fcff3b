package access

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/distribution/distribution/v3/registry/auth"

	"github.com/dockyard-dev/dockyard/internal/workload/route"
)

// Middleware wraps the distribution app so that a known user who lacks a permission gets
// 403 with an OCI error body whose code is DENIED (distribution itself only knows 401), and
// so that the catalog lists only repositories the caller may pull.
func (c *Controller) Middleware(next http.Handler) http.Handler {
	catalog := c.catalogHandler(next)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d := &decision{}
		r = r.WithContext(context.WithValue(r.Context(), decisionKey{}, d))
		dw := &denyWriter{ResponseWriter: w, d: d}
		if r.URL.Path == "/v2/_catalog" && r.Method == http.MethodGet {
			catalog.ServeHTTP(dw, r)
			return
		}
		c.dropForbiddenMount(r)
		next.ServeHTTP(dw, r)
	})
}

// dropForbiddenMount turns a cross-repository mount from a repository the caller may not
// pull into a plain upload, as registries with token auth do, instead of refusing the push.
func (c *Controller) dropForbiddenMount(r *http.Request) {
	if r.Method != http.MethodPost {
		return
	}
	if rt, ok := route.Of(r); !ok || rt.Kind != route.BlobUpload {
		return
	}
	q := r.URL.Query()
	from := q.Get("from")
	if from == "" {
		return
	}
	id, err := c.authenticate(r)
	if err != nil {
		return
	}
	if ok, _, err := c.allowed(r.Context(), id, from, ActionPull); ok && err == nil {
		return
	}
	q.Del("from")
	q.Del("mount")
	r.URL.RawQuery = q.Encode()
}

// errUnavailableMessage answers a request whose identity provider could not be asked.
const errUnavailableMessage = "the identity provider cannot be reached; try again later"

// ErrorBody is an OCI distribution error response.
type ErrorBody struct {
	Errors []ErrorEntry `json:"errors"`
}

// ErrorEntry is one OCI distribution error.
type ErrorEntry struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Detail  any    `json:"detail,omitempty"`
}

// denyWriter rewrites the 401 distribution sends for a denied known user into 403 DENIED.
type denyWriter struct {
	http.ResponseWriter
	d         *decision
	swallowed bool
}

func (w *denyWriter) WriteHeader(code int) {
	if code == http.StatusUnauthorized && w.d.unavailable.Load() {
		w.swallowed = true
		h := w.ResponseWriter.Header()
		h.Del("WWW-Authenticate")
		h.Del("Content-Length")
		h.Set("Content-Type", "application/json; charset=utf-8")
		h.Set("Retry-After", "10")
		w.ResponseWriter.WriteHeader(http.StatusServiceUnavailable)
		_ = json.NewEncoder(w.ResponseWriter).Encode(ErrorBody{Errors: []ErrorEntry{{
			Code: "UNAVAILABLE", Message: errUnavailableMessage,
		}}})
		return
	}
	if code == http.StatusUnauthorized && w.d.denied.Load() {
		w.swallowed = true
		h := w.ResponseWriter.Header()
		h.Del("WWW-Authenticate")
		h.Del("Content-Length")
		h.Set("Content-Type", "application/json; charset=utf-8")
		w.ResponseWriter.WriteHeader(http.StatusForbidden)
		_ = json.NewEncoder(w.ResponseWriter).Encode(ErrorBody{Errors: []ErrorEntry{{
			Code: "DENIED", Message: w.d.message(),
		}}})
		return
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *denyWriter) Write(b []byte) (int, error) {
	if w.swallowed {
		return len(b), nil
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *denyWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush implements http.Flusher.
func (w *denyWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok && !w.swallowed {
		f.Flush()
	}
}

// Authorize checks that the request may perform action on repository, for handlers
// Dockyard serves itself (distribution's own routes are checked by distribution). On
// refusal it writes the same answer distribution's routes give — 401 with a challenge, or
// 403 DENIED for a known user — and returns false.
func (c *Controller) Authorize(w http.ResponseWriter, r *http.Request, repository, action string) bool {
	_, err := c.Authorized(r, auth.Access{Resource: auth.Resource{Type: "repository", Name: repository}, Action: action})
	if err == nil {
		return true
	}
	var ch *challenge
	if errors.As(err, &ch) && ch.denied {
		writeError(w, http.StatusForbidden, "DENIED", deniedMessage(ch.reason))
		return false
	}
	if ch != nil && ch.unavailable {
		w.Header().Set("Retry-After", "10")
		writeError(w, http.StatusServiceUnavailable, "UNAVAILABLE", errUnavailableMessage)
		return false
	}
	if ch != nil {
		ch.SetHeaders(r, w)
	}
	writeError(w, http.StatusUnauthorized, "UNAUTHORIZED", "authentication required")
	return false
}
