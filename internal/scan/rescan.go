package scan

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// PullsSuffix ends the path of the registry's pull record of a repository:
// GET /v2/<name>/_dockyard/pulls[?since=RFC3339] answers a PullList. It is Dockyard's own
// extension of the distribution API (a path component starting with "_" is never part of a
// repository name); it needs push rights on the repository (its Managers, and the scanner).
const PullsSuffix = "/_dockyard/pulls"

// MaxPullsListed bounds the entries of one PullList (the most recent pulls first).
const MaxPullsListed = 20000

// PullList is the registry's record of when the manifests of one repository were last
// pulled (by tag or digest; a scanner's reads do not count), most recent first.
type PullList struct {
	Pulls []Pull `json:"pulls"`
	// Truncated: more manifests were pulled since then than MaxPullsListed.
	Truncated bool `json:"truncated,omitempty"`
}

// Pull is one manifest's last recorded pull (the registry records it at most once an hour).
type Pull struct {
	Digest string    `json:"digest"`
	Pulled time.Time `json:"pulled"`
}

// RescanResult says what one rescan pass saw.
type RescanResult struct {
	// Repositories looked at; Pulled images pulled within the window (an index counts its
	// images); Current those whose newest report was made with the current database;
	// Queued those queued for a new scan.
	Repositories, Pulled, Current, Queued int
	// Incomplete: MaxSweepImages was reached, or a repository's pull record was truncated.
	Incomplete bool
}

// Rescan queues, as "rescan" jobs, the images pulled since `since` whose newest report
// was made with a vulnerability database older than db (or that have no report at all):
// a CVE published after an image was scanned reaches the gate and admission once the
// scanner's database knows it. Only recently pulled images are rescanned, so a large
// registry does not rescan everything it holds whenever the database changes (upstream
// publishes one every 6 hours). Like Sweep, it fills at most half the queue. Which
// database made a report is read from the report itself (signed by the scanner), once per
// report.
func (q *Queue) Rescan(ctx context.Context, db, since time.Time) (RescanResult, error) {
	var res RescanResult
	repos, opts, err := q.catalog(ctx)
	if err != nil {
		return res, err
	}
	current := func(ctx context.Context, d name.Digest) (bool, error) { return q.reportIsCurrent(ctx, d, db) }
	var errs []error
	for _, repo := range repos {
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		res.Repositories++
		pulls, err := q.pulls(ctx, repo, since)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		res.Incomplete = res.Incomplete || pulls.Truncated
		for _, p := range pulls.Pulls {
			if res.Pulled >= MaxSweepImages {
				res.Incomplete = true
				return res, joinBounded(errs)
			}
			digests, err := q.images(repo.Digest(p.Digest), opts)
			if err != nil {
				if !isNotFound(err) {
					errs = append(errs, err)
				}
				continue
			}
			res.Pulled += len(digests)
			done, queued, err := q.queueUnless(ctx, repo, digests, CauseRescan, current, &errs)
			res.Current += done
			res.Queued += queued
			if err != nil {
				return res, err
			}
		}
	}
	return res, joinBounded(errs)
}

// Causes of jobs besides CauseSweep.
const (
	CausePush    = "push"
	CauseRescan  = "rescan"
	CauseRequest = "request"
)

// images are the digests ref stands for: itself, or the first maxIndexChildren images of
// an index. Anything else (a signature, a report) is left out: it is never scanned.
func (q *Queue) images(ref name.Reference, opts []remote.Option) ([]string, error) {
	desc, err := remote.Get(ref, opts...)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", ref, err)
	}
	if desc.MediaType != types.OCIImageIndex && desc.MediaType != types.DockerManifestList {
		if runnable := Runnable(desc.MediaType, desc.Manifest) == nil; !runnable {
			return nil, nil
		}
		return []string{desc.Digest.String()}, nil
	}
	idx, err := desc.ImageIndex()
	if err != nil {
		return nil, fmt.Errorf("read index %s: %w", ref, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("read index %s: %w", ref, err)
	}
	var out []string
	for i, m := range im.Manifests {
		if i >= maxIndexChildren {
			break
		}
		out = append(out, m.Digest.String())
	}
	return out, nil
}

// maxPullsBody bounds the registry's answer to a pulls request.
const maxPullsBody = 8 << 20

