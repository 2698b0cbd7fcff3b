package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"time"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/opencontainers/go-digest"

	"github.com/dockyard-dev/dockyard/internal/workload/layout"
	"github.com/dockyard-dev/dockyard/internal/workload/route"
)

// maxManifestBytes bounds how much of a manifest push is read to find its references;
// distribution refuses larger manifests anyway.
const maxManifestBytes = 4 << 20

// toucher keeps garbage collection from deleting what an in-flight push relies on. Before
// distribution answers a request after which a client may rely on a blob existing (a blob
// existence check during a push, a cross-repository mount, an upload commit, a manifest
// push and the blobs it references) it rewrites that digest's marker under
// layout.TouchRoot. The collector never deletes a blob whose marker is younger than its
// grace period and re-checks the marker after moving the blob aside, so either the
// collector sees the marker or the registry sees the blob gone.
type toucher struct {
	driver storagedriver.StorageDriver
	log    *slog.Logger
	// canPush reports whether the request may push to the repository; nil means no auth.
	canPush func(r *http.Request, repo string) bool
	now     func() time.Time
	// fsRoot, for filesystem storage, lets markers be written directly: the driver's
	// PutContent fsyncs the file and its directory (two disk flushes per blob check), which a
	// marker does not need — it only has to be visible to the collector, and a crash that
	// loses it also ends the push it protects.
	fsRoot string
}

// newToucher returns a toucher writing markers through d. Markers are rewritten on every
// such request (no in-process cache): a cache would have to be reasoned about against
// whatever else ages or removes markers, and one tiny write per relied-on blob is cheap
// next to the push itself.
func newToucher(d storagedriver.StorageDriver, canPush func(*http.Request, string) bool, log *slog.Logger) *toucher {
	return &toucher{driver: d, log: log, canPush: canPush, now: time.Now}
}

func (t *toucher) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		refs, err := t.refsFor(r)
		if err != nil {
			writeOCIError(w, http.StatusBadRequest, "MANIFEST_INVALID", err.Error())
			return
		}
		if len(refs) > 0 {
			if err := t.touch(r, refs); err != nil {
				t.log.Error("Record blob use for garbage collection", "err", err, "path", r.URL.Path)
				writeOCIError(w, http.StatusServiceUnavailable, "UNAVAILABLE", "storage is unavailable, retry")
				return
			}
		}
		if rt, ok := route.Of(r); ok && rt.Kind == route.BlobUploadChunk && r.Method == http.MethodPut && t.allowed(r, rt.Name) {
			// An upload commit of content the store already had (an old orphan blob)
			// leaves that blob's data old: mark it once it is linked, and make sure it is
			// still there, before the client is told the upload succeeded.
			w = &commitWriter{ResponseWriter: w, codes: []int{http.StatusCreated},
				failMessage: "the blob was removed by garbage collection while it was committed; upload it again",
				onSuccess:   func(h http.Header) error { return t.markCommitted(r, rt.Name, h.Get("Docker-Content-Digest")) }}
		}
		next.ServeHTTP(w, r)
	})
}

// MaxManifestReferences bounds the descriptors one pushed manifest may name (layers,
// config, subject, index entries). Real images have tens; the bound keeps one request from
// costing thousands of storage operations.
const MaxManifestReferences = 1000

// blobRef is a digest a request relies on, named in a repository.
type blobRef struct {
	repo string
	d    digest.Digest
}

// refsFor returns the digests a push request is about to rely on, each with the repository
// whose links name it: a blob existence check (HEAD of a blob, or of a manifest by digest, as
// containerd does for the children of an index), a cross-repository mount (named in the
// source repository), and a manifest push with what it references.
func (t *toucher) refsFor(r *http.Request) ([]blobRef, error) {
	rt, ok := route.Of(r)
	if !ok {
		return nil, nil
	}
	name := rt.Name
	var refs []blobRef
	add := func(repo, s string) {
		if d, err := digest.Parse(s); err == nil {
			refs = append(refs, blobRef{repo: repo, d: d})
		}
	}
	switch {
	case rt.Kind == route.Blob && r.Method == http.MethodHead:
		add(name, rt.Digest)
	case rt.Kind == route.Manifest && r.Method == http.MethodHead:
		add(name, rt.Reference) // only a digest parses; a tag HEAD relies on nothing yet
	case rt.Kind == route.BlobUpload && r.Method == http.MethodPost:
		q := r.URL.Query()
		if from := q.Get("from"); from != "" {
			add(from, q.Get("mount"))
		}
	case rt.Kind == route.Manifest && r.Method == http.MethodPut:
		if !t.allowed(r, name) {
			return nil, nil // distribution refuses it; nothing to read or bound
		}
		body, err := bufferBody(r, maxManifestBytes)
		if err != nil {
			return nil, fmt.Errorf("read manifest: %w", err)
		}
		if body == nil {
			return nil, nil // too large: distribution refuses it
		}
		mrefs := manifestReferences(body)
		if len(mrefs) > MaxManifestReferences {
			return nil, fmt.Errorf("the manifest names %d descriptors; at most %d are accepted", len(mrefs), MaxManifestReferences)
		}
		add(name, digest.FromBytes(body).String())
		for _, s := range mrefs {
			add(name, s)
		}
	default:
		return nil, nil
	}
	if len(refs) == 0 || !t.allowed(r, name) {
		return nil, nil
	}
	return refs, nil
}

func (t *toucher) allowed(r *http.Request, repo string) bool {
	return t.canPush == nil || t.canPush(r, repo)
}

