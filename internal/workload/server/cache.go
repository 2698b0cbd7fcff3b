package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/distribution/distribution/v3"
	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/reference"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/singleflight"

	"github.com/dockyard-dev/dockyard/internal/registryconfig"
	"github.com/dockyard-dev/dockyard/internal/replication"
	"github.com/dockyard-dev/dockyard/internal/workload/access"
	"github.com/dockyard-dev/dockyard/internal/workload/route"
)

// pullThrough serves repositories under the cache prefixes from their upstream registries:
// a manifest pull that the store cannot answer (or a tag checked longer than its TTL ago)
// fetches the artifact — the manifest, an index's children, every blob — into the store
// before distribution serves it, so what is served is always a complete local copy and
// the next pull needs no upstream. When the upstream is unreachable, what the store has is
// served. Clients cannot write to cached repositories. Fetches of the same reference
// share one flight.
type pullThrough struct {
	upstreams []*upstream
	ns        distribution.Namespace
	driver    storagedriver.StorageDriver
	// can reports whether the request may perform action on repo; nil means no auth.
	can    func(r *http.Request, repo, action string) bool
	log    *slog.Logger
	now    func() time.Time
	flight singleflight.Group
}

// upstream is one cached registry with its client.
type upstream struct {
	cfg   registryconfig.CacheUpstream
	host  string
	plain bool

	mu    sync.Mutex
	caMod time.Time
	rt    http.RoundTripper
}

// fetchTimeout bounds one fetch of an artifact from an upstream.
const fetchTimeout = 10 * time.Minute

func newPullThrough(cfg *registryconfig.Cache, ns distribution.Namespace, driver storagedriver.StorageDriver, log *slog.Logger) *pullThrough {
	p := &pullThrough{ns: ns, driver: driver, log: log, now: time.Now}
	for _, u := range cfg.Upstreams {
		host, plain := u.Host()
		p.upstreams = append(p.upstreams, &upstream{cfg: u, host: host, plain: plain})
	}
	return p
}

// match returns the upstream caching repo and the repository's name there.
func (p *pullThrough) match(repo string) (*upstream, string) {
	for _, u := range p.upstreams {
		if rest, ok := strings.CutPrefix(repo, u.cfg.Prefix+"/"); ok && rest != "" {
			return u, rest
		}
	}
	return nil, ""
}

