package main

import (
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// recorder is an http.RoundTripper that records how long every request took, from the
// start of the round trip to the end (EOF or Close) of the response body, so a blob GET
// includes its transfer and an upload includes sending the body.
type recorder struct {
	base    http.RoundTripper
	mu      sync.Mutex
	samples map[string][]time.Duration // by class, see classify
	failed  atomic.Int64               // transport errors and 5xx
}

func newRecorder(base http.RoundTripper) *recorder {
	return &recorder{base: base, samples: map[string][]time.Duration{}}
}

// classify names a request by method and API area, e.g. "HEAD blob", "PATCH upload".
func classify(r *http.Request) string {
	p := r.URL.Path
	area := "other"
	switch {
	case p == "/v2/" || p == "/v2":
		area = "ping"
	case strings.Contains(p, "/blobs/uploads"):
		area = "upload"
	case strings.Contains(p, "/blobs/"):
		area = "blob"
	case strings.Contains(p, "/manifests/"):
		area = "manifest"
	}
	return r.Method + " " + area
}

func (rec *recorder) add(class string, d time.Duration) {
	rec.mu.Lock()
	rec.samples[class] = append(rec.samples[class], d)
	rec.mu.Unlock()
}

func (rec *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	class := classify(req)
	start := time.Now()
	resp, err := rec.base.RoundTrip(req)
	if err != nil {
		rec.failed.Add(1)
		rec.add(class, time.Since(start))
		return nil, err
	}
	if resp.StatusCode >= 500 {
		rec.failed.Add(1)
	}
	resp.Body = &timedBody{ReadCloser: resp.Body, done: func() { rec.add(class, time.Since(start)) }}
	return resp, nil
}

// timedBody calls done once, at EOF, on a read error or at Close, whichever comes first.
type timedBody struct {
	io.ReadCloser
	once sync.Once
	done func()
}

func (b *timedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil {
		b.once.Do(b.done)
	}
	return n, err
}

func (b *timedBody) Close() error {
	b.once.Do(b.done)
	return b.ReadCloser.Close()
}

// Latency summarizes a set of request durations in milliseconds.
type Latency struct {
	Requests int     `json:"requests"`
	P50ms    float64 `json:"p50ms"`
	P99ms    float64 `json:"p99ms"`
}

func summarize(ds []time.Duration) Latency {
	if len(ds) == 0 {
		return Latency{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	q := func(p float64) float64 {
		i := int(p*float64(len(s))+0.5) - 1 // nearest rank
		i = max(0, min(i, len(s)-1))
		return float64(s[i].Microseconds()) / 1000
	}
	return Latency{Requests: len(s), P50ms: q(0.50), P99ms: q(0.99)}
}

// Phase is what one push or pull phase measured.
type Phase struct {
	Images  int     `json:"images"`
	Bytes   int64   `json:"bytes"`
	Seconds float64 `json:"seconds"`
	MiBps   float64 `json:"mibPerSecond"`
	Failed  int64   `json:"failedRequests"`
	// All covers every request except the /v2/ ping.
	All Latency `json:"all"`
	// Micros has every request's latency in microseconds, by class (ping included), so
	// that runs can be merged.
	Micros map[string][]int64 `json:"micros"`
}

func (rec *recorder) phase(images int, bytes int64, d time.Duration) Phase {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	p := Phase{Images: images, Bytes: bytes, Seconds: d.Seconds(), Failed: rec.failed.Load(),
		Micros: map[string][]int64{}}
	for class, ds := range rec.samples {
		for _, d := range ds {
			p.Micros[class] = append(p.Micros[class], d.Microseconds())
		}
	}
	p.finish()
	return p
}

// finish computes MiBps and All from the totals and Micros.
func (p *Phase) finish() {
	if p.Seconds > 0 {
		p.MiBps = float64(p.Bytes) / (1 << 20) / p.Seconds
	}
	p.All = p.latency(func(class string) bool { return !strings.HasSuffix(class, " ping") })
}

func (p *Phase) latency(include func(class string) bool) Latency {
	var all []time.Duration
	for class, us := range p.Micros {
		if include(class) {
			for _, u := range us {
				all = append(all, time.Duration(u)*time.Microsecond)
			}
		}
	}
	return summarize(all)
}

// merge adds run q to p (bytes and time add up, so MiBps is the overall rate).
func (p *Phase) merge(q Phase) {
	p.Images += q.Images
	p.Bytes += q.Bytes
	p.Seconds += q.Seconds
	p.Failed += q.Failed
	if p.Micros == nil {
		p.Micros = map[string][]int64{}
	}
	for c, us := range q.Micros {
		p.Micros[c] = append(p.Micros[c], us...)
	}
	p.finish()
}
