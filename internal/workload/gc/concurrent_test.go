package gc_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/dockyard-dev/dockyard/internal/workload/gc"
)

// TestGCDuringConcurrentPushes is the scenario that breaks distribution's own
// garbage-collect: images (3 x 512 KiB layers) pushed 4 at a time while GC loops on the
// same storage; every other image is deleted right after its push and its blobs aged past
// the grace period, and the next image reuses those layers (so the client skips their
// upload because the registry still has them). No push may fail, every surviving tag must
// pull with every layer verified, and GC must still reclaim the aged garbage.
func TestGCDuringConcurrentPushes(t *testing.T) {
	sc := runScenario(t, collectErr)
	for _, f := range sc.failures {
		t.Errorf("push failure: %s", f)
	}
	for _, b := range sc.broken {
		t.Errorf("broken image: %s", b)
	}
	if sc.gcRuns < 3 {
		t.Errorf("GC ran only %d times during the pushes; the test did not exercise concurrency", sc.gcRuns)
	}
	sc.checkReclaim(t)
}

// TestUpstreamGarbageCollectUnderPushes runs the same scenario with distribution's own
// garbage-collect (opt-in: DOCKYARD_GC_TEST_UPSTREAM=1) to show what Dockyard's collector
// prevents. It expects breakage and reports the counts.
func TestUpstreamGarbageCollectUnderPushes(t *testing.T) {
	if os.Getenv("DOCKYARD_GC_TEST_UPSTREAM") == "" {
		t.Skip("set DOCKYARD_GC_TEST_UPSTREAM=1 to measure distribution's garbage-collect in this scenario")
	}
	sc := runScenario(t, upstreamCollect)
	t.Logf("distribution garbage-collect (%d runs, %d failed): %d of %d pushes failed, %d of %d kept images broken",
		sc.gcRuns, upstreamErrors.Load(), len(sc.failures), sc.images, len(sc.broken), sc.kept)
	for _, f := range sc.failures[:min(5, len(sc.failures))] {
		t.Logf("e.g. %s", f)
	}
	if len(sc.failures)+len(sc.broken) == 0 {
		t.Error("upstream garbage-collect broke nothing; the scenario no longer shows the race")
	}
}

// scenarioRepos spread the pushes over repositories whose names contain the API's route
// words: a manifest PUT to `a/blobs/b` must be recognised as one (and protect its layers).
var scenarioRepos = []string{"proj/app", "a/blobs/b", "x/manifests/y", "t/tags/list/u", "up/blobs/uploads/v"}

type scenario struct {
	root     string
	grace    time.Duration
	opts     []remote.Option
	failures []string
	broken   []string
	kept     int
	images   int
	gcRuns   int64
	gcBlobs  int64
	victims  []victim
}

type victim struct {
	repo   string
	layers []v1.Layer
	config v1.Hash
	img    v1.Image
}

type collectFunc func(ctx context.Context, root string, grace time.Duration) (gc.Result, error)

