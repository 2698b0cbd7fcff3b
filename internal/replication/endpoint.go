package replication

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// options are the client options for an endpoint; sent, when set, counts blob bytes
// uploaded through it.
func options(ctx context.Context, e Endpoint, sent *atomic.Int64, jobs int) []remote.Option {
	rt := e.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	if sent != nil {
		rt = &countingTransport{next: rt, n: sent}
	}
	a := e.Auth
	if a == nil {
		a = authn.Anonymous
	}
	return []remote.Option{remote.WithContext(ctx), remote.WithTransport(rt), remote.WithAuth(a),
		remote.WithJobs(jobs), remote.WithUserAgent("dockyard-replicator")}
}

// preflight checks that an endpoint answers /v2/ over trusted TLS and, when it has
// credentials, accepts them (a token registry's token endpoint, or Basic on /v2/).
func preflight(ctx context.Context, e Endpoint, side Side) error {
	reg, err := registry(e)
	if err != nil {
		return &EndpointError{side, e.Host, err}
	}
	rt := e.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	a := e.Auth
	if a == nil {
		a = authn.Anonymous
	}
	t, err := transport.NewWithContext(ctx, reg, a, rt, nil)
	if err != nil {
		return &EndpointError{side, e.Host, err}
	}
	if a == authn.Anonymous {
		return nil // anonymous callers may be refused /v2/ and still pull
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, reg.Scheme()+"://"+reg.RegistryStr()+"/v2/", http.NoBody)
	if err != nil {
		return &EndpointError{side, e.Host, err}
	}
	resp, err := t.RoundTrip(req)
	if err != nil {
		return &EndpointError{side, e.Host, err}
	}
	defer func() { _ = resp.Body.Close() }()
	if err := transport.CheckError(resp, http.StatusOK); err != nil {
		return &EndpointError{side, e.Host, err}
	}
	return nil
}

func registry(e Endpoint) (name.Registry, error) {
	var o []name.Option
	if e.PlainHTTP {
		o = append(o, name.Insecure)
	}
	return name.NewRegistry(e.Host, o...)
}

func repository(e Endpoint, repo string) (name.Repository, error) {
	reg, err := registry(e)
	if err != nil {
		return name.Repository{}, err
	}
	return reg.Repo(repo), nil
}

// countingTransport counts the bytes of blob uploads it sends.
type countingTransport struct {
	next http.RoundTripper
	n    *atomic.Int64
}

func (t *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil && (req.Method == http.MethodPut || req.Method == http.MethodPatch || req.Method == http.MethodPost) &&
		strings.Contains(req.URL.Path, "/blobs/uploads/") {
		req = req.Clone(req.Context())
		req.Body = &countingBody{ReadCloser: req.Body, n: t.n}
	}
	return t.next.RoundTrip(req)
}

type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}

// DockerConfigAuth returns the credentials a .dockerconfigjson holds for host (keys may
// carry a scheme and a trailing '/'; Docker Hub's index.docker.io/v1 counts for
// index.docker.io). Nothing secret is in its errors.
func DockerConfigAuth(raw []byte, host string) (authn.Authenticator, error) {
	var cfg struct {
		Auths map[string]authn.AuthConfig `json:"auths"`
	}
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return nil, errors.New(".dockerconfigjson is not a Docker config")
	}
	for k, v := range cfg.Auths {
		k = strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(k, "https://"), "http://"), "/")
		if k == host || (host == "index.docker.io" && k == "index.docker.io/v1") {
			return authn.FromConfig(v), nil
		}
	}
	return nil, fmt.Errorf("no entry for %s in .dockerconfigjson", host)
}
