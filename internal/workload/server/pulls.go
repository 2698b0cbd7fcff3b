package server

import (
	"cmp"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/opencontainers/go-digest"

	"github.com/dockyard-dev/dockyard/internal/scan"
	"github.com/dockyard-dev/dockyard/internal/workload/access"
	"github.com/dockyard-dev/dockyard/internal/workload/inventory"
	"github.com/dockyard-dev/dockyard/internal/workload/layout"
	"github.com/dockyard-dev/dockyard/internal/workload/route"
)

// Bounds of pull recording.
const (
	// pullRecordEvery: a digest's marker is rewritten at most this often per replica, so
	// a busy image costs one small write an hour, not one per pull.
	pullRecordEvery = time.Hour
	// pullRecordMax bounds the digests remembered; past it the memory starts over (a few
	// extra writes, never unbounded memory).
	pullRecordMax = 100000
	// pullWriters bounds concurrent marker writes; when all are busy a pull is not recorded
	// now (the next pull of that digest records it).
	pullWriters = 4
)

// pullRecorder records when each manifest was last pulled (a successful GET or HEAD of a
// manifest, by tag or digest, or a 304) as a marker under layout.PulledRoot, for retention's pulledWithin.
// Writes happen after the response, off the request path, and failures only cost the
// record, never the pull.
type pullRecorder struct {
	driver storagedriver.StorageDriver
	log    *slog.Logger
	now    func() time.Time

	mu     sync.Mutex
	last   map[string]time.Time
	closed bool
	sem    chan struct{}
	wg     sync.WaitGroup
}

func newPullRecorder(d storagedriver.StorageDriver, log *slog.Logger) *pullRecorder {
	return &pullRecorder{driver: d, log: log, now: time.Now, last: map[string]time.Time{}, sem: make(chan struct{}, pullWriters)}
}

// pullWriter remembers the status and the digest header of a manifest GET.
type pullWriter struct {
	http.ResponseWriter
	status int
}

func (w *pullWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *pullWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *pullWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (p *pullRecorder) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rt, ok := route.Of(r)
		// A scanner reading an image (dockyard's, or Trivy) does not use it: counting it would
		// keep every image "recently pulled" for retention's pulledWithin.
		if !ok || rt.Kind != route.Manifest || (r.Method != http.MethodGet && r.Method != http.MethodHead) || scan.IsScannerAgent(r.UserAgent()) {
			next.ServeHTTP(w, r)
			return
		}
		pw := &pullWriter{ResponseWriter: w}
		next.ServeHTTP(pw, r)
		// A HEAD (containerd resolving a tag it already has the content of) and a 304 are
		// pulls served from the client's cache: the image is in use all the same.
		if pw.status != http.StatusOK && pw.status != http.StatusNotModified {
			return
		}
		d, err := digest.Parse(pw.Header().Get("Docker-Content-Digest"))
		if err != nil {
			return
		}
		p.record(rt.Name, d)
	})
}

// record writes the marker of d in repo unless it was written within pullRecordEvery.
func (p *pullRecorder) record(repo string, d digest.Digest) {
	key := repo + "@" + d.String()
	now := p.now()
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	if t, ok := p.last[key]; ok && now.Sub(t) < pullRecordEvery {
		p.mu.Unlock()
		return
	}
	select {
	case p.sem <- struct{}{}:
	default:
		p.mu.Unlock()
		return // busy: the next pull records it
	}
	if len(p.last) >= pullRecordMax {
		clear(p.last)
	}
	p.last[key] = now
	p.wg.Add(1) // under mu: stop cannot slip between the check and the Add
	p.mu.Unlock()
	go func() {
		defer p.wg.Done()
		defer func() { <-p.sem }()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := p.driver.PutContent(ctx, layout.PulledPath(repo, d), []byte(now.UTC().Format(time.RFC3339)+"\n")); err != nil {
			p.log.Warn("Record a pull", "repository", repo, "digest", d, "err", err)
			p.mu.Lock()
			delete(p.last, key) // try again on the next pull
			p.mu.Unlock()
		}
	}()
}

// stop refuses new records and waits for the writes in flight (shutdown).
func (p *pullRecorder) stop() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.wg.Wait()
}

// pullsAPI serves the pull record of a repository (GET /v2/<name>/_dockyard/pulls, see
// scan.PullsSuffix) from its markers, to who may push to it: the scanner rescans what was
// pulled lately when its database changes.
type pullsAPI struct {
	driver storagedriver.StorageDriver
	users  *access.Controller // nil without auth
	log    *slog.Logger
}

func (a *pullsAPI) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rt, ok := route.Of(r)
		if !ok || rt.Kind != route.Pulls {
			next.ServeHTTP(w, r)
			return
		}
		if r.Method != http.MethodGet {
			w.Header().Set("Allow", "GET")
			writeOCIError(w, http.StatusMethodNotAllowed, "UNSUPPORTED", "the pull record supports GET only")
			return
		}
		if a.users != nil && !a.users.Authorize(w, r, rt.Name, access.ActionPush) {
			return
		}
		var since time.Time
		if v := r.URL.Query().Get("since"); v != "" {
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				writeOCIError(w, http.StatusBadRequest, "UNSUPPORTED", "since must be an RFC 3339 time, e.g. 2026-01-02T15:04:05Z")
				return
			}
			since = t
		}
		times, err := inventory.PullTimes(r.Context(), a.driver, rt.Name)
		if err != nil {
			a.log.Error("Read pull markers", "repository", rt.Name, "err", err)
			writeOCIError(w, http.StatusServiceUnavailable, "UNAVAILABLE", "storage is unavailable, retry")
			return
		}
		list := scan.PullList{Pulls: []scan.Pull{}}
		for d, t := range times {
			if !t.Before(since) {
				list.Pulls = append(list.Pulls, scan.Pull{Digest: d.String(), Pulled: t.UTC()})
			}
		}
		slices.SortFunc(list.Pulls, func(x, y scan.Pull) int {
			return cmp.Or(y.Pulled.Compare(x.Pulled), strings.Compare(x.Digest, y.Digest))
		})
		if len(list.Pulls) > scan.MaxPullsListed {
			list.Pulls, list.Truncated = list.Pulls[:scan.MaxPullsListed], true
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_ = json.NewEncoder(w).Encode(list)
	})
}
