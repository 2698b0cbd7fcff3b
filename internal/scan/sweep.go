package scan

import (
	"cmp"
	"context"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// UserAgent is how the scanner's own requests (reading manifests, sweeping, storing
// reports) introduce themselves; Trivy's pulls say "trivy/<version>". The registry does not
// count either as a pull of the image (see the registry's pull recorder).
const UserAgent = "dockyard-scanner"

// AdmissionUserAgent is the User-Agent of the operator's admission webhook, which reads
// manifests, reports and signatures to decide: not a pull of the image either.
const AdmissionUserAgent = "dockyard-admission"

// IsScannerAgent is true for the User-Agent of the scanner, of Trivy or of the admission
// webhook.
func IsScannerAgent(ua string) bool {
	return strings.HasPrefix(ua, UserAgent) || strings.HasPrefix(ua, "trivy/") || strings.HasPrefix(ua, AdmissionUserAgent)
}

// CauseSweep marks jobs the sweep queued: they are skipped when the image already has a
// report signed by the scanner.
const CauseSweep = "sweep"

// Bounds of one sweep.
const (
	// MaxSweepImages bounds the tags one sweep looks at (a registry with more is swept
	// in part: the first MaxSweepImages tags in catalog order).
	MaxSweepImages = 20000
	// maxIndexChildren bounds the images of one index the sweep queues.
	maxIndexChildren = 64
)

// SweepResult says what a sweep saw.
type SweepResult struct {
	// Repositories and Tags looked at; Scanned images that already had a report; Queued
	// those that had none.
	Repositories, Tags, Scanned, Queued int
	// Incomplete: MaxSweepImages was reached.
	Incomplete bool
}

// sweepWait is how long a sweep waits for room in the queue before looking again.
var sweepWait = time.Second

// referrerTag matches the tags of the referrers tag schema and cosign's (sha256-<hex>,
// sha256-<hex>.sig/.att/.sbom): never images of their own.
var referrerTag = regexp.MustCompile(`^sha256-[0-9a-f]{64}(\.[a-z]+)?$`)

// Sweep lists the registry's repositories and tags and queues every image they name
// (the images of an index one by one) that has no report signed by the queue's key, as a
// CauseSweep job. It is the backstop of the push events: pushes the scanner never heard
// of (it was down, or the operator's event queue overflowed) and images older than the
// scanner get a report. It fills at most half the queue, waiting for room, so pushes are
// never refused for its sake. Errors of single repositories are returned joined after the
// rest was swept.
func (q *Queue) Sweep(ctx context.Context) (SweepResult, error) {
	var res SweepResult
	repos, opts, err := q.catalog(ctx)
	if err != nil {
		return res, err
	}
	var errs []error
	images := 0
	for _, repo := range repos {
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		res.Repositories++
		r := repo.RepositoryStr()
		tags, err := remote.List(repo, opts...)
		if err != nil {
			if !isNotFound(err) {
				errs = append(errs, fmt.Errorf("list tags of %s: %w", r, err))
			}
			continue
		}
		for _, t := range tags {
			if referrerTag.MatchString(t) {
				continue
			}
			if images >= MaxSweepImages {
				res.Incomplete = true
				return res, joinBounded(errs)
			}
			images++
			res.Tags++
			digests, err := q.images(repo.Tag(t), opts)
			if err != nil {
				if !isNotFound(err) {
					errs = append(errs, err)
				}
				continue
			}
			done, queued, err := q.queueUnless(ctx, repo, digests, CauseSweep, q.hasReport, &errs)
			res.Scanned += done
			res.Queued += queued
			if err != nil {
				return res, err
			}
		}
	}
	return res, joinBounded(errs)
}

// catalog lists the registry's repositories (those with a valid name) and returns the
// options to read them with.
func (q *Queue) catalog(ctx context.Context) ([]name.Repository, []remote.Option, error) {
	nopts := q.nameOptions()
	reg, err := name.NewRegistry(q.Registry, nopts...)
	if err != nil {
		return nil, nil, err
	}
	opts := q.remote(ctx)
	list, err := remote.Catalog(ctx, reg, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("list repositories: %w", err)
	}
	repos := make([]name.Repository, 0, len(list))
	for _, r := range list {
		if repo, err := name.NewRepository(q.Registry+"/"+r, nopts...); err == nil {
			repos = append(repos, repo)
		}
	}
	return repos, opts, nil
}

// queueUnless queues, with cause, each of digests (images of repo) for which done is
// false, waiting for room in the queue; it returns how many were done and how many it
// queued. Errors of done are added to errs; the error returned ends the walk (ctx ended).
func (q *Queue) queueUnless(ctx context.Context, repo name.Repository, digests []string, cause string,
	done func(context.Context, name.Digest) (bool, error), errs *[]error) (skipped, queued int, err error) {
	for _, d := range digests {
		switch ok, err := done(ctx, repo.Digest(d)); {
		case err != nil:
			*errs = append(*errs, fmt.Errorf("list the reports of %s@%s: %w", repo.RepositoryStr(), d, err))
			continue
		case ok:
			skipped++
			continue
		}
		if err := q.waitForRoom(ctx); err != nil {
			return skipped, queued, err
		}
		if q.Add(Job{Repository: repo.RepositoryStr(), Digest: d, Cause: cause}) {
			queued++
		}
	}
	return skipped, queued, nil
}

// waitForRoom waits until the queue is less than half full (the rest is for pushes).
func (q *Queue) waitForRoom(ctx context.Context) error {
	for q.Len() >= max(cmp.Or(q.Size, 1000)/2, 1) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(sweepWait):
		}
	}
	return nil
}

// hasReport reports whether the image already has a report signed by the queue's key
// (what a sweep job checks first).
func (q *Queue) hasReport(ctx context.Context, ref name.Digest) (bool, error) {
	if q.Key == nil {
		return false, nil
	}
	list, err := Reports(ref, q.publicKeys(), q.remote(ctx)...)
	if err != nil {
		return false, err
	}
	return len(list) > 0, nil
}
