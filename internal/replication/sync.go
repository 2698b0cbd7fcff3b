package replication

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// Endpoint is one registry of a run.
type Endpoint struct {
	// Host is host[:port].
	Host string
	// PlainHTTP speaks http instead of https.
	PlainHTTP bool
	// Transport carries the TLS trust; http.DefaultTransport when nil.
	Transport http.RoundTripper
	// Auth answers the registry's challenges; anonymous when nil.
	Auth authn.Authenticator
}

// Result is what a run did.
type Result struct {
	// Repositories and Artifacts the filters matched at the source.
	Repositories, Artifacts int64
	// Copied artifacts the destination lacked (or whose tags pointed elsewhere); Skipped
	// those it had; Failed those that could not be copied.
	Copied, Skipped, Failed int64
	// Referrers copied with them, TagsDeleted at the destination.
	Referrers, TagsDeleted int64
	// Bytes of blobs sent to the destination.
	Bytes int64
	// Errors are the first MaxErrors failures; FirstErr the first of them, for its kind.
	Errors   []string
	FirstErr error
}

// MaxErrors bounds Result.Errors.
const MaxErrors = 5

// Options tune a run.
type Options struct {
	// Repositories copied at once (default 4), and blobs per artifact (default 4).
	Parallel, Jobs int
}

// run is the state of one Sync.
type run struct {
	src, dst       Endpoint
	srcOpt, dstOpt []remote.Option
	f              *filter
	sent           atomic.Int64

	mu  sync.Mutex
	res Result
	// where holds, per blob digest, a destination repository that has it, so another
	// repository gets it by a cross-repository mount instead of an upload.
	where sync.Map
}

// Side says which registry an error came from.
type Side string

// The sides of a run.
const (
	Source      Side = "source"
	Destination Side = "destination"
)

// EndpointError is a failure talking to one registry.
type EndpointError struct {
	Side Side
	Host string
	Err  error
}

func (e *EndpointError) Error() string { return fmt.Sprintf("%s %s: %v", e.Side, e.Host, e.Err) }
func (e *EndpointError) Unwrap() error { return e.Err }

// Sync copies what the rule selects at src and dst lacks. It returns an error when it
// could not even list the source (nothing was copied); failures of single artifacts are
// counted in the Result.
func Sync(ctx context.Context, src, dst Endpoint, rule Rule, opt Options) (Result, error) {
	f, err := newFilter(rule)
	if err != nil {
		return Result{}, err
	}
	if opt.Parallel <= 0 {
		opt.Parallel = 4
	}
	if opt.Jobs <= 0 {
		opt.Jobs = 4
	}
	r := &run{src: src, dst: dst, f: f}
	r.srcOpt = options(ctx, src, nil, opt.Jobs)
	r.dstOpt = options(ctx, dst, &r.sent, opt.Jobs)
	// Both ends answer and accept the credentials before anything is listed: a wrong
	// password or an untrusted certificate fails the run even when nothing is to be copied.
	if err := preflight(ctx, src, Source); err != nil {
		return Result{}, err
	}
	if err := preflight(ctx, dst, Destination); err != nil {
		return Result{}, err
	}

	repos, literal := f.literalRepositories()
	if !literal {
		reg, err := registry(src)
		if err != nil {
			return Result{}, err
		}
		all, err := remote.Catalog(ctx, reg, r.srcOpt...)
		if err != nil {
			return Result{}, &EndpointError{Source, src.Host, fmt.Errorf("list repositories: %w", err)}
		}
		for _, repo := range all {
			if f.repository(repo) {
				repos = append(repos, repo)
			}
		}
	}
	sort.Strings(repos)
	r.res.Repositories = int64(len(repos))
	repos = r.dropCollisions(repos)

	sem := make(chan struct{}, opt.Parallel)
	var wg sync.WaitGroup
	for _, repo := range repos {
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			r.repository(ctx, repo)
		}()
	}
	wg.Wait()
	r.res.Bytes = r.sent.Load()
	if err := ctx.Err(); err != nil && r.res.FirstErr == nil {
		r.fail(fmt.Errorf("run stopped: %w", err))
	}
	return r.res, nil
}