func (p *pullThrough) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rt, ok := route.Of(r)
		if !ok || rt.Name == "" {
			next.ServeHTTP(w, r)
			return
		}
		u, upRepo := p.match(rt.Name)
		if u == nil {
			next.ServeHTTP(w, r)
			return
		}
		read := r.Method == http.MethodGet || r.Method == http.MethodHead
		if !read && rt.Kind != route.Tags && rt.Kind != route.Referrers {
			writeOCIError(w, http.StatusMethodNotAllowed, "UNSUPPORTED",
				fmt.Sprintf("%s is a pull-through cache of %s: it is read-only", rt.Name, u.cfg.URL))
			return
		}
		if !read || (rt.Kind != route.Manifest && rt.Kind != route.Blob) || (p.can != nil && !p.can(r, rt.Name, access.ActionPull)) {
			next.ServeHTTP(w, r)
			return
		}
		var err error
		if rt.Kind == route.Manifest {
			err = p.ensureManifest(r.Context(), u, rt.Name, upRepo, rt.Reference)
		} else {
			err = p.ensureBlob(r.Context(), u, rt.Name, upRepo, rt.Digest)
		}
		var te *transport.Error
		switch {
		case err == nil:
		case errors.As(err, &te) && te.StatusCode == http.StatusNotFound:
			// The upstream does not have it either: distribution answers 404.
		default:
			p.log.Warn("Fetch from upstream", "upstream", u.cfg.URL, "repository", upRepo, "reference", rt.Reference+rt.Digest, "err", err)
			writeOCIError(w, http.StatusServiceUnavailable, "UNAVAILABLE",
				fmt.Sprintf("not cached, and the upstream %s could not be read: %v", u.cfg.URL, err))
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (p *pullThrough) repository(ctx context.Context, repo string) (distribution.Repository, error) {
	named, err := reference.WithName(repo)
	if err != nil {
		return nil, err
	}
	return p.ns.Repository(ctx, named)
}

// ensureManifest makes the store hold ref (a tag or a digest) of repo, fetching it when
// the store lacks it or the tag's TTL passed. A tag the store has is served as it is when
// the upstream cannot be asked.
func (p *pullThrough) ensureManifest(ctx context.Context, u *upstream, repo, upRepo, ref string) error {
	local, err := p.repository(ctx, repo)
	if err != nil {
		return err
	}
	if d, err := digest.Parse(ref); err == nil {
		ms, err := local.Manifests(ctx)
		if err != nil {
			return err
		}
		if ok, err := ms.Exists(ctx, d); err == nil && ok {
			return nil
		}
		_, err, _ = p.flight.Do(repo+"@"+ref, func() (any, error) {
			return nil, p.fetch(ctx, u, local, upRepo, d, "")
		})
		return err
	}
	marker := cacheTagMarker(repo, ref)
	have, haveErr := local.Tags(ctx).Get(ctx, ref)
	if haveErr == nil && p.fresh(ctx, marker, u.cfg.TagTTL.Duration) {
		return nil
	}
	_, err, _ = p.flight.Do(repo+":"+ref, func() (any, error) {
		// Shared by every waiting pull: it must not end with the first client's request.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fetchTimeout)
		defer cancel()
		opts, err := u.options(ctx)
		if err != nil {
			return nil, err
		}
		upRef, err := u.reference(upRepo, ref)
		if err != nil {
			return nil, err
		}
		desc, err := remote.Head(upRef, opts...)
		if err != nil {
			if haveErr == nil {
				p.log.Warn("Upstream unavailable, serving the cached tag", "upstream", u.cfg.URL, "repository", upRepo, "tag", ref, "err", err)
				return nil, nil
			}
			return nil, err
		}
		d := digest.Digest(desc.Digest.String())
		if haveErr != nil || have.Digest != d {
			if err := p.fetch(ctx, u, local, upRepo, d, ref); err != nil {
				return nil, err
			}
		}
		return nil, p.driver.PutContent(ctx, marker, []byte(p.now().UTC().Format(time.RFC3339Nano)))
	})
	return err
}

// cacheTagMarker is where the time a cached tag was last checked upstream is kept.
func cacheTagMarker(repo, tag string) string {
	return "/dockyard/cache/" + repo + "/_tags/" + tag
}

func (p *pullThrough) fresh(ctx context.Context, marker string, ttl time.Duration) bool {
	b, err := p.driver.GetContent(ctx, marker)
	if err != nil {
		return false
	}
	t, err := time.Parse(time.RFC3339Nano, string(b))
	return err == nil && p.now().Sub(t) < ttl
}

// fetch copies the manifest d of upRepo, with everything it references, into the store,
// the manifest after its blobs and children, and tags it when tag is set.
func (p *pullThrough) fetch(ctx context.Context, u *upstream, local distribution.Repository, upRepo string, d digest.Digest, tag string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fetchTimeout)
	defer cancel()
	opts, err := u.options(ctx)
	if err != nil {
		return err
	}
	upRef, err := u.reference(upRepo, d.String())
	if err != nil {
		return err
	}
	desc, err := remote.Get(upRef, opts...)
	if err != nil {
		return err
	}
	if desc.Digest.String() != d.String() {
		return fmt.Errorf("upstream served %s for %s", desc.Digest, d)
	}
	m, _, err := distribution.UnmarshalManifest(string(desc.MediaType), desc.Manifest)
	if err != nil {
		return fmt.Errorf("manifest %s: %w", d, err)
	}
	ms, err := local.Manifests(ctx)
	if err != nil {
		return err
	}
	for _, ref := range m.References() {
		if isManifestType(ref.MediaType) {
			if ok, err := ms.Exists(ctx, ref.Digest); err == nil && ok {
				continue
			}
			if err := p.fetch(ctx, u, local, upRepo, ref.Digest, ""); err != nil {
				return err
			}
			continue
		}
		if err := p.copyBlob(ctx, u, local, upRepo, ref); err != nil {
			return err
		}
	}
	got, err := ms.Put(ctx, m)
	if err != nil {
		return fmt.Errorf("store manifest %s: %w", d, err)
	}
	if got != d {
		return fmt.Errorf("stored manifest %s as %s", d, got)
	}
	if tag != "" {
		return local.Tags(ctx).Tag(ctx, tag, distribution.Descriptor{MediaType: string(desc.MediaType), Digest: d, Size: desc.Size})
	}
	return nil
}

func isManifestType(mt string) bool {
	switch mt {
	case "application/vnd.oci.image.manifest.v1+json", "application/vnd.oci.image.index.v1+json",
		"application/vnd.docker.distribution.manifest.v2+json", "application/vnd.docker.distribution.manifest.list.v2+json":
		return true
	}
	return false
}

