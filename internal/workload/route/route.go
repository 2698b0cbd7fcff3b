// Package route parses registry API paths with distribution's own route grammar (its
// gorilla router and the reference and digest regular expressions), plus the OCI 1.1
// referrers route distribution does not serve. Every part of the workload that needs to
// know what a request is about — garbage-collection markers, metrics, access decisions,
// the referrers API — asks this package, so a repository named `a/blobs/b` or
// `x/manifests/y` is never mistaken for a blob or manifest route.
package route

import (
	"context"
	"net/http"
	"net/url"
	"strings"

	v2 "github.com/distribution/distribution/v3/registry/api/v2"
	"github.com/distribution/reference"
	"github.com/gorilla/mux"
	"github.com/opencontainers/go-digest"
)

// Kind names a route. The values are distribution's route names, plus Referrers and Pulls.
type Kind string

// Route kinds.
const (
	Base            Kind = v2.RouteNameBase
	Manifest        Kind = v2.RouteNameManifest
	Tags            Kind = v2.RouteNameTags
	Blob            Kind = v2.RouteNameBlob
	BlobUpload      Kind = v2.RouteNameBlobUpload
	BlobUploadChunk Kind = v2.RouteNameBlobUploadChunk
	Catalog         Kind = v2.RouteNameCatalog
	// Referrers is GET /v2/<name>/referrers/<digest> (OCI distribution-spec 1.1).
	Referrers Kind = "referrers"
	// Pulls is GET /v2/<name>/_dockyard/pulls: Dockyard's record of when the repository's
	// manifests were last pulled (see scan.PullsSuffix).
	Pulls Kind = "pulls"
)

// Route is what a request path addresses.
type Route struct {
	Kind Kind
	// Name is the repository name; empty for base and catalog.
	Name string
	// Reference is a manifest's tag or digest (Manifest).
	Reference string
	// Digest is a blob's digest (Blob) or a referrers subject (Referrers).
	Digest string
	// UUID is an upload session (BlobUploadChunk).
	UUID string
}

// router is distribution's router with the referrers route added after its own routes.
var router = func() *mux.Router {
	r := v2.RouterWithPrefix("")
	r.Path("/v2/{name:" + reference.NameRegexp.String() + "}/referrers/{digest:" + digest.DigestRegexp.String() + "}").
		Name(string(Referrers))
	r.Path("/v2/{name:" + reference.NameRegexp.String() + "}/_dockyard/pulls").Name(string(Pulls))
	return r
}()

// Parse returns the route of an API path. ok is false for paths outside the API grammar
// (including repository names the grammar refuses).
func Parse(path string) (Route, bool) {
	req := &http.Request{Method: http.MethodGet, URL: &url.URL{Path: path}}
	var m mux.RouteMatch
	if !router.Match(req, &m) || m.Route == nil || m.MatchErr != nil {
		return Route{}, false
	}
	kind := Kind(m.Route.GetName())
	// The router matches with StrictSlash, answering the other form with a redirect: only
	// the canonical form is the route itself.
	if strings.HasSuffix(path, "/") != (kind == Base || kind == BlobUpload) {
		return Route{}, false
	}
	v := m.Vars
	return Route{
		Kind:      kind,
		Name:      v["name"],
		Reference: v["reference"],
		Digest:    v["digest"],
		UUID:      v["uuid"],
	}, true
}

type ctxKey struct{}

type parsed struct {
	path string
	rt   Route
	ok   bool
}

// WithRoute parses r's path once and keeps the result in r's context, so the middlewares
// after it do not run the route grammar again.
func WithRoute(r *http.Request) *http.Request {
	rt, ok := Parse(r.URL.Path)
	return r.WithContext(context.WithValue(r.Context(), ctxKey{}, parsed{path: r.URL.Path, rt: rt, ok: ok}))
}

// Of returns the route of a request's path, from WithRoute's result when the path is still
// the one it parsed.
func Of(r *http.Request) (Route, bool) {
	if p, found := r.Context().Value(ctxKey{}).(parsed); found && p.path == r.URL.Path {
		return p.rt, p.ok
	}
	return Parse(r.URL.Path)
}

// ManifestDigest returns the manifest reference when it is a digest.
func (rt Route) ManifestDigest() (digest.Digest, bool) {
	if rt.Kind != Manifest {
		return "", false
	}
	d, err := digest.Parse(rt.Reference)
	return d, err == nil
}

// Label is a short, bounded name for metrics.
func (rt Route) Label() string { return string(rt.Kind) }
