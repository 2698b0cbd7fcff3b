package server_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/dockyard-dev/dockyard/internal/registryconfig"
)

// The registry tells the operator about every push and delete it acknowledged, with the
// digest, and about nothing it refused.
func TestRegistryPublishesPushesAndDeletes(t *testing.T) {
	var mu sync.Mutex
	var got []registryconfig.Event
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b registryconfig.EventBatch
		if r.Header.Get("Authorization") != "Bearer sa-token" || json.NewDecoder(r.Body).Decode(&b) != nil || b.Registry != "ns/main" {
			http.Error(w, "no", http.StatusBadRequest)
			return
		}
		mu.Lock()
		got = append(got, b.Events...)
		mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	}))
	defer recv.Close()
	tok := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tok, []byte("sa-token"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, auth := authFixture(t, testUsers)
	reg := startRegistry(t, auth, func(c *registryconfig.Config) {
		c.Events = &registryconfig.Events{URL: recv.URL, TokenFile: tok, Registry: "ns/main"}
	})
	img, _ := random.Image(1<<10, 1)
	d, _ := img.Digest()
	if err := remote.Write(mustTag(t, reg.host+"/team-a/app:v1"), img, reg.opts("alice", "alice-pw")...); err != nil {
		t.Fatal(err)
	}
	// Refused: bob may not push.
	_ = remote.Write(mustTag(t, reg.host+"/team-a/app:v2"), img, reg.opts("bob", "bob-pw")...)
	if err := remote.Delete(mustTag(t, reg.host+"/team-a/app").Context().Digest(d.String()), reg.opts("alice", "alice-pw")...); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n >= 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // anything more would show now
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 2 {
		t.Fatalf("events: %+v", got)
	}
	push, del := got[0], got[1]
	if push.Action != registryconfig.EventPush || push.Repository != "team-a/app" || push.Tag != "v1" || push.Digest != d.String() {
		t.Errorf("push event %+v", push)
	}
	if del.Action != registryconfig.EventDelete || del.Digest != d.String() || del.Tag != "" {
		t.Errorf("delete event %+v", del)
	}
}