// dropCollisions fails, and leaves out, source repositories the rename sends to one
// destination: copied one after the other they would overwrite (and, with deletes,
// remove) each other's tags.
func (r *run) dropCollisions(repos []string) []string {
	by := map[string][]string{}
	for _, repo := range repos {
		if d := r.f.rule.Rename(repo); d != "" {
			by[d] = append(by[d], repo)
		}
	}
	out := repos[:0:0]
	for _, repo := range repos {
		srcs := by[r.f.rule.Rename(repo)]
		if len(srcs) > 1 {
			r.count(func(res *Result) { res.Failed++ })
			r.fail(fmt.Errorf("%s: the destination rule sends %s to %s too; not copied (change destination.stripSegments or prefix)",
				repo, strings.Join(slices.DeleteFunc(slices.Clone(srcs), func(s string) bool { return s == repo }), ", "), r.f.rule.Rename(repo)))
			continue
		}
		out = append(out, repo)
	}
	return out
}

func (r *run) fail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.res.FirstErr == nil {
		r.res.FirstErr = err
	}
	if len(r.res.Errors) < MaxErrors {
		r.res.Errors = append(r.res.Errors, err.Error())
	}
}

func (r *run) count(f func(*Result)) {
	r.mu.Lock()
	f(&r.res)
	r.mu.Unlock()
}

// notFound reports a registry's answer that a repository or manifest does not exist.
func notFound(err error) bool {
	var te *transport.Error
	return errors.As(err, &te) && te.StatusCode == http.StatusNotFound
}

// artifact is a source manifest and the selected tags naming it.
type artifact struct {
	digest string
	tags   []string
}

// repository copies one source repository.
func (r *run) repository(ctx context.Context, repo string) {
	dstName := r.f.rule.Rename(repo)
	if dstName == "" {
		r.count(func(res *Result) { res.Failed++ })
		r.fail(fmt.Errorf("%s: the destination rule leaves no repository name", repo))
		return
	}
	srcRepo, err := repository(r.src, repo)
	if err == nil {
		var dstRepo name.Repository
		dstRepo, err = repository(r.dst, dstName)
		if err == nil {
			err = r.copyRepository(ctx, srcRepo, dstRepo)
		}
	}
	if err != nil {
		r.count(func(res *Result) { res.Failed++ })
		r.fail(fmt.Errorf("%s: %w", repo, err))
	}
}

// tags are the source tags a run looks at in a repository and the destination tags it
// assumes may exist there (each is checked before use). listed is false for an onPush
// run given its tags (no listing: deletes are not propagated). A nil srcTags with no
// error means the source does not have the repository.
func (r *run) tags(srcRepo, dstRepo name.Repository) (srcTags, dstTags []string, listed bool, err error) {
	if only, ok := r.f.rule.OnlyTags[srcRepo.RepositoryStr()]; ok {
		return only, only, false, nil
	}
	srcTags, err = remote.List(srcRepo, r.srcOpt...)
	if err != nil {
		if notFound(err) {
			return nil, nil, true, nil // a literal name the source does not have: nothing to copy
		}
		return nil, nil, true, &EndpointError{Source, r.src.Host, fmt.Errorf("list tags: %w", err)}
	}
	dstTags, err = remote.List(dstRepo, r.dstOpt...)
	if err != nil && !notFound(err) {
		return nil, nil, true, &EndpointError{Destination, r.dst.Host, fmt.Errorf("list tags of %s: %w", dstRepo.RepositoryStr(), err)}
	}
	return srcTags, dstTags, true, nil
}

func (r *run) copyRepository(ctx context.Context, srcRepo, dstRepo name.Repository) error {
	srcTags, dstTags, listed, err := r.tags(srcRepo, dstRepo)
	if err != nil || srcTags == nil {
		return err
	}
	srcSet := map[string]bool{}
	byDigest := map[string]*artifact{}
	var order []*artifact
	for _, t := range srcTags {
		srcSet[t] = true
		if !r.f.tag(t) {
			continue
		}
		d, err := remote.Head(srcRepo.Tag(t), r.srcOpt...)
		if err != nil {
			if notFound(err) {
				continue // deleted since the listing
			}
			return &EndpointError{Source, r.src.Host, fmt.Errorf("resolve tag %s: %w", t, err)}
		}
		a := byDigest[d.Digest.String()]
		if a == nil {
			a = &artifact{digest: d.Digest.String()}
			byDigest[a.digest] = a
			order = append(order, a)
		}
		a.tags = append(a.tags, t)
	}
	r.count(func(res *Result) { res.Artifacts += int64(len(order)) })
	dstHas := map[string]bool{}
	for _, t := range dstTags {
		dstHas[t] = true
	}
	for _, a := range order {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		copied, err := r.copyArtifact(ctx, srcRepo, dstRepo, a, dstHas)
		switch {
		case err != nil:
			r.count(func(res *Result) { res.Failed++ })
			r.fail(fmt.Errorf("%s@%s: %w", srcRepo.RepositoryStr(), a.digest, err))
		case copied:
			r.count(func(res *Result) { res.Copied++ })
		default:
			r.count(func(res *Result) { res.Skipped++ })
		}
	}
	if r.f.rule.PropagateDeletes && listed {
		for _, t := range dstTags {
			if srcSet[t] || !r.f.tag(t) {
				continue
			}
			if err := remote.Delete(dstRepo.Tag(t), r.dstOpt...); err != nil && !notFound(err) {
				r.fail(&EndpointError{Destination, r.dst.Host, fmt.Errorf("delete tag %s:%s: %w", dstRepo.RepositoryStr(), t, err)})
				continue
			}
			r.count(func(res *Result) { res.TagsDeleted++ })
		}
	}
	return nil
}

