package server

import (
	"fmt"
	"log/slog"
	"net/http"
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
