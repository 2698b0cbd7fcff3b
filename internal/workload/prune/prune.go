// Package prune carries out a RetentionPolicy run: it reads the registry's storage (through
// its driver, so every backend works), plans with the retention package and, when enforcing,
// deletes what the plan says — through distribution's own storage API, so no tag link or
// revision is left half-written.
//
// Safety, in order:
//   - The plan keeps what any policy of the registry keeps, immutable tags, and everything
//     younger than the policy's minAge.
//   - A plan over the ceiling deletes nothing.
//   - Compare before delete: before touching a repository the run reads it again and plans
//     it again; only actions both plans agree on are carried out (a tag moved or re-pushed,
//     a new index or referrer after planning keeps what it names). Just before each tag is
//     removed, its current digest is compared once more.
//   - A journal per repository (/dockyard/retention/<repo>/_journal/<policy>) lists the
//     manifests the run is about to delete; an interrupted run's journal makes the next run
//     finish them (untagged, they would otherwise be kept as untagged artifacts).
//
// Blobs are not deleted here: the next garbage collection reclaims them.
package prune

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"strings"
	"time"

	"github.com/distribution/distribution/v3"
	dstorage "github.com/distribution/distribution/v3/registry/storage"
	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"

	"github.com/dockyard-dev/dockyard/internal/registryconfig"
	"github.com/dockyard-dev/dockyard/internal/retention"
	"github.com/dockyard-dev/dockyard/internal/workload/inventory"
	"github.com/dockyard-dev/dockyard/internal/workload/layout"
	"github.com/dockyard-dev/dockyard/internal/workload/referrers"
)

// SampleSize is how many actions a summary shows.
const SampleSize = 10

// maxErrors bounds the errors a summary keeps.
const maxErrors = 5

// Options configure a run.
type Options struct {
	Driver        storagedriver.StorageDriver
	Run           registryconfig.RetentionRun
	ImmutableTags []registryconfig.ImmutableTagRule
	// Now is the planning time (time.Now when zero).
	Now    time.Time
	Logger *slog.Logger
	// BeforeRepository, when set, is called before the run re-reads a repository to
	// enforce its plan (tests use it to change the registry between planning and deleting).
	BeforeRepository func(repo string)
}

