package server_test

import (
	"bytes"
	"crypto/rand"
	"io"
	"sync/atomic"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// slowReader hands out data in small chunks with a pause between them, so that a request
// carrying it stays in flight long enough to do something meanwhile.
type slowReader struct {
	r     io.Reader
	chunk int
	pause time.Duration
	// started is closed on the first read.
	started chan struct{}
	once    atomic.Bool
}

func newSlowReader(data []byte, chunk int, pause time.Duration) *slowReader {
	return &slowReader{r: bytes.NewReader(data), chunk: chunk, pause: pause, started: make(chan struct{})}
}

func (s *slowReader) Read(p []byte) (int, error) {
	if s.once.CompareAndSwap(false, true) {
		close(s.started)
	} else {
		time.Sleep(s.pause)
	}
	if len(p) > s.chunk {
		p = p[:s.chunk]
	}
	return s.r.Read(p)
}

// slowLayer is an uncompressed layer whose upload is slowed down once slow is set.
type slowLayer struct {
	data   []byte
	digest v1.Hash
	slow   atomic.Pointer[slowReader]
	chunk  int
	pause  time.Duration
}

func newSlowLayer(size, chunk int, pause time.Duration) *slowLayer {
	data := make([]byte, size)
	_, _ = rand.Read(data)
	h, _, _ := v1.SHA256(bytes.NewReader(data))
	return &slowLayer{data: data, digest: h, chunk: chunk, pause: pause}
}

func (l *slowLayer) Digest() (v1.Hash, error) { return l.digest, nil }
func (l *slowLayer) DiffID() (v1.Hash, error) { return l.digest, nil }
func (l *slowLayer) Size() (int64, error)     { return int64(len(l.data)), nil }
func (l *slowLayer) MediaType() (types.MediaType, error) {
	return types.OCIUncompressedLayer, nil
}
func (l *slowLayer) Compressed() (io.ReadCloser, error) {
	r := newSlowReader(l.data, l.chunk, l.pause)
	l.slow.Store(r)
	return io.NopCloser(r), nil
}
func (l *slowLayer) Uncompressed() (io.ReadCloser, error) { return l.Compressed() }

// started waits until an upload of the layer has begun.
func (l *slowLayer) started(timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if r := l.slow.Load(); r != nil {
			select {
			case <-r.started:
				return true
			case <-time.After(10 * time.Millisecond):
			}
			continue
		}
		time.Sleep(10 * time.Millisecond)
	}
	return false
}