// ensureBlob makes the store hold blob d of repo (a client fetching a blob of a manifest
// it got elsewhere).
func (p *pullThrough) ensureBlob(ctx context.Context, u *upstream, repo, upRepo, d string) error {
	dg, perr := digest.Parse(d)
	if perr != nil {
		return nil //nolint:nilerr // not ours to answer: distribution refuses the bad digest
	}
	local, err := p.repository(ctx, repo)
	if err != nil {
		return err
	}
	if _, err := local.Blobs(ctx).Stat(ctx, dg); err == nil {
		return nil
	}
	_, err, _ = p.flight.Do(repo+"@blob:"+d, func() (any, error) {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fetchTimeout)
		defer cancel()
		return nil, p.copyBlob(ctx, u, local, upRepo, distribution.Descriptor{Digest: dg, Size: -1})
	})
	return err
}

// copyBlob streams a blob from the upstream into the store; distribution checks its
// digest before it is linked.
func (p *pullThrough) copyBlob(ctx context.Context, u *upstream, local distribution.Repository, upRepo string, desc distribution.Descriptor) error {
	blobs := local.Blobs(ctx)
	if _, err := blobs.Stat(ctx, desc.Digest); err == nil {
		return nil
	}
	opts, err := u.options(ctx)
	if err != nil {
		return err
	}
	upRef, err := u.reference(upRepo, desc.Digest.String())
	if err != nil {
		return err
	}
	layer, err := remote.Layer(upRef.(name.Digest), opts...)
	if err != nil {
		return err
	}
	rc, err := layer.Compressed()
	if err != nil {
		return err
	}
	defer func() { _ = rc.Close() }()
	w, err := blobs.Create(ctx)
	if err != nil {
		return err
	}
	n, err := io.Copy(w, rc)
	if err != nil {
		_ = w.Cancel(ctx)
		return fmt.Errorf("fetch blob %s: %w", desc.Digest, err)
	}
	if _, err := w.Commit(ctx, distribution.Descriptor{Digest: desc.Digest, Size: n, MediaType: desc.MediaType}); err != nil {
		_ = w.Cancel(ctx)
		return fmt.Errorf("store blob %s: %w", desc.Digest, err)
	}
	return nil
}

// reference names ref (a tag or a digest) of upRepo at the upstream.
func (u *upstream) reference(upRepo, ref string) (name.Reference, error) {
	var o []name.Option
	if u.plain {
		o = append(o, name.Insecure)
	}
	repo, err := name.NewRepository(u.host+"/"+upRepo, o...)
	if err != nil {
		return nil, err
	}
	if strings.Contains(ref, ":") {
		return repo.Digest(ref), nil
	}
	return repo.Tag(ref), nil
}

// options are the client options for the upstream: its CA (re-read when the mounted file
// changes) and its credentials (re-read every time).
func (u *upstream) options(ctx context.Context) ([]remote.Option, error) {
	rt, err := u.transport()
	if err != nil {
		return nil, err
	}
	a, err := u.auth()
	if err != nil {
		return nil, err
	}
	return []remote.Option{remote.WithContext(ctx), remote.WithTransport(rt), remote.WithAuth(a),
		remote.WithUserAgent("dockyard-pull-through-cache")}, nil
}

func (u *upstream) transport() (http.RoundTripper, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	var mod time.Time
	if u.cfg.CAFile != "" {
		st, err := os.Stat(u.cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("upstream CA: %w", err)
		}
		mod = st.ModTime()
	}
	if u.rt != nil && mod.Equal(u.caMod) {
		return u.rt, nil
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.ResponseHeaderTimeout = time.Minute
	t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	if u.cfg.CAFile != "" {
		pem, err := os.ReadFile(u.cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("upstream CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, errors.New("upstream CA: no PEM certificate")
		}
		t.TLSClientConfig.RootCAs = pool
	}
	u.rt, u.caMod = t, mod
	return t, nil
}

func (u *upstream) auth() (authn.Authenticator, error) {
	dir := u.cfg.CredentialsDir
	if dir == "" {
		return authn.Anonymous, nil
	}
	if raw, err := os.ReadFile(filepath.Join(dir, ".dockerconfigjson")); err == nil {
		a, err := replication.DockerConfigAuth(raw, u.host)
		if err != nil {
			return nil, fmt.Errorf("upstream credentials: %w", err)
		}
		return a, nil
	}
	user, uerr := os.ReadFile(filepath.Join(dir, "username"))
	pass, perr := os.ReadFile(filepath.Join(dir, "password"))
	if uerr != nil || perr != nil {
		return nil, errors.New("upstream credentials: neither .dockerconfigjson nor username and password")
	}
	return &authn.Basic{Username: strings.TrimSpace(string(user)), Password: strings.TrimSpace(string(pass))}, nil
}
