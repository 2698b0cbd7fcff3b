package server_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// hostileCase is one malformed or hostile request and the 4xx it must get.
type hostileCase struct {
	name   string
	method string
	path   string // may contain {upload}: an upload session started for the case
	header map[string]string
	body   string
	status int
	code   string // OCI error code; "" = any
}

var longName = strings.Repeat("a/", 130) + "x" // 261 characters: over the spec's 255

var hostileCases = []hostileCase{
	{"name too long, manifest", "GET", "/v2/" + longName + "/manifests/latest", nil, "", 400, "NAME_INVALID"},
	{"name too long, blob upload", "POST", "/v2/" + longName + "/blobs/uploads/", nil, "", 400, "NAME_INVALID"},
	{"name too long, tags", "GET", "/v2/" + longName + "/tags/list", nil, "", 400, "NAME_INVALID"},
	{"name too long, referrers", "GET", "/v2/" + longName + "/referrers/sha256:" + strings.Repeat("a", 64), nil, "", 400, "NAME_INVALID"},
	{"uppercase name", "GET", "/v2/Team/app/manifests/latest", nil, "", 404, ""},
	{"bad Content-Range", "PATCH", "{upload}", map[string]string{"Content-Range": "garbage", "Content-Type": "application/octet-stream"}, "abc", 416, ""},
	{"Content-Range from the end", "PATCH", "{upload}", map[string]string{"Content-Range": "5-2", "Content-Type": "application/octet-stream"}, "abc", 416, ""},
	{"Content-Range past the data", "PATCH", "{upload}", map[string]string{"Content-Range": "100-102", "Content-Type": "application/octet-stream"}, "abc", 416, ""},
	{"chunk with a range and no type", "PATCH", "{upload}", map[string]string{"Content-Range": "0-2"}, "abc", 0, ""},
	{"commit with a bad Content-Range", "PUT", "{upload}&digest=sha256:" + strings.Repeat("a", 64), map[string]string{"Content-Range": "0"}, "0", 416, "RANGE_INVALID"},
	{"Content-Range past int64", "PATCH", "{upload}", map[string]string{"Content-Range": "9999999999999999999-9999999999999999999"}, "abc", 416, "RANGE_INVALID"},
	{"chunk of another type", "PATCH", "{upload}", map[string]string{"Content-Type": "text/plain"}, "abc", 400, "BLOB_UPLOAD_INVALID"},
	{"commit with a bad digest", "PUT", "{upload}&digest=sha256:zz", nil, "", 400, "DIGEST_INVALID"},
	{"commit with an unknown algorithm", "PUT", "{upload}&digest=md5:" + strings.Repeat("a", 32), nil, "", 400, "DIGEST_INVALID"},
	{"commit with a wrong digest", "PUT", "{upload}&digest=sha256:" + strings.Repeat("a", 64), nil, "x", 400, "DIGEST_INVALID"},
	{"unknown upload session", "PATCH", "/v2/ok/blobs/uploads/nonexistent?_state=x", nil, "abc", 0, ""},
	{"bad upload state", "PUT", "/v2/ok/blobs/uploads/abc?_state=%%%", nil, "", 0, ""},
	{"manifest not JSON", "PUT", "/v2/ok/manifests/v1", map[string]string{"Content-Type": "application/vnd.oci.image.manifest.v1+json"}, "{{{", 400, ""},
	{"manifest unknown media type", "PUT", "/v2/ok/manifests/v1", map[string]string{"Content-Type": "text/plain"}, "{}", 400, ""},
	{"manifest by a wrong digest", "PUT", "/v2/ok/manifests/sha256:" + strings.Repeat("b", 64), map[string]string{"Content-Type": "application/vnd.oci.image.manifest.v1+json"}, `{"schemaVersion":2}`, 400, ""},
	{"manifest by a wrong sha512", "PUT", "/v2/ok/manifests/sha512:" + strings.Repeat("b", 128), map[string]string{"Content-Type": "application/vnd.oci.image.manifest.v1+json"}, `{"schemaVersion":2}`, 400, "DIGEST_INVALID"},
	{"tags list with a bad n", "GET", "/v2/ok/tags/list?n=-1", nil, "", 0, ""},
	{"catalog with a bad n", "GET", "/v2/_catalog?n=abc", nil, "", 400, ""},
	{"referrers of a bad digest", "GET", "/v2/ok/referrers/sha256:abc", nil, "", 0, ""},
	{"referrers with a bad method", "DELETE", "/v2/ok/referrers/sha256:" + strings.Repeat("a", 64), nil, "", 405, "UNSUPPORTED"},
	{"blob of an unknown algorithm", "GET", "/v2/ok/blobs/foo:" + strings.Repeat("a", 64), nil, "", 0, ""},
	{"mount with a bad digest", "POST", "/v2/ok/blobs/uploads/?mount=sha256:zz&from=other", nil, "", 0, ""},
	{"mount from a bad name", "POST", "/v2/ok/blobs/uploads/?mount=sha256:" + strings.Repeat("a", 64) + "&from=BAD//name", nil, "", 0, ""},
	{"delete of a tag-shaped manifest ref", "DELETE", "/v2/ok/manifests/" + strings.Repeat("t", 128), nil, "", 0, ""},
}

