package events

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dockyard-dev/dockyard/internal/registryconfig"
)

// receiver is an operator stand-in that records batches and can refuse them.
type receiver struct {
	mu      sync.Mutex
	batches []registryconfig.EventBatch
	auth    []string
	refuse  atomic.Bool
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if rc.refuse.Load() {
		http.Error(w, "not now", http.StatusServiceUnavailable)
		return
	}
	var b registryconfig.EventBatch
	if err := json.NewDecoder(r.Body).Decode(&b); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rc.mu.Lock()
	rc.batches = append(rc.batches, b)
	rc.auth = append(rc.auth, r.Header.Get("Authorization"))
	rc.mu.Unlock()
	w.WriteHeader(http.StatusAccepted)
}

func (rc *receiver) events() (n int, lost bool) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for _, b := range rc.batches {
		n += len(b.Events)
		lost = lost || b.Lost
	}
	return n, lost
}

func newNotifier(t *testing.T, url string) *Notifier {
	t.Helper()
	tok := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tok, []byte("the-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return New(registryconfig.Events{URL: url, TokenFile: tok, Registry: "ns/r"}, nil, slog.New(slog.DiscardHandler))
}

func waitFor(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestNotifierDeliversInOrderAndRetries(t *testing.T) {
	rc := &receiver{}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	n := newNotifier(t, srv.URL)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); n.Run(ctx) }()

	n.Publish(registryconfig.Event{Action: registryconfig.EventPush, Repository: "a", Tag: "v1"})
	waitFor(t, "the first event", func() bool { k, _ := rc.events(); return k == 1 })
	rc.mu.Lock()
	if rc.auth[0] != "Bearer the-token" || rc.batches[0].Registry != "ns/r" || rc.batches[0].Events[0].Time.IsZero() {
		t.Errorf("batch %+v with %q", rc.batches[0], rc.auth[0])
	}
	rc.mu.Unlock()

	// The operator refuses for a while: nothing is lost, order is kept.
	rc.refuse.Store(true)
	for i := range 300 {
		n.Publish(registryconfig.Event{Action: registryconfig.EventPush, Repository: "b", Tag: string(rune('a' + i%26))})
	}
	time.Sleep(700 * time.Millisecond)
	rc.refuse.Store(false)
	waitFor(t, "the queued events", func() bool { k, _ := rc.events(); return k == 301 })
	if _, lost := rc.events(); lost {
		t.Error("a batch says events were lost")
	}
	rc.mu.Lock()
	for _, b := range rc.batches {
		if len(b.Events) > registryconfig.MaxEventBatch {
			t.Errorf("a batch of %d events", len(b.Events))
		}
	}
	rc.mu.Unlock()
	cancel()
	<-done
}

func TestNotifierOverflowSaysEventsWereLost(t *testing.T) {
	rc := &receiver{}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	n := newNotifier(t, srv.URL)
	for range QueueSize + 10 {
		n.Publish(registryconfig.Event{Action: registryconfig.EventPush, Repository: "a"})
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); n.Run(ctx) }()
	n.Publish(registryconfig.Event{Action: registryconfig.EventPush, Repository: "last"})
	waitFor(t, "the queue", func() bool { k, _ := rc.events(); return k == QueueSize })
	if _, lost := rc.events(); !lost {
		t.Error("no batch says events were lost")
	}
	rc.mu.Lock()
	for i, b := range rc.batches {
		if b.Lost != (i == 0) {
			t.Errorf("batch %d: lost %v; only the first batch after the overflow says so", i, b.Lost)
		}
	}
	rc.mu.Unlock()
	cancel()
	<-done
}

func TestNotifierFlushesOnShutdown(t *testing.T) {
	rc := &receiver{}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	n := newNotifier(t, srv.URL)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); n.Run(ctx) }()
	n.Publish(registryconfig.Event{Action: registryconfig.EventDelete, Repository: "a", Tag: "v1"})
	cancel()
	<-done
	if k, _ := rc.events(); k != 1 {
		t.Errorf("%d events delivered at shutdown, want 1", k)
	}
	n.Publish(registryconfig.Event{Action: registryconfig.EventPush, Repository: "after"})
	if len(n.queue) != 0 {
		t.Error("a closed notifier queued an event")
	}
}
