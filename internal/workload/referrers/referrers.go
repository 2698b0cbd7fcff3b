// Package referrers is Dockyard's OCI 1.1 referrers index: which manifests in a repository
// name a given subject digest. The registry writes an entry when it accepts a manifest with
// a `subject`; GET /v2/<name>/referrers/<digest> reads them; garbage collection removes
// entries of manifests that are gone and re-adds entries it finds missing. It is the one
// index signatures, SBOMs and scan reports are found through.
//
// An entry is a small file in registry storage (layout.ReferrerPath) holding the referrer's
// descriptor. Entries are only ever trusted together with the repository's manifest
// revision link: a listing skips entries whose manifest is no longer in the repository, so
// a manifest delete is reflected at once even before its entry is cleaned up.
package referrers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"sort"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/dockyard-dev/dockyard/internal/workload/layout"
)

// MaxEntryBytes bounds an index entry (a descriptor with its annotations).
const MaxEntryBytes = 64 << 10

// Index reads and writes the referrers index in registry storage.
type Index struct {
	Driver storagedriver.StorageDriver
}

// manifestFields are the parts of a manifest or index the referrers API reports.
type manifestFields struct {
	MediaType    string            `json:"mediaType"`
	ArtifactType string            `json:"artifactType"`
	Config       *v1.Descriptor    `json:"config"`
	Subject      *v1.Descriptor    `json:"subject"`
	Annotations  map[string]string `json:"annotations"`
}

// Describe returns a manifest's subject and the descriptor its referrers entry lists:
// digest and size of the payload, its media type (from the manifest, else contentType), its
// artifactType (the manifest's, else an image manifest's config media type, as the
// distribution spec says) and its annotations. ok is false when the manifest has no
// subject or is not JSON.
func Describe(payload []byte, contentType string, d digest.Digest) (subject digest.Digest, desc v1.Descriptor, ok bool) {
	var m manifestFields
	if json.Unmarshal(payload, &m) != nil || m.Subject == nil || m.Subject.Digest.Validate() != nil {
		return "", v1.Descriptor{}, false
	}
	desc = v1.Descriptor{
		MediaType:    m.MediaType,
		Digest:       d,
		Size:         int64(len(payload)),
		ArtifactType: m.ArtifactType,
		Annotations:  m.Annotations,
	}
	if desc.MediaType == "" {
		desc.MediaType = contentType
	}
	if desc.ArtifactType == "" && m.Config != nil && desc.MediaType == v1.MediaTypeImageManifest {
		desc.ArtifactType = m.Config.MediaType
	}
	return m.Subject.Digest, desc, true
}

// Add records that desc (a manifest in repository name) refers to subject.
func (ix Index) Add(ctx context.Context, name string, subject digest.Digest, desc v1.Descriptor) error {
	b, err := json.Marshal(desc)
	if err != nil {
		return fmt.Errorf("encode referrer %s: %w", desc.Digest, err)
	}
	if len(b) > MaxEntryBytes {
		// Keep the entry useful without letting annotations grow the index unboundedly.
		desc.Annotations = nil
		if b, err = json.Marshal(desc); err != nil {
			return fmt.Errorf("encode referrer %s: %w", desc.Digest, err)
		}
	}
	if err := ix.Driver.PutContent(ctx, layout.ReferrerPath(name, subject, desc.Digest), b); err != nil {
		return fmt.Errorf("record referrer %s of %s in %s: %w", desc.Digest, subject, name, err)
	}
	return nil
}

// Remove deletes an entry; a missing entry is not an error.
func (ix Index) Remove(ctx context.Context, name string, subject, referrer digest.Digest) error {
	err := ix.Driver.Delete(ctx, layout.ReferrerPath(name, subject, referrer))
	if err != nil && !isNotFound(err) {
		return fmt.Errorf("remove referrer %s of %s in %s: %w", referrer, subject, name, err)
	}
	return nil
}

// List returns the referrers of subject in repository name whose manifests still exist
// there, sorted by digest. artifactType, when not empty, keeps only that artifact type.
func (ix Index) List(ctx context.Context, name string, subject digest.Digest, artifactType string) ([]v1.Descriptor, error) {
	dir := layout.ReferrersDir(name, subject)
	entries, err := ix.Driver.List(ctx, dir)
	if err != nil {
		if isNotFound(err) {
			return []v1.Descriptor{}, nil
		}
		return nil, fmt.Errorf("list referrers of %s in %s: %w", subject, name, err)
	}
	out := []v1.Descriptor{}
	for _, p := range entries {
		_, _, referrer, ok := layout.ParseReferrerPath(p)
		if !ok {
			continue // a temporary file of the driver, or debris
		}
		b, err := ix.Driver.GetContent(ctx, path.Join(dir, path.Base(p)))
		if err != nil {
			if isNotFound(err) {
				continue
			}
			return nil, fmt.Errorf("read referrer %s of %s in %s: %w", referrer, subject, name, err)
		}
		var desc v1.Descriptor
		if len(b) > MaxEntryBytes || json.Unmarshal(b, &desc) != nil || desc.Digest != referrer {
			continue
		}
		if artifactType != "" && desc.ArtifactType != artifactType {
			continue
		}
		exists, err := ix.manifestExists(ctx, name, referrer)
		if err != nil {
			return nil, err
		}
		if exists {
			out = append(out, desc)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Digest < out[j].Digest })
	return out, nil
}

func (ix Index) manifestExists(ctx context.Context, name string, d digest.Digest) (bool, error) {
	_, err := ix.Driver.Stat(ctx, layout.RevisionLinkPath(name, d))
	switch {
	case err == nil:
		return true, nil
	case isNotFound(err):
		return false, nil
	}
	return false, fmt.Errorf("stat manifest %s in %s: %w", d, name, err)
}

// Entry is one index entry as Walk finds it.
type Entry struct {
	Name     string
	Subject  digest.Digest
	Referrer digest.Digest
	Path     string
	FileInfo storagedriver.FileInfo
}

// Walk calls fn for every entry in the index.
func (ix Index) Walk(ctx context.Context, fn func(Entry) error) error {
	err := ix.Driver.Walk(ctx, layout.ReferrersRoot, func(fi storagedriver.FileInfo) error {
		if fi.IsDir() {
			return nil
		}
		name, subject, referrer, ok := layout.ParseReferrerPath(fi.Path())
		if !ok {
			return nil
		}
		return fn(Entry{Name: name, Subject: subject, Referrer: referrer, Path: fi.Path(), FileInfo: fi})
	})
	if err != nil && !isNotFound(err) {
		return fmt.Errorf("walk referrers index: %w", err)
	}
	return nil
}

func isNotFound(err error) bool {
	var nf storagedriver.PathNotFoundError
	return errors.As(err, &nf)
}