// No hostile request gets a 5xx; where the spec names an answer (status, code), it gets
// that one. Status 0 in the table means "any answer below 500" (e.g. a mount with a bad
// digest is a plain upload start, 202).
func TestHostileRequestsGet4xx(t *testing.T) {
	reg := startRegistry(t, nil, nil)
	client := &http.Client{Transport: reg.transport, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, tc := range hostileCases {
		t.Run(tc.name, func(t *testing.T) {
			status, code, body := sendHostile(t, client, reg, tc)
			if status < 0 {
				t.Fatalf("not sent: %s", body)
			}
			if status >= 500 {
				t.Fatalf("%s %s: HTTP %d, want below 500 (body %s)", tc.method, tc.path, status, body)
			}
			if tc.status != 0 && status != tc.status {
				t.Errorf("HTTP %d, want %d (body %s)", status, tc.status, body)
			}
			if tc.code != "" && code != tc.code {
				t.Errorf("error code %q, want %q (body %s)", code, tc.code, body)
			}
		})
	}
}

func sendHostile(t testing.TB, client *http.Client, reg *testRegistry, tc hostileCase) (int, string, string) {
	t.Helper()
	path := tc.path
	if strings.HasPrefix(path, "{upload}") {
		resp, err := client.Post("https://"+reg.host+"/v2/ok/blobs/uploads/", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		loc := resp.Header.Get("Location")
		if resp.StatusCode != http.StatusAccepted || loc == "" {
			t.Fatalf("start upload: %d", resp.StatusCode)
		}
		path = strings.Replace(path, "{upload}", loc, 1)
	}
	url := path
	if strings.HasPrefix(path, "/") {
		url = "https://" + reg.host + path
	}
	req, err := http.NewRequest(tc.method, url, strings.NewReader(tc.body))
	if err != nil {
		return -1, "", err.Error() // not a request a client can send
	}
	for k, v := range tc.header {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		// The client refused to send it (an invalid header value): no request, no answer.
		return -1, "", err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	var eb struct{ Errors []struct{ Code string } }
	code := ""
	if json.Unmarshal(b, &eb) == nil && len(eb.Errors) > 0 {
		code = eb.Errors[0].Code
	}
	return resp.StatusCode, code, string(b)
}

// FuzzRequests sends generated requests (method, path, query, Content-Range, Content-Type,
// body) to one registry and fails on any 5xx. `go test` runs the seeds (the table above);
// `go test -run '^$' -fuzz FuzzRequests ./internal/workload/server` explores further.
func FuzzRequests(f *testing.F) {
	methods := []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"}
	for _, tc := range hostileCases {
		m := 0
		for i, x := range methods {
			if x == tc.method {
				m = i
			}
		}
		f.Add(uint8(m), tc.path, tc.header["Content-Range"], tc.header["Content-Type"], []byte(tc.body))
	}
	reg := startRegistry(f, nil, nil)
	client := &http.Client{Transport: reg.transport, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	f.Fuzz(func(t *testing.T, method uint8, path, contentRange, contentType string, body []byte) {
		if !strings.HasPrefix(path, "/") && !strings.HasPrefix(path, "{upload}") {
			path = "/v2/" + path
		}
		if strings.ContainsAny(path, " \t\r\n#") || len(path) > 4096 || len(body) > 1<<20 {
			return // not a request line a client can send
		}
		if _, err := http.NewRequest(http.MethodGet, "https://"+reg.host+path, nil); err != nil && !strings.HasPrefix(path, "{upload}") {
			return
		}
		h := map[string]string{}
		if contentRange != "" && !strings.ContainsAny(contentRange, "\r\n\x00") {
			h["Content-Range"] = contentRange
		}
		if contentType != "" && !strings.ContainsAny(contentType, "\r\n\x00") {
			h["Content-Type"] = contentType
		}
		tc := hostileCase{method: methods[int(method)%len(methods)], path: path, header: h, body: string(body)}
		if status, _, b := sendHostile(t, client, reg, tc); status >= 500 {
			t.Fatalf("%s %s (Content-Range %q, Content-Type %q, %d bytes): HTTP %d %s", tc.method, path, contentRange, contentType, len(body), status, b)
		}
	})
}