// copyArtifact makes the destination have the artifact under all its tags (and its
// referrers). It reports whether anything was written.
func (r *run) copyArtifact(ctx context.Context, srcRepo, dstRepo name.Repository, a *artifact, dstHas map[string]bool) (bool, error) {
	var moved []string
	for _, t := range a.tags {
		if !dstHas[t] {
			moved = append(moved, t)
			continue
		}
		d, err := remote.Head(dstRepo.Tag(t), r.dstOpt...)
		switch {
		case notFound(err):
			moved = append(moved, t)
		case err != nil:
			return false, &EndpointError{Destination, r.dst.Host, fmt.Errorf("resolve tag %s: %w", t, err)}
		case d.Digest.String() != a.digest:
			moved = append(moved, t)
		}
	}
	wrote := false
	if len(moved) > 0 {
		desc, err := r.copyManifest(ctx, srcRepo, dstRepo, a.digest)
		if err != nil {
			return false, err
		}
		for _, t := range moved {
			if err := remote.Tag(dstRepo.Tag(t), desc, r.dstOpt...); err != nil {
				return false, &EndpointError{Destination, r.dst.Host, fmt.Errorf("tag %s: %w", t, err)}
			}
		}
		wrote = true
	}
	if r.f.rule.Referrers {
		n, err := r.copyReferrers(ctx, srcRepo, dstRepo, a.digest, 0)
		if err != nil {
			return wrote, err
		}
		if n > 0 {
			r.count(func(res *Result) { res.Referrers += int64(n) })
		}
	}
	return wrote, nil
}

// copyManifest copies the manifest digest with everything it references (blobs, index
// children), the manifest last, and returns its source descriptor.
func (r *run) copyManifest(_ context.Context, srcRepo, dstRepo name.Repository, digest string) (*remote.Descriptor, error) {
	desc, err := remote.Get(srcRepo.Digest(digest), r.srcOpt...)
	if err != nil {
		return nil, &EndpointError{Source, r.src.Host, fmt.Errorf("get manifest: %w", err)}
	}
	if got := desc.Digest.String(); got != digest {
		return nil, &EndpointError{Source, r.src.Host, fmt.Errorf("manifest %s served with digest %s", digest, got)}
	}
	if _, err := remote.Head(dstRepo.Digest(digest), r.dstOpt...); err == nil {
		return desc, nil
	} else if !notFound(err) {
		return nil, &EndpointError{Destination, r.dst.Host, fmt.Errorf("check manifest: %w", err)}
	}
	dst := dstRepo.Digest(digest)
	switch {
	case desc.MediaType.IsIndex():
		idx, err := desc.ImageIndex()
		if err != nil {
			return nil, &EndpointError{Source, r.src.Host, err}
		}
		err = remote.WriteIndex(dst, idx, r.dstOpt...)
		if err != nil {
			return nil, writeErr(r, err)
		}
	case desc.MediaType.IsImage():
		img, err := desc.Image()
		if err != nil {
			return nil, &EndpointError{Source, r.src.Host, err}
		}
		if err := remote.Write(dst, &mountable{Image: img, run: r, repo: dstRepo}, r.dstOpt...); err != nil {
			return nil, writeErr(r, err)
		}
		r.remember(img, dstRepo)
	default:
		return nil, fmt.Errorf("media type %s is not copied (only OCI and Docker v2 images and indexes)", desc.MediaType)
	}
	return desc, nil
}

// writeErr attributes a write's failure: reading a blob from the source, or writing.
func writeErr(r *run, err error) error {
	var te *transport.Error
	if errors.As(err, &te) && te.Request != nil && te.Request.URL != nil && te.Request.URL.Host == r.src.Host {
		return &EndpointError{Source, r.src.Host, err}
	}
	return &EndpointError{Destination, r.dst.Host, err}
}
