package server

import (
	"context"
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
	"github.com/dockyard-dev/dockyard/internal/workload/inventory"
	"github.com/dockyard-dev/dockyard/internal/workload/layout"
	"github.com/dockyard-dev/dockyard/internal/workload/route"
)

// immutableTags enforces the config's immutableTags: a manifest push that would move an
// existing immutable tag to another digest, the deletion of such a tag, and the deletion of
// a manifest or blob such a tag needs (under any digest name) are refused with 403 DENIED
// naming the rule, whatever the client's role. Re-pushing the same manifest to the tag is allowed (idempotent).
// Requests the client is not allowed to make anyway pass through, so distribution answers
// them as usual (no 403 tells an unauthorized client that a tag exists).
type immutableTags struct {
	rules  []registryconfig.ImmutableTagRule
	ns     distribution.Namespace
	driver storagedriver.StorageDriver
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
		if !ok || (rt.Kind != route.Manifest && rt.Kind != route.Blob) || (r.Method != http.MethodPut && r.Method != http.MethodDelete) ||
			(rt.Kind == route.Blob && r.Method != http.MethodDelete) {
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
	if rt.Kind == route.Blob {
		// A blob an immutable tag's image needs (its config and layers, its platforms').
		d, err := digest.Parse(rt.Digest)
		if err != nil {
			return "", nil //nolint:nilerr // distribution refuses a malformed digest itself
		}
		if d, err = inventory.LinkTarget(ctx, m.driver, layout.LayerLinkPath(rt.Name, d), d); err != nil {
			return "", err
		}
		prot, err := m.protected(ctx, repo, rt.Name)
		if err != nil {
			return "", err
		}
		if p, ok := prot[d]; ok {
			return fmt.Sprintf("blob %s of %s is part of the immutable tag %s (immutableTags[%d]) and cannot be deleted", d, rt.Name, p.tag, p.rule), nil
		}
		return "", nil
	}
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
		// A sha512 name is a link to the sha256 content: protect the content, whatever it
		// is called.
		target, err := inventory.AliasTarget(ctx, m.driver, rt.Name, dgst)
		if err != nil {
			return "", err
		}
		prot, err := m.protected(ctx, repo, rt.Name)
		if err != nil {
			return "", err
		}
		if p, ok := prot[target]; ok {
			return fmt.Sprintf("manifest %s of %s is part of the immutable tag %s (immutableTags[%d]) and cannot be deleted", dgst, rt.Name, p.tag, p.rule), nil
		}
		return "", nil
	}
}

// protection names the immutable tag (and its rule) that needs a digest.
type protection struct {
	tag  string
	rule int
}

// protected returns what the immutable tags of a repository need: the manifests they name,
// the manifests those list (an index's platforms, to a depth of three), and every blob of
// those. It reads the manifests, so it runs only for deletes, which are rare.
func (m *immutableTags) protected(ctx context.Context, repo distribution.Repository, name string) (map[digest.Digest]protection, error) {
	out := map[digest.Digest]protection{}
	tags := repo.Tags(ctx)
	all, err := tags.All(ctx)
	if err != nil {
		var unknown distribution.ErrRepositoryUnknown
		if errors.As(err, &unknown) || storageNotFound(err) {
			return out, nil
		}
		return nil, fmt.Errorf("list tags: %w", err)
	}
	ms, err := repo.Manifests(ctx)
	if err != nil {
		return nil, err
	}
	var walk func(d digest.Digest, p protection, depth int) error
	walk = func(d digest.Digest, p protection, depth int) error {
		if _, seen := out[d]; seen || depth > 3 {
			return nil
		}
		out[d] = p
		man, err := ms.Get(ctx, d)
		if err != nil {
			var unknown distribution.ErrManifestUnknownRevision
			if errors.As(err, &unknown) || errors.Is(err, distribution.ErrBlobUnknown) || storageNotFound(err) {
				return nil
			}
			return fmt.Errorf("read manifest %s: %w", d, err)
		}
		_, payload, err := man.Payload()
		if err != nil {
			return err
		}
		parsed, err := inventory.ParseManifest(d, payload)
		if err != nil {
			return nil //nolint:nilerr // not a manifest we understand: its own digest is protected
		}
		for _, b := range parsed.Blobs {
			if bd, err := digest.Parse(b.Digest); err == nil {
				if _, seen := out[bd]; !seen {
					out[bd] = p
				}
			}
		}
		for _, c := range parsed.Children {
			if cd, err := digest.Parse(c); err == nil {
				if err := walk(cd, p, depth+1); err != nil {
					return err
				}
			}
		}
		return nil
	}
	for _, t := range all {
		i := m.rule(name, t)
		if i < 0 {
			continue
		}
		desc, err := tags.Get(ctx, t)
		if err != nil {
			var unknown distribution.ErrTagUnknown
			if errors.As(err, &unknown) || storageNotFound(err) {
				continue
			}
			return nil, fmt.Errorf("read tag %s: %w", t, err)
		}
		if err := walk(desc.Digest, protection{tag: t, rule: i}, 0); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func storageNotFound(err error) bool {
	var nf storagedriver.PathNotFoundError
	return errors.As(err, &nf)
}
