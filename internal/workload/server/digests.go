package server

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path"
	"strings"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/opencontainers/go-digest"

	"github.com/dockyard-dev/dockyard/internal/workload/layout"
	"github.com/dockyard-dev/dockyard/internal/workload/route"
)

// digestAliases completes distribution's support for digests of other algorithms than
// sha256 (OCI 1.1 allows sha512). Distribution stores every blob and manifest once, under
// its sha256, and links a blob uploaded as sha512:<hex> under that name too; but it answers
// with the sha256 digest, forgets the alias on a mount, and refuses a manifest pushed by a
// sha512 digest. Around it, without changing its storage:
//   - blob uploads, mounts and reads answer with the digest the client named;
//   - a mount of a sha512 blob links the alias into the target repository too;
//   - a manifest PUT by sha512 is checked against the body, stored by its sha256 and linked
//     under the sha512 alias (a revision link naming the canonical digest, the same shape
//     distribution uses for blob aliases), so reads, deletes and the referrers index find it.
//
// Garbage collection resolves aliases through these links (see gc.markDigest).
type digestAliases struct {
	driver storagedriver.StorageDriver
	log    *slog.Logger
}

func nonCanonical(s string) (digest.Digest, bool) {
	d, err := digest.Parse(s)
	return d, err == nil && d.Algorithm() != digest.Canonical
}

func (a *digestAliases) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rt, ok := route.Of(r)
		if !ok {
			next.ServeHTTP(w, r)
			return
		}
		switch {
		case rt.Kind == route.Blob && (r.Method == http.MethodGet || r.Method == http.MethodHead):
			if d, ok := nonCanonical(rt.Digest); ok {
				w = aliasWriter(w, d, []int{http.StatusOK, http.StatusPartialContent}, nil)
			}
		case (rt.Kind == route.BlobUpload || rt.Kind == route.BlobUploadChunk) && (r.Method == http.MethodPost || r.Method == http.MethodPut):
			q := r.URL.Query()
			if d, ok := nonCanonical(q.Get("digest")); ok {
				w = aliasWriter(w, d, []int{http.StatusCreated}, nil)
			} else if d, ok := nonCanonical(q.Get("mount")); ok && q.Get("from") != "" && r.Method == http.MethodPost {
				// Distribution links the alias to itself in the target repository; link it
				// (and its canonical digest) to the content the source repository names.
				from := q.Get("from")
				w = aliasWriter(w, d, []int{http.StatusCreated}, func(digest.Digest) error { return a.linkMountedAlias(r, from, rt.Name, d) })
			}
		case rt.Kind == route.Manifest && r.Method == http.MethodDelete:
			if d, err := digest.Parse(rt.Reference); err == nil {
				w = a.deleteNames(w, r, next, rt.Name, d)
			}
		case rt.Kind == route.Manifest && r.Method == http.MethodPut:
			d, ok := nonCanonical(rt.Reference)
			if !ok {
				break
			}
			body, err := bufferBody(r, maxManifestBytes)
			if err != nil || body == nil {
				writeOCIError(w, http.StatusBadRequest, "MANIFEST_INVALID", "manifest unreadable or larger than 4 MiB")
				return
			}
			if d.Algorithm().FromBytes(body) != d {
				writeOCIError(w, http.StatusBadRequest, "DIGEST_INVALID", fmt.Sprintf("manifest content does not match digest %s", d))
				return
			}
			canonical := digest.FromBytes(body)
			r.URL.Path = strings.TrimSuffix(r.URL.Path, rt.Reference) + canonical.String()
			r.URL.RawPath = ""
			w = aliasWriter(w, d, []int{http.StatusCreated}, func(canonical digest.Digest) error {
				return a.driver.PutContent(r.Context(), layout.RevisionLinkPath(rt.Name, d), []byte(canonical.String()))
			})
		}
		next.ServeHTTP(w, r)
	})
}