// Run plans and, when o.Run.Enforce, enforces. The summary is complete even on error.
func Run(ctx context.Context, o Options) (registryconfig.RetentionSummary, error) {
	now := o.Now
	if now.IsZero() {
		now = time.Now()
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	sum := registryconfig.RetentionSummary{Result: registryconfig.RetentionFailed, EvaluationTime: now.UTC(), Enforced: o.Run.Enforce}
	target, others, names, err := policies(o.Run, o.ImmutableTags)
	if err != nil {
		sum.Message = err.Error()
		return sum, err
	}
	if o.Run.Enforce {
		if target.Unfinished, err = readJournals(ctx, o.Driver, o.Run.Policy); err != nil {
			sum.Message = err.Error()
			return sum, err
		}
	}
	log.Info("Reading the registry's content")
	store, err := inventory.Read(ctx, o.Driver)
	if err != nil {
		sum.Message = fmt.Sprintf("read the registry's content: %v", err)
		return sum, err
	}
	plan, err := retention.MakeAll(store, target, others, names, now)
	if err != nil {
		sum.Message = err.Error()
		return sum, err
	}
	fill(&sum, plan)
	log.Info("Planned", "artifacts", plan.Artifacts, "toDelete", plan.ArtifactsToDelete, "tagsToRemove", plan.TagsToRemove, "reclaimableBytes", plan.ReclaimableBytes, "planHash", plan.Hash)
	switch {
	case !o.Run.Enforce:
		sum.Result = registryconfig.RetentionPlanned
		return sum, nil
	case plan.CeilingExceeded:
		sum.Result = registryconfig.RetentionCeilingExceeded
		sum.Message = fmt.Sprintf("the plan deletes %d of %d artifacts in scope, more than maxDeletionPercent (%d%%); nothing was deleted",
			plan.ArtifactsToDelete, plan.Artifacts, target.MaxDeletionPercent)
		return sum, nil
	}
	e := executor{driver: o.Driver, target: target, others: others, names: names, now: now, log: log, sum: &sum, before: o.BeforeRepository, policy: o.Run.Policy}
	if err := e.enforce(ctx, plan); err != nil {
		sum.Result = registryconfig.RetentionFailed
		sum.Message = err.Error()
		return sum, err
	}
	sum.Result = registryconfig.RetentionSucceeded
	if sum.Failed > 0 {
		sum.Result = registryconfig.RetentionPartiallyFailed
		sum.Message = fmt.Sprintf("%d of the planned deletions failed; the next run retries them", sum.Failed)
	}
	return sum, nil
}

// policies turns the run's policies into the planner's: the one to run and the others.
func policies(run registryconfig.RetentionRun, immutable []registryconfig.ImmutableTagRule) (retention.Policy, []retention.Policy, []string, error) {
	var target *retention.Policy
	var others []retention.Policy
	var names []string
	for _, p := range run.Policies {
		rp := retention.Policy{
			Repositories:        p.Repositories,
			ExcludeRepositories: p.ExcludeRepositories,
			KeepUntagged:        p.KeepUntagged,
			MaxDeletionPercent:  p.MaxDeletionPercent,
			ImmutableTags:       immutable,
			MinAge:              p.MinAge.Duration,
			SampleSize:          SampleSize,
		}
		for _, r := range p.Rules {
			rp.Rules = append(rp.Rules, retention.Rule{
				Name:         r.Name,
				Selector:     retention.TagSelector{Glob: r.Glob, Regex: r.Regex, Semver: r.Semver},
				KeepLast:     r.KeepLast,
				PushedWithin: r.PushedWithin.Duration,
				PulledWithin: r.PulledWithin.Duration,
			})
		}
		if err := rp.Validate(); err != nil {
			return retention.Policy{}, nil, nil, fmt.Errorf("policy %s: %w", p.Name, err)
		}
		if p.Name == run.Policy {
			target = &rp
			continue
		}
		others = append(others, rp)
		names = append(names, p.Name)
	}
	if target == nil {
		return retention.Policy{}, nil, nil, fmt.Errorf("policy %q is not among the run's policies", run.Policy)
	}
	target.InUse = map[string]retention.InUse{}
	for _, u := range run.InUse {
		in, ok := target.InUse[u.Repository]
		if !ok {
			in = retention.InUse{Digests: map[string]bool{}, Tags: map[string]bool{}}
			target.InUse[u.Repository] = in
		}
		if u.Digest != "" {
			in.Digests[u.Digest] = true
		}
		if u.Tag != "" {
			in.Tags[u.Tag] = true
		}
	}
	return *target, others, names, nil
}

func fill(sum *registryconfig.RetentionSummary, plan retention.Plan) {
	sum.PlanHash = plan.Hash
	sum.Repositories = int64(plan.Repositories)
	sum.Artifacts = int64(plan.Artifacts)
	sum.ArtifactsKept = int64(plan.KeptArtifacts)
	sum.ArtifactsToDelete = int64(plan.ArtifactsToDelete)
	sum.Tags = int64(plan.Tags)
	sum.TagsKept = int64(plan.KeptTags)
	sum.TagsToRemove = int64(plan.TagsToRemove)
	sum.ManifestsToDelete = int64(plan.ManifestsToDelete)
	sum.ReclaimableBytes = plan.ReclaimableBytes
	sum.CeilingExceeded = plan.CeilingExceeded
	sum.Sample = nil
	for _, a := range plan.Sample {
		sum.Sample = append(sum.Sample, registryconfig.RetentionStep{Action: string(a.Kind), Repository: a.Repository, Digest: a.Digest, Tags: a.Tags, Reason: a.Reason})
	}
}

type executor struct {
	driver storagedriver.StorageDriver
	target retention.Policy
	others []retention.Policy
	names  []string
	now    time.Time
	log    *slog.Logger
	sum    *registryconfig.RetentionSummary
	before func(string)
	policy string
}

func (e *executor) fail(format string, args ...any) {
	e.sum.Failed++
	if len(e.sum.Errors) < maxErrors {
		e.sum.Errors = append(e.sum.Errors, fmt.Sprintf(format, args...))
	}
}

// enforce carries out plan, repository by repository.
func (e *executor) enforce(ctx context.Context, plan retention.Plan) error {
	ns, err := dstorage.NewRegistry(ctx, e.driver, dstorage.EnableDelete)
	if err != nil {
		return fmt.Errorf("open registry storage: %w", err)
	}
	byRepo := map[string][]retention.Action{}
	var repos []string
	for _, a := range plan.Actions {
		if _, ok := byRepo[a.Repository]; !ok {
			repos = append(repos, a.Repository)
		}
		byRepo[a.Repository] = append(byRepo[a.Repository], a)
	}
	// Repositories whose journal an earlier run left but that have nothing left to do.
	for repo := range e.target.Unfinished {
		if _, ok := byRepo[repo]; !ok {
			if err := e.driver.Delete(ctx, journalPath(repo, e.policy)); err != nil && !isNotFound(err) {
				return fmt.Errorf("remove the journal of %s: %w", repo, err)
			}
		}
	}
	for _, repo := range repos {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := e.repository(ctx, ns, repo, byRepo[repo]); err != nil {
			return err
		}
	}
	return nil
}

// repository enforces the planned actions of one repository.
func (e *executor) repository(ctx context.Context, ns distribution.Namespace, name string, planned []retention.Action) error {
	if e.before != nil {
		e.before(name)
	}
	// Compare before delete: plan the repository again from what it holds now.
	fresh, err := inventory.ReadRepository(ctx, e.driver, name)
	if err != nil {
		e.fail("re-read %s: %v", name, err)
		return nil
	}
	again, err := retention.MakeAll(retention.Store{Repositories: []retention.Repository{fresh}}, e.target, e.others, e.names, e.now)
	if err != nil {
		return err
	}
	type key struct {
		kind   retention.ActionKind
		digest string
	}
	agreed := map[key]map[string]bool{}
	for _, a := range again.Actions {
		agreed[key{a.Kind, a.Digest}] = setOf(a.Tags)
	}
	manifests := map[string]retention.Manifest{}
	for _, m := range fresh.Manifests {
		manifests[m.Digest] = m
	}

	named, err := reference.WithName(name)
	if err != nil {
		return fmt.Errorf("repository %s: %w", name, err)
	}
	repo, err := ns.Repository(ctx, named)
	if err != nil {
		return fmt.Errorf("open repository %s: %w", name, err)
	}
	ms, err := repo.Manifests(ctx)
	if err != nil {
		return fmt.Errorf("open manifests of %s: %w", name, err)
	}
	tags := repo.Tags(ctx)

	// The journal first: what this run is about to delete in the repository.
	var deleting []string
	for _, a := range planned {
		if _, ok := agreed[key{retention.Delete, a.Digest}]; ok && a.Kind == retention.Delete {
			deleting = append(deleting, a.Digest)
		}
	}
	jp := journalPath(name, e.policy)
	if len(deleting) > 0 {
		if err := e.driver.PutContent(ctx, jp, []byte(strings.Join(deleting, "\n")+"\n")); err != nil {
			e.fail("write the journal of %s: %v", name, err)
			return nil
		}
	}
	failed := false
	for _, a := range planned {
		tagsAgreed, ok := agreed[key{a.Kind, a.Digest}]
		if !ok && a.Kind == retention.Delete {
			// Kept now, but its tags may still go.
			tagsAgreed, ok = agreed[key{retention.Untag, a.Digest}]
			if ok {
				e.sum.Skipped++
			}
		}
		if !ok {
			e.log.Info("Skipped: the repository changed after planning", "repository", name, "digest", a.Digest, "action", a.Kind)
			e.sum.Skipped++
			continue
		}
		d := digest.Digest(a.Digest)
		for _, t := range a.Tags {
			if !tagsAgreed[t] {
				e.sum.Skipped++
				continue
			}
			if !e.untag(ctx, tags, name, t, d) {
				failed = true
			}
		}
		if a.Kind != retention.Delete || !isKey(agreed, key{retention.Delete, a.Digest}) {
			continue
		}
		// A push of this manifest after planning (re-tagging it is one) rewrites its
		// revision link: then it stays. Everything younger than minAge is kept anyway.
		if fi, err := e.driver.Stat(ctx, layout.RevisionLinkPath(name, d)); err == nil && fi.ModTime().After(e.now.Add(-e.target.MinAge)) {
			e.log.Info("Skipped: the manifest was pushed again after planning", "repository", name, "digest", d)
			e.sum.Skipped++
			continue
		}
		if !e.deleteManifest(ctx, ms, name, d, manifests[a.Digest]) {
			failed = true
		}
	}
	if !failed {
		if err := e.driver.Delete(ctx, jp); err != nil && !isNotFound(err) {
			e.fail("remove the journal of %s: %v", name, err)
		}
	}
	return nil
}

func isKey[K comparable, V any](m map[K]V, k K) bool { _, ok := m[k]; return ok }

// untag removes tag t of repository name if it still names d.
func (e *executor) untag(ctx context.Context, tags distribution.TagService, name, t string, d digest.Digest) bool {
	desc, err := tags.Get(ctx, t)
	if err != nil {
		var unknown distribution.ErrTagUnknown
		if errors.As(err, &unknown) {
			return true // removed meanwhile
		}
		e.fail("read tag %s:%s: %v", name, t, err)
		return false
	}
	if desc.Digest != d {
		e.log.Info("Skipped: the tag moved after planning", "repository", name, "tag", t, "planned", d, "now", desc.Digest)
		e.sum.Skipped++
		return true
	}
	// Pushed again (to the same manifest) after planning: a new tag the plan never saw.
	link := path.Join(layout.RepositoryPath(name), "_manifests", "tags", t, "current", "link")
	if fi, err := e.driver.Stat(ctx, link); err == nil && fi.ModTime().After(e.now.Add(-e.target.MinAge)) {
		e.log.Info("Skipped: the tag was pushed again after planning", "repository", name, "tag", t)
		e.sum.Skipped++
		return true
	}
	if err := tags.Untag(ctx, t); err != nil {
		e.fail("remove tag %s:%s: %v", name, t, err)
		return false
	}
	e.log.Info("Removed tag", "repository", name, "tag", t, "digest", d)
	e.sum.TagsRemoved++
	return true
}

// deleteManifest deletes manifest d (and its other names) from repository name, with its
// pull marker and its referrers-index entry.
func (e *executor) deleteManifest(ctx context.Context, ms distribution.ManifestService, name string, d digest.Digest, m retention.Manifest) bool {
	if err := ms.Delete(ctx, d); err != nil {
		var unknown distribution.ErrManifestUnknownRevision
		if !errors.As(err, &unknown) && !isNotFound(err) {
			e.fail("delete %s@%s: %v", name, d, err)
			return false
		}
	}
	for _, alias := range m.Aliases {
		if err := e.driver.Delete(ctx, layout.RevisionLinkPath(name, digest.Digest(alias))); err != nil && !isNotFound(err) {
			e.fail("delete %s@%s: %v", name, alias, err)
			return false
		}
		_ = e.driver.Delete(ctx, layout.PulledPath(name, digest.Digest(alias)))
	}
	if err := e.driver.Delete(ctx, layout.PulledPath(name, d)); err != nil && !isNotFound(err) {
		e.log.Warn("Could not remove a pull marker", "repository", name, "digest", d, "err", err)
	}
	if m.Subject != "" {
		if err := (referrers.Index{Driver: e.driver}).Remove(ctx, name, digest.Digest(m.Subject), d); err != nil {
			e.log.Warn("Could not remove a referrers-index entry", "repository", name, "digest", d, "err", err)
		}
	}
	e.log.Info("Deleted manifest", "repository", name, "digest", d)
	e.sum.ManifestsDeleted++
	return true
}

func setOf(ss []string) map[string]bool {
	m := make(map[string]bool, len(ss))
	for _, s := range ss {
		m[s] = true
	}
	return m
}

// Journal paths: /dockyard/retention/<repo>/_journal/<policy>. The _journal segment cannot
// be a repository name component, so team-a's journal never mixes with team-a/app's.
const journalRoot = "/dockyard/retention"

func journalPath(repo, policy string) string {
	return path.Join(journalRoot, repo, "_journal", policy)
}

// readJournals returns, per repository, the manifests an interrupted run of policy was
// deleting.
func readJournals(ctx context.Context, driver storagedriver.StorageDriver, policy string) (map[string]map[string]bool, error) {
	out := map[string]map[string]bool{}
	err := driver.Walk(ctx, journalRoot, func(fi storagedriver.FileInfo) error {
		p := fi.Path()
		if fi.IsDir() || path.Base(p) != policy || path.Base(path.Dir(p)) != "_journal" {
			return nil
		}
		repo := strings.TrimPrefix(path.Dir(path.Dir(p)), journalRoot+"/")
		raw, err := driver.GetContent(ctx, p)
		if err != nil {
			if isNotFound(err) {
				return nil
			}
			return err
		}
		set := map[string]bool{}
		for _, line := range strings.Fields(string(raw)) {
			if d, err := digest.Parse(line); err == nil {
				set[d.String()] = true
			}
		}
		out[repo] = set
		return nil
	})
	if err != nil && !isNotFound(err) {
		return nil, fmt.Errorf("read retention journals: %w", err)
	}
	return out, nil
}

func isNotFound(err error) bool {
	var pnf storagedriver.PathNotFoundError
	return errors.As(err, &pnf)
}
