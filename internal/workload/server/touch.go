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
		digests, err := t.digestsFor(r)
		if err != nil {
			writeOCIError(w, http.StatusBadRequest, "MANIFEST_INVALID", err.Error())
			return
		}
		if len(digests) > 0 {
			if err := t.touch(r, digests); err != nil {
				t.log.Error("Record blob use for garbage collection", "err", err, "path", r.URL.Path)
				writeOCIError(w, http.StatusServiceUnavailable, "UNAVAILABLE", "storage is unavailable, retry")
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// digestsFor returns the digests a push request is about to rely on.
func (t *toucher) digestsFor(r *http.Request) ([]digest.Digest, error) {
	rt, ok := route.Of(r)
	if !ok {
		return nil, nil
	}
	name := rt.Name
	var raw []string
	switch {
	case rt.Kind == route.Blob && r.Method == http.MethodHead:
		raw = []string{rt.Digest}
	case (rt.Kind == route.BlobUpload || rt.Kind == route.BlobUploadChunk) && (r.Method == http.MethodPost || r.Method == http.MethodPut):
		q := r.URL.Query()
		raw = []string{q.Get("mount"), q.Get("digest")}
	case rt.Kind == route.Manifest && r.Method == http.MethodPut:
		body, err := bufferBody(r, maxManifestBytes)
		if err != nil {
			return nil, fmt.Errorf("read manifest: %w", err)
		}
		if body == nil {
			return nil, nil // too large: distribution refuses it
		}
		raw = append(raw, digest.FromBytes(body).String())
		raw = append(raw, manifestReferences(body)...)
	default:
		return nil, nil
	}
	if t.canPush != nil && !t.canPush(r, name) {
		return nil, nil
	}
	var out []digest.Digest
	for _, s := range raw {
		if d, err := digest.Parse(s); err == nil {
			out = append(out, d)
		}
	}
	return out, nil
}

// bufferBody reads a request body of at most limit bytes and puts it back for the next
// handler. It returns nil and no error when the body is larger (the next handler sees the
// whole body anyway).
func bufferBody(r *http.Request, limit int64) ([]byte, error) {
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
	r.Body = io.NopCloser(bytes.NewReader(body))
	return body, nil
}

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

func (t *toucher) touch(r *http.Request, digests []digest.Digest) error {
	now := t.now()
	stamp := []byte(now.UTC().Format(time.RFC3339Nano))
	seen := map[digest.Digest]bool{}
	for _, d := range digests {
		if seen[d] {
			continue
		}
		seen[d] = true
		if err := t.write(r, d, now, stamp); err != nil {
			return fmt.Errorf("write marker for %s: %w", d, err)
		}
	}
	return nil
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