// pulls asks the registry which manifests of repo were pulled since then.
func (q *Queue) pulls(ctx context.Context, repo name.Repository, since time.Time) (*PullList, error) {
	rt := q.Transport
	if rt == nil {
		rt = remote.DefaultTransport
	}
	rt = transport.NewUserAgent(rt, UserAgent)
	auth := q.Auth
	if auth == nil {
		auth = authn.Anonymous
	}
	tr, err := transport.NewWithContext(ctx, repo.Registry, auth, rt, []string{repo.Scope(transport.PushScope)})
	if err != nil {
		return nil, fmt.Errorf("authenticate to read the pulls of %s: %w", repo.RepositoryStr(), err)
	}
	u := url.URL{Scheme: repo.Scheme(), Host: repo.RegistryStr(), Path: "/v2/" + repo.RepositoryStr() + PullsSuffix,
		RawQuery: url.Values{"since": {since.UTC().Format(time.RFC3339)}}.Encode()}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), http.NoBody)
	if err != nil {
		return nil, err
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return nil, fmt.Errorf("read the pulls of %s: %w", repo.RepositoryStr(), err)
	}
	defer func() { _ = resp.Body.Close() }()
	if err := transport.CheckError(resp, http.StatusOK); err != nil {
		return nil, fmt.Errorf("read the pulls of %s: %w", repo.RepositoryStr(), err)
	}
	var list PullList
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxPullsBody)).Decode(&list); err != nil {
		return nil, fmt.Errorf("read the pulls of %s: %w", repo.RepositoryStr(), err)
	}
	out := list.Pulls[:0]
	for _, p := range list.Pulls {
		if digestRE.MatchString(p.Digest) && !p.Pulled.Before(since) {
			out = append(out, p)
		}
	}
	list.Pulls = out
	return &list, nil
}

// reportDBCacheMax bounds a timeMemo.
const reportDBCacheMax = 100000

// timeMemo remembers a time per key, bounded: past reportDBCacheMax entries the memory
// starts over (some work done again, never unbounded memory).
type timeMemo[K comparable] struct {
	mu sync.Mutex
	m  map[K]time.Time
}

func (c *timeMemo[K]) get(k K) (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.m[k]
	return t, ok
}

func (c *timeMemo[K]) put(k K, t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= reportDBCacheMax {
		c.m = map[K]time.Time{}
	}
	c.m[k] = t
}

// reportIsCurrent is true when the newest report of ref signed by the queue's key was made
// with database db or a newer one, or when the image was checked against such a database
// without a new report being stored (see Queue.scan). A report that does not read back, or
// does not say its database, is not current; neither is an image without a report.
func (q *Queue) reportIsCurrent(ctx context.Context, ref name.Digest, db time.Time) (bool, error) {
	if t, ok := q.checked.get(ref.Context().RepositoryStr() + "@" + ref.DigestStr()); ok && !t.Before(db) {
		return true, nil
	}
	if q.Key == nil {
		return false, nil
	}
	keys := q.publicKeys()
	opts := q.remote(ctx)
	list, err := Reports(ref, keys, opts...)
	if err != nil || len(list) == 0 {
		return false, err
	}
	newest := list[0].Manifest
	made, ok := q.reportDB.get(newest)
	if !ok {
		// A report that does not read back leaves made zero: scanned again.
		if r, ferr := Fetch(ref, newest, keys, opts...); ferr == nil {
			if r.Scanner.DBUpdatedAt != nil {
				made = *r.Scanner.DBUpdatedAt
			}
			q.reportDB.put(newest, made)
		}
	}
	return !made.IsZero() && !made.Before(db), nil
}

// sameFindings is true when two reports name the same vulnerabilities of the same packages.
func sameFindings(a, b *Report) bool {
	key := func(v Vulnerability) string {
		return strings.Join([]string{v.ID, string(v.Severity), v.Package, v.InstalledVersion, v.FixedVersion, v.Target}, "\x00")
	}
	set := func(r *Report) []string {
		out := make([]string, 0, len(r.Vulnerabilities))
		for _, v := range r.Vulnerabilities {
			out = append(out, key(v))
		}
		slices.Sort(out)
		return slices.Compact(out)
	}
	return slices.Equal(set(a), set(b))
}

// maxJoinedErrors bounds the errors a sweep or rescan returns (the rest are counted).
const maxJoinedErrors = 10

// joinBounded joins the first maxJoinedErrors of errs and counts the others.
func joinBounded(errs []error) error {
	if len(errs) <= maxJoinedErrors {
		return errors.Join(errs...)
	}
	return errors.Join(append(errs[:maxJoinedErrors:maxJoinedErrors], fmt.Errorf("and %d more errors", len(errs)-maxJoinedErrors))...)
}
