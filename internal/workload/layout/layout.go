// Package layout names the storage paths that the registry workload and the garbage
// collector share: distribution's own storage layout (which is stable on disk and in
// buckets, but not exported by distribution) and Dockyard's additions under /dockyard.
package layout

import (
	"path"
	"strings"

	"github.com/opencontainers/go-digest"
)

// Distribution's layout (registry/storage/paths.go in distribution).
const (
	root = "/docker/registry/v2"
	// RepositoriesRoot holds one directory per repository.
	RepositoriesRoot = root + "/repositories"
	// BlobsRoot holds the content-addressed blob store.
	BlobsRoot = root + "/blobs"
)

// BlobDir is the directory of one blob; its content is in BlobDataPath.
func BlobDir(d digest.Digest) string {
	hex := d.Encoded()
	return path.Join(BlobsRoot, d.Algorithm().String(), hex[:2], hex)
}

// BlobDataPath is where the bytes of a blob live.
func BlobDataPath(d digest.Digest) string { return path.Join(BlobDir(d), "data") }

// RepositoryPath is the directory of one repository.
func RepositoryPath(name string) string { return path.Join(RepositoriesRoot, name) }

// LayersPath holds the repository's blob links (`<alg>/<hex>/link`).
func LayersPath(name string) string { return path.Join(RepositoryPath(name), "_layers") }

// RevisionsPath holds the repository's manifest revision links (`<alg>/<hex>/link`).
func RevisionsPath(name string) string {
	return path.Join(RepositoryPath(name), "_manifests", "revisions")
}

// RevisionLinkPath is the link that makes manifest d part of repository name.
func RevisionLinkPath(name string, d digest.Digest) string {
	return path.Join(RevisionsPath(name), d.Algorithm().String(), d.Encoded(), "link")
}

// DigestFromLinkPath parses `.../<alg>/<hex>/link`; ok is false for anything else.
func DigestFromLinkPath(p string) (digest.Digest, bool) {
	parts := strings.Split(p, "/")
	if len(parts) < 3 || parts[len(parts)-1] != "link" {
		return "", false
	}
	d := digest.NewDigestFromEncoded(digest.Algorithm(parts[len(parts)-3]), parts[len(parts)-2])
	return d, d.Validate() == nil
}

// Dockyard's additions.
const (
	dockyardRoot = "/dockyard"
	// TouchRoot holds one marker per blob or manifest digest that a push recently said it
	// needs. The registry rewrites the marker before answering a request that lets a client
	// rely on the blob (existence check, mount, upload commit, manifest push); the garbage
	// collector never deletes a blob whose marker is younger than the grace period.
	TouchRoot = dockyardRoot + "/touch"
	// QuarantineRoot is where the garbage collector moves a blob before its final check, so
	// that a concurrent push either is seen by that check or finds the blob missing.
	QuarantineRoot = dockyardRoot + "/quarantine"
)

// TouchPath is the marker of digest d.
func TouchPath(d digest.Digest) string {
	hex := d.Encoded()
	return path.Join(TouchRoot, d.Algorithm().String(), hex[:2], hex)
}

// QuarantinePath is where a run moves blob d.
func QuarantinePath(d digest.Digest) string {
	return path.Join(QuarantineRoot, d.Algorithm().String(), d.Encoded())
}

// DigestFromTouchOrQuarantinePath parses the last two elements `<alg>/<hex>` or
// `<alg>/<xx>/<hex>`.
func DigestFromTouchOrQuarantinePath(p string) (digest.Digest, bool) {
	parts := strings.Split(p, "/")
	if len(parts) < 2 {
		return "", false
	}
	hex := parts[len(parts)-1]
	for _, alg := range parts[len(parts)-3:] {
		d := digest.NewDigestFromEncoded(digest.Algorithm(alg), hex)
		if d.Validate() == nil {
			return d, true
		}
	}
	return "", false
}