// bufferBody reads a request body of at most limit bytes and puts it back for the next
// handler. It returns nil and no error when the body is larger (the next handler sees the
// whole body anyway). The referrers index, the markers and the sha512 names all look at a
// pushed manifest: the body is read once, and later calls get the same bytes.
func bufferBody(r *http.Request, limit int64) ([]byte, error) {
	if bb, ok := r.Body.(*bufferedBody); ok {
		bb.Reset(bb.data)
		return bb.data, nil
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(body)) > limit {
		r.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(body), r.Body), r.Body}
		return nil, nil
	}
	_ = r.Body.Close()
	r.Body = &bufferedBody{Reader: bytes.NewReader(body), data: body}
	return body, nil
}

// bufferedBody is a request body already read into memory.
type bufferedBody struct {
	*bytes.Reader
	data []byte
}

func (*bufferedBody) Close() error { return nil }

// manifestReferences lists the digests an image manifest or index refers to.
func manifestReferences(body []byte) []string {
	type desc struct {
		Digest string `json:"digest"`
	}
	var m struct {
		Config    *desc  `json:"config"`
		Layers    []desc `json:"layers"`
		Manifests []desc `json:"manifests"`
		Blobs     []desc `json:"blobs"`
		Subject   *desc  `json:"subject"`
	}
	if json.Unmarshal(body, &m) != nil {
		return nil
	}
	var out []string
	if m.Config != nil {
		out = append(out, m.Config.Digest)
	}
	if m.Subject != nil {
		out = append(out, m.Subject.Digest)
	}
	for _, l := range [][]desc{m.Layers, m.Manifests, m.Blobs} {
		for _, d := range l {
			out = append(out, d.Digest)
		}
	}
	return out
}

// touch writes the markers of the digests a request relies on that name content linked in
// their repository: a digest the repository does not link needs no protection (the client
// will get a 404 or upload it; a fresh blob is inside the grace period), so neither a
// manifest naming absent blobs nor an existence check in another repository writes
// anything. A sha512 name is resolved through its link to the sha256 content it names.
func (t *toucher) touch(r *http.Request, refs []blobRef) error {
	now := t.now()
	stamp := []byte(now.UTC().Format(time.RFC3339Nano))
	seen := map[digest.Digest]bool{}
	for _, ref := range refs {
		c, err := t.linked(r, ref.repo, ref.d)
		if err != nil {
			return err
		}
		if c == "" || seen[c] {
			continue
		}
		seen[c] = true
		if err := t.write(r, c, now, stamp); err != nil {
			return fmt.Errorf("write marker for %s: %w", c, err)
		}
	}
	return nil
}

// markCommitted marks the content an upload commit linked as d in repo and checks that its
// data still exists.
func (t *toucher) markCommitted(r *http.Request, repo, d string) error {
	dg := digest.Digest(d)
	if dg.Validate() != nil {
		t.log.Warn("Upload commit answered without a valid digest; nothing to mark", "repository", repo)
		return nil //nolint:nilerr // nothing to mark is not a failure of the commit
	}
	c, err := t.linked(r, repo, dg)
	if err != nil || c == "" {
		return err
	}
	now := t.now()
	if err := t.write(r, c, now, []byte(now.UTC().Format(time.RFC3339Nano))); err != nil {
		return err
	}
	if exists, err := t.blobExists(r, c); err != nil || !exists {
		return fmt.Errorf("blob %s missing after commit: %w", c, err)
	}
	return nil
}

// linked returns the sha256 digest of the content repository repo links as d (a layer or a
// manifest revision), or "" when repo does not link d.
func (t *toucher) linked(r *http.Request, repo string, d digest.Digest) (digest.Digest, error) {
	for _, p := range []string{layout.LayerLinkPath(repo, d), layout.RevisionLinkPath(repo, d)} {
		b, err := t.read(r, p)
		if err != nil {
			var nf storagedriver.PathNotFoundError
			if errors.As(err, &nf) || errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return "", fmt.Errorf("read link of %s: %w", d, err)
		}
		if c, err := digest.Parse(string(b)); err == nil && c.Algorithm() == digest.Canonical {
			return c, nil
		}
	}
	return "", nil
}

func (t *toucher) read(r *http.Request, p string) ([]byte, error) {
	if t.fsRoot != "" {
		return os.ReadFile(filepath.Join(t.fsRoot, filepath.FromSlash(p)))
	}
	return t.driver.GetContent(r.Context(), p)
}

func (t *toucher) blobExists(r *http.Request, d digest.Digest) (bool, error) {
	if t.fsRoot != "" {
		_, err := os.Stat(filepath.Join(t.fsRoot, filepath.FromSlash(layout.BlobDataPath(d))))
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
		return err == nil, err
	}
	_, err := t.driver.Stat(r.Context(), layout.BlobDataPath(d))
	var nf storagedriver.PathNotFoundError
	if errors.As(err, &nf) {
		return false, nil
	}
	return err == nil, err
}

func writeOCIError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"errors": []map[string]string{{"code": code, "message": msg}}})
}

func (t *toucher) write(r *http.Request, d digest.Digest, now time.Time, stamp []byte) error {
	if t.fsRoot == "" {
		return t.driver.PutContent(r.Context(), layout.TouchPath(d), stamp)
	}
	p := filepath.Join(t.fsRoot, filepath.FromSlash(layout.TouchPath(d)))
	err := os.Chtimes(p, now, now)
	if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return os.WriteFile(p, stamp, 0o644)
}
