// Command registrybench measures a registry from the outside with one client,
// go-containerregistry, so that `dockyard registry serve` and upstream distribution are
// driven by exactly the same requests (see hack/bench-registry.sh).
//
//	registrybench pushpull -endpoint 127.0.0.1:5000 -user u -password p -ca ca.crt -label x -out x.json
//	    pushes a fixed, seeded set of images (3 random layers of 1–4 MiB each), then pulls
//	    them back (manifest, config, layers; digests verified) -pull-rounds times; records
//	    total bytes and wall time per phase and the latency of every HTTP request.
//	registrybench gcstore -endpoint ... -images 1700
//	    pushes many small seeded images (4 x 1 KiB layers) and deletes the manifests of every
//	    second one (half by digest, half by tag), leaving a store that is half garbage.
//	registrybench backdate -dir DIR -age 2h
//	    sets the mtime of everything under DIR to now-age, so collectors with a grace
//	    period see it as old.
//	registrybench report -a a1.json,a2.json -b b1.json,b2.json -gc-a c1.json -gc-b d1.json
//	    merges the runs of each registry and prints the tables and the ratios A/B.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: registrybench pushpull|gcstore|backdate|report [flags]")
		os.Exit(2)
	}
	var err error
	switch cmd, args := os.Args[1], os.Args[2:]; cmd {
	case "pushpull":
		err = runPushPull(args)
	case "gcstore":
		err = runGCStore(args)
	case "backdate":
		err = runBackdate(args)
	case "report":
		err = runReport(args)
	default:
		err = fmt.Errorf("unknown command %q", cmd)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "registrybench:", err)
		os.Exit(1)
	}
}

// target is how to reach one registry.
type target struct {
	endpoint, user, password, ca string
}

func (t *target) flags(fs *flag.FlagSet) {
	fs.StringVar(&t.endpoint, "endpoint", "127.0.0.1:5000", "registry host:port (HTTPS)")
	fs.StringVar(&t.user, "user", "", "user name (basic auth)")
	fs.StringVar(&t.password, "password", "", "password")
	fs.StringVar(&t.ca, "ca", "", "CA certificate (PEM) the registry's certificate is signed by")
}

func (t *target) transport() (*http.Transport, error) {
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if t.ca != "" {
		pem, err := os.ReadFile(t.ca)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s: no certificates", t.ca)
		}
		tlsCfg.RootCAs = pool
	}
	return &http.Transport{TLSClientConfig: tlsCfg, ForceAttemptHTTP2: true, MaxIdleConns: 64,
		MaxIdleConnsPerHost: 64, IdleConnTimeout: time.Minute}, nil
}

func (t *target) auth() authn.Authenticator {
	if t.user == "" {
		return authn.Anonymous
	}
	return &authn.Basic{Username: t.user, Password: t.password}
}

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
func imageBytes(img v1.Image) (int64, error) {
	m, err := img.RawManifest()
	if err != nil {
		return 0, err
	}
	c, err := img.RawConfigFile()
	if err != nil {
		return 0, err
	}
	n := int64(len(m) + len(c))
	layers, err := img.Layers()
	if err != nil {
		return 0, err
	}
	for _, l := range layers {
		s, err := l.Size()
		if err != nil {
			return 0, err
		}
		n += s
	}
	return n, nil
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
		rc, err := l.Compressed()
		if err != nil {
			return 0, err
		}
		n, err := io.Copy(io.Discard, rc) // go-containerregistry verifies the digest at EOF
		rc.Close()
		if err != nil {
			return 0, err
		}
		total += n
	}
	return total, nil
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

