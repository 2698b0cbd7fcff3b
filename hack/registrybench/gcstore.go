package main

import (
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

func runGCStore(args []string) error {
	flags := flag.NewFlagSet("gcstore", flag.ContinueOnError)
	var t target
	t.flags(flags)
	images := flags.Int("images", 1700, "images to push (each: 4 layers + config + manifest = 6 blobs)")
	layerSize := flags.Int("layer-size", 1024, "bytes per layer")
	repos := flags.Int("repos", 50, "repositories the images are spread over")
	seed := flags.Uint64("seed", 2, "seed of the image contents")
	conc := flags.Int("concurrency", 8, "images pushed at once")
	maxDur := flags.Duration("max-duration", 4*time.Minute, "start no new push after this")
	if err := flags.Parse(args); err != nil {
		return err
	}
	base, err := t.transport()
	if err != nil {
		return err
	}
	defer base.CloseIdleConnections()
	pusher, err := remote.NewPusher(remote.WithTransport(base), remote.WithAuth(t.auth()), remote.WithJobs(1))
	if err != nil {
		return err
	}
	tagOf := func(i int) (name.Tag, error) {
		return name.NewTag(fmt.Sprintf("%s/gc/r%03d:i%d", t.endpoint, i%*repos, i), name.StrictValidation)
	}
	digests := make([]v1.Hash, *images)
	start := time.Now()
	pushed, err := forEach(*images, *conc, start.Add(*maxDur), func(i int) error {
		img, err := makeImage(seededRand(*seed<<32|uint64(i)), []int{*layerSize, *layerSize, *layerSize, *layerSize})
		if err != nil {
			return err
		}
		tag, err := tagOf(i)
		if err != nil {
			return err
		}
		if digests[i], err = img.Digest(); err != nil {
			return err
		}
		return remote.Write(tag, img, remote.Reuse(pusher))
	})
	if err != nil {
		return err
	}
	if pushed < *images {
		return fmt.Errorf("pushed only %d of %d images in %s", pushed, *images, *maxDur)
	}
	pushTime := time.Since(start)
	// Every second image becomes garbage: i%4 == 1 by deleting its manifest by digest (which
	// also drops its tag), i%4 == 3 by deleting only its tag (an untagged manifest, which
	// both collectors remove with delete-untagged).
	start = time.Now()
	deleted, err := forEach(*images/2, *conc, start.Add(*maxDur), func(k int) error {
		i := 2*k + 1
		tag, err := tagOf(i)
		if err != nil {
			return err
		}
		var ref name.Reference = tag
		if i%4 == 1 {
			ref = tag.Context().Digest(digests[i].String())
		}
		if err := remote.Delete(ref, remote.Reuse(pusher)); err != nil {
			return fmt.Errorf("delete %s: %w", ref, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	fmt.Printf("gcstore: pushed %d images (%d blobs) in %s, deleted %d (half by digest, half by tag) in %s\n",
		pushed, pushed*6, pushTime.Round(time.Millisecond), deleted, time.Since(start).Round(time.Millisecond))
	return nil
}

func runBackdate(args []string) error {
	set := flag.NewFlagSet("backdate", flag.ContinueOnError)
	dir := set.String("dir", "", "directory (required)")
	age := set.Duration("age", 2*time.Hour, "how old everything becomes")
	if err := set.Parse(args); err != nil {
		return err
	}
	if *dir == "" {
		return errors.New("backdate: -dir is required")
	}
	t := time.Now().Add(-*age)
	return filepath.WalkDir(*dir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Chtimes(p, t, t)
	})
}

// GC is one collector's run, written by hack/bench-registry.sh.
type GC struct {
	Label string `json:"label"`
	// Seconds is the wall time of the collector process.
	Seconds float64 `json:"seconds"`
	// BlobsBefore and BlobsAfter count blob data files in the store.
	BlobsBefore int `json:"blobsBefore"`
	BlobsAfter  int `json:"blobsAfter"`
	// Reported is what the collector said it deleted.
	Reported string `json:"reported"`
}