func runScenario(t *testing.T, collectFn collectFunc) *scenario {
	images := 150
	if s := os.Getenv("DOCKYARD_GC_TEST_IMAGES"); s != "" {
		images, _ = strconv.Atoi(s)
	}
	const (
		workers   = 4
		layerSize = 512 << 10
		grace     = 3 * time.Second
		aged      = time.Hour
	)
	root := t.TempDir()
	host := startServe(t, root, grace)
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	t.Cleanup(cancel)
	opts := []remote.Option{remote.WithContext(ctx)}

	// GC loops until the pushes are done.
	var gcRuns, gcBlobs, gcManifests atomic.Int64
	gcErr := make(chan error, 1)
	pushesDone := make(chan struct{})
	go func() {
		defer close(gcErr)
		for {
			select {
			case <-pushesDone:
				return
			default:
			}
			res, err := collectFn(ctx, root, grace)
			if err != nil {
				gcErr <- err
				return
			}
			gcRuns.Add(1)
			gcBlobs.Add(res.BlobsDeleted)
			gcManifests.Add(res.ManifestsDeleted)
			time.Sleep(20 * time.Millisecond)
		}
	}()

	handoff := make([]chan victim, images)
	for i := range handoff {
		handoff[i] = make(chan victim, 1)
	}
	var (
		mu       sync.Mutex
		failures []string
		kept     = map[string]v1.Hash{} // tag reference -> manifest digest
		victims  []victim
	)
	fail := func(format string, args ...any) {
		mu.Lock()
		failures = append(failures, fmt.Sprintf(format, args...))
		mu.Unlock()
	}
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range jobs {
				repo := host + "/" + scenarioRepos[(k/2)%len(scenarioRepos)]
				ref, _ := name.NewTag(fmt.Sprintf("%s:img%d", repo, k))
				if k%2 == 0 || k == images-1 {
					// A victim: push, delete, age its blobs, hand its layers on.
					next := handoff[min(k+1, images-1)]
					if k+1 == images {
						next = make(chan victim, 1)
					}
					ok := false
					func() {
						defer func() {
							if !ok {
								close(next) // let the reuser give up at once
							}
						}()
						img, err := random.Image(layerSize, 3)
						if err != nil {
							fail("random image: %v", err)
							return
						}
						if err := remote.Write(ref, img, opts...); err != nil {
							fail("push victim %d: %v", k, err)
							return
						}
						d, _ := img.Digest()
						if err := remote.Delete(ref.Context().Digest(d.String()), opts...); err != nil {
							fail("delete victim %d: %v", k, err)
							return
						}
						layers, _ := img.Layers()
						cfg, _ := img.ConfigName()
						v := victim{repo: repo, layers: layers, config: cfg, img: img}
						for _, h := range append(digests(layers), cfg, d) {
							if err := backdateDigest(root, ref.Context().RepositoryStr(), h, aged); err != nil {
								fail("%v", err)
							}
						}
						mu.Lock()
						victims = append(victims, v)
						mu.Unlock()
						next <- v
						ok = true
					}()
					continue
				}
				// A reuser: a new image made of the victim's (deleted, aged) layers.
				var v victim
				select {
				case got, ok := <-handoff[k]:
					if !ok {
						fail("image %d: its victim failed", k)
						continue
					}
					v = got
				case <-ctx.Done():
					fail("image %d: no victim layers before the deadline", k)
					continue
				}
				img, err := mutate.AppendLayers(empty.Image, v.layers...)
				if err == nil {
					img, err = mutate.Config(img, v1.Config{Labels: map[string]string{"image": strconv.Itoa(k)}})
				}
				if err != nil {
					fail("build image %d: %v", k, err)
					continue
				}
				if err := remote.Write(ref, img, opts...); err != nil {
					fail("push reuser %d: %v", k, err)
					continue
				}
				d, _ := img.Digest()
				mu.Lock()
				kept[ref.String()] = d
				mu.Unlock()
			}
		}()
	}
	for k := range images {
		jobs <- k
	}
	close(jobs)
	wg.Wait()
	close(pushesDone)
	if err := <-gcErr; err != nil {
		t.Fatalf("gc loop: %v", err)
	}
	t.Logf("%d images pushed (%d kept) while GC ran %d times, deleting %d blobs and %d manifests; %d pushes failed",
		images, len(kept), gcRuns.Load(), gcBlobs.Load(), gcManifests.Load(), len(failures))
	sc := &scenario{images: images, root: root, grace: grace, opts: opts, failures: failures, kept: len(kept),
		gcRuns: gcRuns.Load(), gcBlobs: gcBlobs.Load(), victims: victims}

	// Every kept tag pulls and verifies.
	for ref, want := range kept {
		tag, _ := name.NewTag(ref)
		img, err := remote.Image(tag, opts...)
		if err == nil {
			var got v1.Hash
			if got, err = img.Digest(); err == nil && got != want {
				err = fmt.Errorf("digest %s, want %s", got, want)
			}
		}
		if err == nil {
			err = verifyImage(img)
		}
		if err != nil {
			sc.broken = append(sc.broken, fmt.Sprintf("%s: %v", ref, err))
		}
	}
	t.Logf("broken images: %d of %d", len(sc.broken), len(kept))
	return sc
}

// checkReclaim: once the pushes' markers age out, GC reclaims the victims' configs (their
// layers live on in the reusers) and a victim's deleted blobs can be pushed again.
func (sc *scenario) checkReclaim(t *testing.T) {
	root, grace, opts, victims := sc.root, sc.grace, sc.opts, sc.victims

	time.Sleep(grace + 100*time.Millisecond)
	final := collect(t, root, grace, true)
	reclaimed := 0
	for _, v := range victims {
		if !blobExists(root, v.config) {
			reclaimed++
		}
	}
	t.Logf("final GC: %+v; %d of %d victim configs reclaimed overall", final, reclaimed, len(victims))
	if reclaimed != len(victims) {
		t.Errorf("only %d of %d aged, unreferenced victim configs were reclaimed", reclaimed, len(victims))
	}
	if sc.gcBlobs+final.BlobsDeleted == 0 {
		t.Error("GC reclaimed nothing")
	}
	if len(victims) > 0 {
		v := victims[0]
		tag, _ := name.NewTag(v.repo + ":again")
		if err := remote.Write(tag, v.img, opts...); err != nil {
			t.Fatalf("re-push of a collected image: %v", err)
		}
		img, err := remote.Image(tag, opts...)
		if err != nil {
			t.Fatal(err)
		}
		if err := verifyImage(img); err != nil {
			t.Errorf("re-pushed image broken: %v", err)
		}
	}
}

func digests(layers []v1.Layer) []v1.Hash {
	var out []v1.Hash
	for _, l := range layers {
		d, _ := l.Digest()
		out = append(out, d)
	}
	return out
}
