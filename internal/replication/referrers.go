package replication

import (
	"context"
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// mountable is a source image whose layers, when another destination repository has
// them, are offered to the destination for a cross-repository mount (the registry then
// links the blob instead of receiving it again; one that refuses gets an upload).
type mountable struct {
	v1.Image
	run  *run
	repo name.Repository
}

func (m *mountable) Layers() ([]v1.Layer, error) {
	ls, err := m.Image.Layers()
	if err != nil {
		return nil, err
	}
	out := make([]v1.Layer, len(ls))
	for i, l := range ls {
		out[i] = l
		d, err := l.Digest()
		if err != nil {
			continue
		}
		if other, ok := m.run.where.Load(d.String()); ok && other.(string) != m.repo.RepositoryStr() {
			out[i] = &remote.MountableLayer{Layer: l, Reference: m.repo.Registry.Repo(other.(string)).Digest(d.String())}
		}
	}
	return out, nil
}

// ConfigLayer keeps the source image's lazy config layer (the config is read from the
// source only when the destination lacks it).
func (m *mountable) ConfigLayer() (v1.Layer, error) {
	return partial.ConfigLayer(m.Image)
}

// remember records the destination repository now holding img's layers.
func (r *run) remember(img v1.Image, repo name.Repository) {
	ls, err := img.Layers()
	if err != nil {
		return
	}
	for _, l := range ls {
		if d, err := l.Digest(); err == nil {
			r.where.LoadOrStore(d.String(), repo.RepositoryStr())
		}
	}
}

// maxReferrerDepth bounds referrers of referrers (a signature of an SBOM of an image).
const maxReferrerDepth = 3

// copyReferrers copies the referrers of digest the destination lacks, and cosign's tags
// for them. It returns how many manifests it wrote.
func (r *run) copyReferrers(ctx context.Context, srcRepo, dstRepo name.Repository, digest string, depth int) (int, error) {
	if depth >= maxReferrerDepth {
		return 0, nil
	}
	n := 0
	idx, err := remote.Referrers(srcRepo.Digest(digest), r.srcOpt...)
	if err != nil && !notFound(err) {
		return 0, &EndpointError{Source, r.src.Host, fmt.Errorf("list referrers: %w", err)}
	}
	if idx != nil {
		im, err := idx.IndexManifest()
		if err != nil {
			return 0, &EndpointError{Source, r.src.Host, fmt.Errorf("read referrers: %w", err)}
		}
		for _, d := range im.Manifests {
			w, err := r.copyIfMissing(ctx, srcRepo, dstRepo, d.Digest.String())
			if err != nil {
				return n, err
			}
			n += w
			m, err := r.copyReferrers(ctx, srcRepo, dstRepo, d.Digest.String(), depth+1)
			if err != nil {
				return n, err
			}
			n += m
		}
	}
	for _, t := range referrerTagsOf(digest) {
		sd, err := remote.Head(srcRepo.Tag(t), r.srcOpt...)
		if notFound(err) {
			continue
		}
		if err != nil {
			return n, &EndpointError{Source, r.src.Host, fmt.Errorf("resolve tag %s: %w", t, err)}
		}
		dd, err := remote.Head(dstRepo.Tag(t), r.dstOpt...)
		if err == nil && dd.Digest == sd.Digest {
			continue
		}
		if err != nil && !notFound(err) {
			return n, &EndpointError{Destination, r.dst.Host, fmt.Errorf("resolve tag %s: %w", t, err)}
		}
		desc, err := r.copyManifest(ctx, srcRepo, dstRepo, sd.Digest.String())
		if err != nil {
			return n, err
		}
		if err := remote.Tag(dstRepo.Tag(t), desc, r.dstOpt...); err != nil {
			return n, &EndpointError{Destination, r.dst.Host, fmt.Errorf("tag %s: %w", t, err)}
		}
		n++
	}
	return n, nil
}

// copyIfMissing copies a manifest by digest when the destination lacks it.
func (r *run) copyIfMissing(ctx context.Context, srcRepo, dstRepo name.Repository, digest string) (int, error) {
	if _, err := remote.Head(dstRepo.Digest(digest), r.dstOpt...); err == nil {
		return 0, nil
	} else if !notFound(err) {
		return 0, &EndpointError{Destination, r.dst.Host, fmt.Errorf("check manifest: %w", err)}
	}
	if _, err := r.copyManifest(ctx, srcRepo, dstRepo, digest); err != nil {
		return 0, err
	}
	return 1, nil
}