// deleteNames makes a manifest delete remove the manifest under every name: deleting by
// sha256 also removes the sha512 names linked to it (else the deleted manifest would stay
// pullable, and listed as a referrer, under them); deleting by a sha512 name also deletes
// the sha256 manifest it names, through distribution's own delete (which untags it too).
func (a *digestAliases) deleteNames(w http.ResponseWriter, r *http.Request, next http.Handler, name string, d digest.Digest) http.ResponseWriter {
	var target digest.Digest
	if d.Algorithm() != digest.Canonical {
		b, err := a.driver.GetContent(r.Context(), layout.RevisionLinkPath(name, d))
		if err != nil {
			return w // unknown name: distribution answers
		}
		if target, err = digest.Parse(string(b)); err != nil || target.Algorithm() != digest.Canonical {
			return w
		}
	}
	return &commitWriter{ResponseWriter: w, codes: []int{http.StatusAccepted},
		failMessage: "the manifest was deleted under the name given but not under its other names; retry",
		onSuccess: func(http.Header) error {
			if target == "" {
				return a.removeAliasesOf(r, name, d)
			}
			// Distribution's delete of the sha256 manifest, as the same caller.
			sub := r.Clone(r.Context())
			sub.URL.Path = "/v2/" + name + "/manifests/" + target.String()
			sub.URL.RawPath = ""
			sub.Body = http.NoBody
			rec := &statusOnly{header: http.Header{}}
			next.ServeHTTP(rec, route.WithRoute(sub))
			if rec.code != http.StatusAccepted && rec.code != http.StatusNotFound {
				return fmt.Errorf("delete %s after its alias %s: status %d", target, d, rec.code)
			}
			return a.removeAliasesOf(r, name, target)
		}}
}

// removeAliasesOf deletes the non-sha256 manifest names in repository name that link to
// target.
func (a *digestAliases) removeAliasesOf(r *http.Request, name string, target digest.Digest) error {
	ctx := r.Context()
	algs, err := a.driver.List(ctx, layout.RevisionsPath(name))
	if err != nil {
		var nf storagedriver.PathNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		return err
	}
	for _, algDir := range algs {
		if path.Base(algDir) == digest.Canonical.String() {
			continue
		}
		links, err := a.driver.List(ctx, algDir)
		if err != nil {
			continue
		}
		for _, dir := range links {
			alias := digest.NewDigestFromEncoded(digest.Algorithm(path.Base(algDir)), path.Base(dir))
			if alias.Validate() != nil {
				continue
			}
			link := layout.RevisionLinkPath(name, alias)
			if b, err := a.driver.GetContent(ctx, link); err == nil && string(b) == target.String() {
				if err := a.driver.Delete(ctx, path.Dir(link)); err != nil {
					var nf storagedriver.PathNotFoundError
					if !errors.As(err, &nf) {
						return err
					}
				}
			}
		}
	}
	return nil
}

// statusOnly records the status of a sub-request and discards its body.
type statusOnly struct {
	header http.Header
	code   int
}

func (s *statusOnly) Header() http.Header { return s.header }
func (s *statusOnly) WriteHeader(code int) {
	if s.code == 0 {
		s.code = code
	}
}
func (s *statusOnly) Write(b []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	return len(b), nil
}

func (a *digestAliases) linkMountedAlias(r *http.Request, from, to string, alias digest.Digest) error {
	ctx := r.Context()
	b, err := a.driver.GetContent(ctx, layout.LayerLinkPath(from, alias))
	if err != nil {
		return fmt.Errorf("read %s link in %s: %w", alias, from, err)
	}
	canonical, err := digest.Parse(string(b))
	if err != nil || canonical.Algorithm() != digest.Canonical {
		return fmt.Errorf("link of %s in %s names %q, not a sha256 digest", alias, from, b)
	}
	if err := a.driver.PutContent(ctx, layout.LayerLinkPath(to, canonical), []byte(canonical.String())); err != nil {
		return err
	}
	return a.driver.PutContent(ctx, layout.LayerLinkPath(to, alias), []byte(canonical.String()))
}

// aliasWriter rewrites a successful answer about the canonical digest into one about the
// alias the client asked for, after record (if any) stored the alias.
func aliasWriter(w http.ResponseWriter, alias digest.Digest, codes []int, record func(canonical digest.Digest) error) http.ResponseWriter {
	return &commitWriter{ResponseWriter: w, codes: codes,
		failMessage: "stored, but the " + alias.Algorithm().String() + " name was not recorded; retry",
		onSuccess: func(h http.Header) error {
			canonical, _ := digest.Parse(h.Get("Docker-Content-Digest"))
			if record != nil {
				if err := record(canonical); err != nil {
					return err
				}
			}
			h.Set("Docker-Content-Digest", alias.String())
			if h.Get("ETag") != "" {
				h.Set("ETag", `"`+alias.String()+`"`)
			}
			if loc := h.Get("Location"); loc != "" && canonical != "" {
				h.Set("Location", strings.Replace(loc, canonical.String(), alias.String(), 1))
			}
			return nil
		}}
}
