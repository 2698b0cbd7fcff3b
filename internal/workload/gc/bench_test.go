package gc_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// BenchmarkCollect measures one full mark and sweep over a registry of 100 tagged images
// (2 layers each) in 10 repositories, where nothing is garbage.
func BenchmarkCollect(b *testing.B) {
	root := b.TempDir()
	host := startServe(b, root, time.Hour)
	for i := range 100 {
		img, err := random.Image(1024, 2)
		if err != nil {
			b.Fatal(err)
		}
		tag, _ := name.NewTag(fmt.Sprintf("%s/bench/r%d:v%d", host, i%10, i))
		if err := remote.Write(tag, img); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for b.Loop() {
		res, err := collectErr(b.Context(), root, time.Hour)
		if err != nil {
			b.Fatal(err)
		}
		if res.BlobsDeleted != 0 {
			b.Fatalf("deleted %d blobs", res.BlobsDeleted)
		}
	}
}
