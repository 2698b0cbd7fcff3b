package server

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path"

	"github.com/distribution/distribution/v3"
	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"

	"github.com/dockyard-dev/dockyard/internal/registryconfig"
	"github.com/dockyard-dev/dockyard/internal/workload/access"
	"github.com/dockyard-dev/dockyard/internal/workload/route"
)

// immutableTags enforces the config's immutableTags: a manifest push that would move an
// existing immutable tag to another digest, the deletion of such a tag, and the deletion of
// a manifest an immutable tag names are refused with 403 DENIED naming the rule, whatever
// the client's role. Re-pushing the same manifest to the tag is allowed (idempotent).
// Requests the client is not allowed to make anyway pass through, so distribution answers
// them as usual (no 403 tells an unauthorized client that a tag exists).
type immutableTags struct {
	rules []registryconfig.ImmutableTagRule
	ns    distribution.Namespace
	// can reports whether the request may perform action on repo; nil means no auth.
	can func(r *http.Request, repo, action string) bool
	log *slog.Logger
}

// rule returns the index of the first rule making tag of repo immutable, or -1.
func (m *immutableTags) rule(repo, tag string) int {
	for i, r := range m.rules {
		for _, p := range r.Repositories {
			if !access.MatchRepository(p, repo) {
				continue
			}
			for _, t := range r.Tags {
				if ok, _ := path.Match(t, tag); ok {
					return i
				}
			}
		}
	}
	return -1
}

func (m *immutableTags) middleware(next http.Handler) http.Handler {
	if len(m.rules) == 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rt, ok := route.Of(r)
		if !ok || rt.Kind != route.Manifest || (r.Method != http.MethodPut && r.Method != http.MethodDelete) {
			next.ServeHTTP(w, r)
			return
		}
		action := access.ActionPush
		if r.Method == http.MethodDelete {
			action = access.ActionDelete
		}
		if m.can != nil && !m.can(r, rt.Name, action) {
			next.ServeHTTP(w, r)
			return
		}
		msg, err := m.refusal(r, rt, action)
		if err != nil {
			m.log.Error("Check immutable tags", "repository", rt.Name, "reference", rt.Reference, "err", err)
			writeOCIError(w, http.StatusServiceUnavailable, "UNAVAILABLE", "storage is unavailable, retry")
			return
		}
		if msg != "" {
			writeOCIError(w, http.StatusForbidden, "DENIED", msg)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// refusal returns why the request must be refused ("" when it may go on).
func (m *immutableTags) refusal(r *http.Request, rt route.Route, action string) (string, error) {
	ctx := r.Context()
	named, nameErr := reference.WithName(rt.Name)
	if nameErr != nil {
		return "", nil //nolint:nilerr // an invalid name: distribution refuses the request itself
	}
	repo, err := m.ns.Repository(ctx, named)
	if err != nil {
		return "", fmt.Errorf("open repository %s: %w", rt.Name, err)
	}
	tags := repo.Tags(ctx)
	dgst, refErr := digest.Parse(rt.Reference)
	isTag := refErr != nil
	switch {
	case isTag && action == access.ActionPush:
		i := m.rule(rt.Name, rt.Reference)
		if i < 0 {
			return "", nil
		}
		cur, err := tags.Get(ctx, rt.Reference)
		var unknown distribution.ErrTagUnknown
		if errors.As(err, &unknown) || storageNotFound(err) {
			return "", nil // a new tag: it becomes immutable once pushed
		}
		if err != nil {
			return "", err
		}
		body, err := bufferBody(r, maxManifestBytes)
		if err != nil || body == nil {
			return "", err // too large: distribution refuses it
		}
		if pushed := digest.FromBytes(body); pushed == cur.Digest {
			return "", nil // the same manifest again
		}
		return fmt.Sprintf("tag %s of %s is immutable (immutableTags[%d]): it names %s and cannot be moved; push a new tag", rt.Reference, rt.Name, i, cur.Digest), nil
	case isTag:
		if i := m.rule(rt.Name, rt.Reference); i >= 0 {
			return fmt.Sprintf("tag %s of %s is immutable (immutableTags[%d]) and cannot be deleted", rt.Reference, rt.Name, i), nil
		}
		return "", nil
	default:
		if action != access.ActionDelete {
			return "", nil
		}
		names, err := tags.Lookup(ctx, distribution.Descriptor{Digest: dgst})
		if err != nil && !storageNotFound(err) {
			return "", err
		}
		for _, t := range names {
			if i := m.rule(rt.Name, t); i >= 0 {
				return fmt.Sprintf("manifest %s of %s is named by the immutable tag %s (immutableTags[%d]) and cannot be deleted", dgst, rt.Name, t, i), nil
			}
		}
		return "", nil
	}
}

func storageNotFound(err error) bool {
	var nf storagedriver.PathNotFoundError
	return errors.As(err, &nf)
}
