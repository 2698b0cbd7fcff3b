package route

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

const d1 = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

func TestParse(t *testing.T) {
	cases := []struct {
		path string
		want Route
		ok   bool
	}{
		{"/v2/", Route{Kind: Base}, true},
		{"/v2/_catalog", Route{Kind: Catalog}, true},
		{"/v2/a/manifests/latest", Route{Kind: Manifest, Name: "a", Reference: "latest"}, true},
		{"/v2/a/blobs/" + d1, Route{Kind: Blob, Name: "a", Digest: d1}, true},
		{"/v2/a/blobs/uploads/", Route{Kind: BlobUpload, Name: "a"}, true},
		{"/v2/a/blobs/uploads/abc-1", Route{Kind: BlobUploadChunk, Name: "a", UUID: "abc-1"}, true},
		{"/v2/a/tags/list", Route{Kind: Tags, Name: "a"}, true},
		{"/v2/a/referrers/" + d1, Route{Kind: Referrers, Name: "a", Digest: d1}, true},
		// Repository names may contain the route words as path components.
		{"/v2/a/blobs/b/manifests/v1", Route{Kind: Manifest, Name: "a/blobs/b", Reference: "v1"}, true},
		{"/v2/a/manifests/b/blobs/" + d1, Route{Kind: Blob, Name: "a/manifests/b", Digest: d1}, true},
		{"/v2/blobs/uploads/manifests/" + d1, Route{Kind: Manifest, Name: "blobs/uploads", Reference: d1}, true},
		{"/v2/x/tags/y/tags/list", Route{Kind: Tags, Name: "x/tags/y", Reference: ""}, true},
		{"/v2/a/uploads/b/blobs/uploads/", Route{Kind: BlobUpload, Name: "a/uploads/b"}, true},
		{"/v2/a/referrers/b/referrers/" + d1, Route{Kind: Referrers, Name: "a/referrers/b", Digest: d1}, true},
		{"/v2/a/blobs/b/manifests/" + d1, Route{Kind: Manifest, Name: "a/blobs/b", Reference: d1}, true},
		// Outside the grammar.
		{"/v2/a/b/_dockyard/pulls", Route{Kind: Pulls, Name: "a/b"}, true},
		{"/v2/_dockyard/pulls", Route{}, false},
		{"/v2/a/_dockyard/pulls/", Route{}, false},
		{"/v2/A/manifests/latest", Route{}, false},
		{"/v2/a/manifests/", Route{}, false},
		{"/v2/a/blobs/notadigest", Route{}, false},
		{"/healthz", Route{}, false},
		{"/v2/a/referrers/latest", Route{}, false},
		// Only the canonical slash form (the other one is redirected by distribution).
		{"/v2/a/blobs/" + d1 + "/", Route{}, false},
		{"/v2/a/manifests/latest/", Route{}, false},
		{"/v2", Route{}, false},
		{"/v2/a/blobs/uploads", Route{}, false},
	}
	for _, tc := range cases {
		got, ok := Parse(tc.path)
		if ok != tc.ok || got != tc.want {
			t.Errorf("Parse(%q) = %+v, %v; want %+v, %v", tc.path, got, ok, tc.want, tc.ok)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"/v2/a/blobs/b/manifests/v1", "/v2/a/referrers/" + d1, "/v2/_catalog", "/v2/a/blobs/uploads/x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		rt, ok := Parse(p)
		if !ok {
			return
		}
		switch rt.Kind {
		case Base, Catalog:
			if rt.Name != "" {
				t.Fatalf("%q: %s route with a name %q", p, rt.Kind, rt.Name)
			}
		default:
			if rt.Name == "" {
				t.Fatalf("%q: %s route without a name", p, rt.Kind)
			}
		}
	})
}

func TestOfUsesTheParsedRouteUntilThePathChanges(t *testing.T) {
	r := httptest.NewRequest(http.MethodPut, "/v2/a/manifests/v1", nil)
	r = WithRoute(r)
	if rt, ok := Of(r); !ok || rt.Kind != Manifest || rt.Reference != "v1" {
		t.Fatalf("Of = %+v, %v", rt, ok)
	}
	r.URL.Path = "/v2/a/manifests/" + d1
	if rt, ok := Of(r); !ok || rt.Reference != d1 {
		t.Errorf("after a rewrite Of = %+v, %v; want the new path's route", rt, ok)
	}
}
