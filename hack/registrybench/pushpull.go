package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// PushPull is the result file of one pushpull run.
type PushPull struct {
	Label       string `json:"label"`
	Images      int    `json:"images"`
	Concurrency int    `json:"concurrency"`
	PullRounds  int    `json:"pullRounds"`
	Push        Phase  `json:"push"`
	Pull        Phase  `json:"pull"`
}

// seededRand returns a deterministic generator for seed.
func seededRand(seed uint64) *rand.ChaCha8 {
	var s [32]byte
	binary.LittleEndian.PutUint64(s[:], seed)
	return rand.NewChaCha8(s)
}

// makeImage builds an OCI image whose layers are the given sizes of seeded random bytes.
func makeImage(rng *rand.ChaCha8, sizes []int) (v1.Image, error) {
	layers := make([]v1.Layer, len(sizes))
	for i, n := range sizes {
		b := make([]byte, n)
		_, _ = rng.Read(b)
		layers[i] = static.NewLayer(b, types.OCILayer)
	}
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		return nil, err
	}
	img = mutate.MediaType(img, types.OCIManifestSchema1)
	return mutate.ConfigMediaType(img, types.OCIConfigJSON), nil
}

// imageBytes is what moving img over the wire costs: manifest, config and layers.
func imageBytes(img v1.Image) (int64, error) { return walkImage(img, v1.Layer.Size) }

// walkImage returns the bytes of img's manifest and config plus what layerBytes returns
// for each layer.
func walkImage(img v1.Image, layerBytes func(v1.Layer) (int64, error)) (int64, error) {
	m, err := img.RawManifest()
	if err != nil {
		return 0, err
	}
	c, err := img.RawConfigFile()
	if err != nil {
		return 0, err
	}
	total := int64(len(m) + len(c))
	layers, err := img.Layers()
	if err != nil {
		return 0, err
	}
	for _, l := range layers {
		n, err := layerBytes(l)
		if err != nil {
			return 0, err
		}
		total += n
	}
	return total, nil
}

// forEach runs fn(i) for i in [0,n) on conc goroutines, starting nothing new after the
// deadline; it returns how many ran and the first error.
func forEach(n, conc int, deadline time.Time, fn func(i int) error) (int, error) {
	var next, done atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	for range conc {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || time.Now().After(deadline) {
					return
				}
				if err := fn(i); err != nil {
					once.Do(func() { firstErr = err })
					return
				}
				done.Add(1)
			}
		})
	}
	wg.Wait()
	return int(done.Load()), firstErr
}

func runPushPull(args []string) error {
	fs := flag.NewFlagSet("pushpull", flag.ContinueOnError)
	var t target
	t.flags(fs)
	label := fs.String("label", "registry", "name in the report")
	out := fs.String("out", "", "write the JSON result here (also printed)")
	images := fs.Int("images", 16, "number of images (3 layers of 1–4 MiB each)")
	seed := fs.Uint64("seed", 1, "seed of the image contents and sizes")
	conc := fs.Int("concurrency", 4, "images pushed or pulled at once")
	jobs := fs.Int("jobs", 1, "blobs of one image transferred at once (go-containerregistry WithJobs)")
	rounds := fs.Int("pull-rounds", 3, "times every image is pulled")
	maxDur := fs.Duration("max-duration", 90*time.Second, "per phase: start no new image after this")
	repo := fs.String("repo", "bench/pushpull", "repository prefix")
	if err := fs.Parse(args); err != nil {
		return err
	}
	base, err := t.transport()
	if err != nil {
		return err
	}
	defer base.CloseIdleConnections()

	rng := seededRand(*seed)
	imgs := make([]v1.Image, *images)
	sizes := make([]int64, *images)
	for i := range imgs {
		ls := make([]int, 3)
		for j := range ls {
			ls[j] = 1<<20 + int(rng.Uint64()%(3<<20+1)) // 1–4 MiB
		}
		if imgs[i], err = makeImage(rng, ls); err != nil {
			return err
		}
		if sizes[i], err = imageBytes(imgs[i]); err != nil {
			return err
		}
	}
	tags := make([]name.Tag, *images)
	for i := range tags {
		if tags[i], err = name.NewTag(fmt.Sprintf("%s/%s%d:img%d", t.endpoint, *repo, i%4, i), name.StrictValidation); err != nil {
			return err
		}
	}
	ctx := context.Background()
	res := PushPull{Label: *label, Images: *images, Concurrency: *conc, PullRounds: *rounds}

	// Push: every image once.
	pushRec := newRecorder(base)
	pusher, err := remote.NewPusher(remote.WithTransport(pushRec), remote.WithAuth(t.auth()),
		remote.WithJobs(*jobs), remote.WithContext(ctx))
	if err != nil {
		return err
	}
	var pushed atomic.Int64
	start := time.Now()
	n, err := forEach(*images, *conc, start.Add(*maxDur), func(i int) error {
		if err := remote.Write(tags[i], imgs[i], remote.Reuse(pusher)); err != nil {
			return fmt.Errorf("push %s: %w", tags[i], err)
		}
		pushed.Add(sizes[i])
		return nil
	})
	res.Push = pushRec.phase(n, pushed.Load(), time.Since(start))
	if err != nil {
		return err
	}

	// Pull: every pushed image, pull-rounds times; the layers' digests are verified as
	// they are read.
	pullRec := newRecorder(base)
	puller, err := remote.NewPuller(remote.WithTransport(pullRec), remote.WithAuth(t.auth()),
		remote.WithJobs(*jobs), remote.WithContext(ctx))
	if err != nil {
		return err
	}
	var pulled atomic.Int64
	start = time.Now()
	n, err = forEach(n**rounds, *conc, start.Add(*maxDur), func(k int) error {
		i := k % *images
		b, err := pullImage(tags[i], puller)
		if err != nil {
			return fmt.Errorf("pull %s: %w", tags[i], err)
		}
		pulled.Add(b)
		return nil
	})
	res.Pull = pullRec.phase(n, pulled.Load(), time.Since(start))
	if err != nil {
		return err
	}
	return writeJSON(*out, res)
}

// pullImage fetches the manifest, the config and every layer of ref and returns the
// bytes read.
func pullImage(ref name.Reference, puller *remote.Puller) (int64, error) {
	img, err := remote.Image(ref, remote.Reuse(puller))
	if err != nil {
		return 0, err
	}
	return walkImage(img, func(l v1.Layer) (int64, error) {
		rc, err := l.Compressed()
		if err != nil {
			return 0, err
		}
		defer rc.Close()
		return io.Copy(io.Discard, rc) // go-containerregistry verifies the digest at EOF
	})
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if path != "" {
		if err := os.WriteFile(path, b, 0o644); err != nil {
			return err
		}
	}
	_, err = os.Stdout.Write(b)
	return err
}