func runGCStore(args []string) error {
	fs := flag.NewFlagSet("gcstore", flag.ContinueOnError)
	var t target
	t.flags(fs)
	images := fs.Int("images", 1700, "images to push (each: 4 layers + config + manifest = 6 blobs)")
	layerSize := fs.Int("layer-size", 1024, "bytes per layer")
	repos := fs.Int("repos", 50, "repositories the images are spread over")
	seed := fs.Uint64("seed", 2, "seed of the image contents")
	conc := fs.Int("concurrency", 8, "images pushed at once")
	maxDur := fs.Duration("max-duration", 4*time.Minute, "start no new push after this")
	if err := fs.Parse(args); err != nil {
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

func readJSON[T any](path string) (T, error) {
	var v T
	b, err := os.ReadFile(path)
	if err != nil {
		return v, err
	}
	return v, json.Unmarshal(b, &v)
}

// readRuns reads comma-separated result files of the same registry.
func readRuns[T any](list string) ([]T, error) {
	var out []T
	for f := range strings.SplitSeq(list, ",") {
		v, err := readJSON[T](f)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

func ratio(a, b float64) string {
	if b == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2fx", a/b)
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func fmtRuns(xs []float64, prec int) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = fmt.Sprintf("%.*f", prec, x)
	}
	return strings.Join(parts, " ")
}

func runReport(args []string) error {
	set := flag.NewFlagSet("report", flag.ContinueOnError)
	title := set.String("title", "", "heading")
	ppA := set.String("a", "", "pushpull result files of registry A (comma-separated runs)")
	ppB := set.String("b", "", "pushpull result files of registry B; ratios are A/B")
	gcA := set.String("gc-a", "", "GC result files of collector A (comma-separated runs)")
	gcB := set.String("gc-b", "", "GC result files of collector B")
	if err := set.Parse(args); err != nil {
		return err
	}
	if *title != "" {
		fmt.Printf("### %s\n\n", *title)
	}
	if *ppA != "" {
		if err := reportPushPull(*ppA, *ppB); err != nil {
			return err
		}
	}
	if *gcA != "" {
		if err := reportGC(*gcA, *gcB); err != nil {
			return err
		}
	}
	return nil
}

// merged is all runs of one registry.
type merged struct {
	label         string
	push, pull    Phase
	pushR, pullR  []float64 // MiB/s of each run
	images, conc  int
	rounds, nruns int
}

func mergeRuns(list string) (merged, error) {
	runs, err := readRuns[PushPull](list)
	if err != nil {
		return merged{}, err
	}
	m := merged{label: runs[0].Label, images: runs[0].Images, conc: runs[0].Concurrency,
		rounds: runs[0].PullRounds, nruns: len(runs)}
	for _, r := range runs {
		m.push.merge(r.Push)
		m.pull.merge(r.Pull)
		m.pushR = append(m.pushR, r.Push.MiBps)
		m.pullR = append(m.pullR, r.Pull.MiBps)
	}
	return m, nil
}

func reportPushPull(listA, listB string) error {
	a, err := mergeRuns(listA)
	if err != nil {
		return err
	}
	b, err := mergeRuns(listB)
	if err != nil {
		return err
	}
	fmt.Printf("Push/pull: %d images x 3 layers (1-4 MiB, seeded), %d images in flight, %d pull rounds, %d run(s) each\n",
		a.images, a.conc, a.rounds, a.nruns)
	fmt.Printf("  same go-containerregistry client; MiB/s = all bytes / all wall time over the runs;\n")
	fmt.Printf("  latency = one HTTP request (ping excluded), start of round trip to end of response body\n\n")
	fmt.Printf("%-5s %-26s %6s %8s %8s %9s %9s %5s  %s\n", "phase", "registry", "images", "MiB", "MiB/s", "p50 ms", "p99 ms", "fail", "MiB/s per run")
	for _, ph := range []string{"push", "pull"} {
		pa, pb, ra, rb := a.push, b.push, a.pushR, b.pushR
		if ph == "pull" {
			pa, pb, ra, rb = a.pull, b.pull, a.pullR, b.pullR
		}
		for _, x := range []struct {
			label string
			p     Phase
			runs  []float64
		}{{a.label, pa, ra}, {b.label, pb, rb}} {
			fmt.Printf("%-5s %-26s %6d %8.1f %8.1f %9.2f %9.2f %5d  %s\n", ph, x.label, x.p.Images,
				float64(x.p.Bytes)/(1<<20), x.p.MiBps, x.p.All.P50ms, x.p.All.P99ms, x.p.Failed, fmtRuns(x.runs, 1))
		}
		fmt.Printf("%-5s %-26s %6s %8s %8s %9s %9s\n", ph, "ratio "+a.label+"/"+b.label, "", "",
			ratio(pa.MiBps, pb.MiBps), ratio(pa.All.P50ms, pb.All.P50ms), ratio(pa.All.P99ms, pb.All.P99ms))
	}
	fmt.Printf("  (MiB/s ratio > 1 and latency ratio < 1 mean %s is faster)\n", a.label)
	fmt.Printf("\nPer request class, p50 / p99 ms (requests):\n")
	for _, ph := range []string{"push", "pull"} {
		pa, pb := a.push, b.push
		if ph == "pull" {
			pa, pb = a.pull, b.pull
		}
		classes := map[string]bool{}
		for c := range pa.Micros {
			classes[c] = true
		}
		for c := range pb.Micros {
			classes[c] = true
		}
		for _, c := range slices.Sorted(maps.Keys(classes)) {
			only := func(k string) bool { return k == c }
			la, lb := pa.latency(only), pb.latency(only)
			fmt.Printf("  %-4s %-14s %-10s %8.2f / %8.2f (%4d)   %-10s %8.2f / %8.2f (%4d)\n", ph, c,
				a.label, la.P50ms, la.P99ms, la.Requests, b.label, lb.P50ms, lb.P99ms, lb.Requests)
		}
	}
	fmt.Println()
	return nil
}

func reportGC(listA, listB string) error {
	fmt.Printf("Garbage collection over identical copies of one store (a fresh copy per run;\n")
	fmt.Printf("blob data files counted before/after; seconds = wall time of the collector process):\n\n")
	fmt.Printf("%-26s %8s %8s %8s %8s  %-20s %s\n", "collector", "median s", "before", "after", "deleted", "seconds per run", "collector's own report (last run)")
	var med [2]float64
	var labels [2]string
	for i, list := range []string{listA, listB} {
		runs, err := readRuns[GC](list)
		if err != nil {
			return err
		}
		var secs []float64
		for _, r := range runs {
			secs = append(secs, r.Seconds)
		}
		last := runs[len(runs)-1]
		med[i], labels[i] = median(secs), last.Label
		fmt.Printf("%-26s %8.2f %8d %8d %8d  %-20s %s\n", last.Label, med[i], last.BlobsBefore, last.BlobsAfter,
			last.BlobsBefore-last.BlobsAfter, fmtRuns(secs, 2), last.Reported)
	}
	fmt.Printf("%-26s %8s  (< 1 means %s is faster)\n\n", "ratio "+labels[0]+"/"+labels[1], ratio(med[0], med[1]), labels[0])
	return nil
}
