package server

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// When the bookkeeping behind a success fails, the client is told to retry (503) and is
// not given the success's Location or digest.
func TestCommitWriter(t *testing.T) {
	created := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Location", "/v2/a/manifests/sha256:x")
		w.Header().Set("Docker-Content-Digest", "sha256:x")
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte("body"))
	})
	for _, tc := range []struct {
		name    string
		err     error
		code    int
		headers bool
	}{
		{"bookkeeping done", nil, http.StatusCreated, true},
		{"bookkeeping failed", errors.New("storage down"), http.StatusServiceUnavailable, false},
	} {
		rec := httptest.NewRecorder()
		ran := false
		cw := &commitWriter{ResponseWriter: rec, codes: []int{http.StatusCreated}, failMessage: "retry",
			onSuccess: func(h http.Header) error { ran = true; h.Set("X-Extra", "1"); return tc.err }}
		created.ServeHTTP(cw, httptest.NewRequest(http.MethodPut, "/", nil))
		if !ran || rec.Code != tc.code {
			t.Errorf("%s: ran %v, code %d, want %d", tc.name, ran, rec.Code, tc.code)
		}
		if got := rec.Header().Get("Location") != ""; got != tc.headers {
			t.Errorf("%s: Location present = %v, want %v", tc.name, got, tc.headers)
		}
		if tc.err != nil && (!strings.Contains(rec.Body.String(), "UNAVAILABLE") || strings.Contains(rec.Body.String(), "body")) {
			t.Errorf("%s: body %q, want only the OCI error", tc.name, rec.Body.String())
		}
	}
	// Other answers pass through untouched.
	rec := httptest.NewRecorder()
	cw := &commitWriter{ResponseWriter: rec, codes: []int{http.StatusCreated}, onSuccess: func(http.Header) error { t.Error("ran on a 404"); return nil }}
	http.NotFound(cw, httptest.NewRequest(http.MethodGet, "/", nil))
	if rec.Code != http.StatusNotFound {
		t.Errorf("404 became %d", rec.Code)
	}
}

// A manifest body is read and copied once, however many layers look at it, and each layer
// (and distribution after them) still sees all of it.
func TestBufferBodyReadsOnce(t *testing.T) {
	r := httptest.NewRequest(http.MethodPut, "/v2/a/manifests/v1", strings.NewReader(`{"schemaVersion":2}`))
	var first []byte
	for range 3 {
		b, err := bufferBody(r, maxManifestBytes)
		if err != nil || string(b) != `{"schemaVersion":2}` {
			t.Fatalf("bufferBody = %q, %v", b, err)
		}
		if first == nil {
			first = b
		} else if &b[0] != &first[0] {
			t.Fatal("the body was read and copied again")
		}
	}
	rest, _ := io.ReadAll(r.Body)
	if string(rest) != `{"schemaVersion":2}` {
		t.Errorf("next handler read %q", rest)
	}
}
