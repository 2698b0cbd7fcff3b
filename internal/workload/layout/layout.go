// Package layout names the storage paths that the registry workload and the garbage
// collector share: distribution's own storage layout (which is stable on disk and in
// buckets, but not exported by distribution) and Dockyard's additions under /dockyard.
package layout

import (
	// sha512 digests (OCI 1.1) validate only when the hash is linked in.
	_ "crypto/sha512"
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

// LayerLinkPath is the link that makes blob d part of repository name.
func LayerLinkPath(name string, d digest.Digest) string {
	return path.Join(LayersPath(name), d.Algorithm().String(), d.Encoded(), "link")
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

// PulledRoot holds, per repository, one marker per manifest digest recording when it was
// last pulled (written at most about once an hour per digest and replica); retention's
// pulledWithin reads them.
const PulledRoot = dockyardRoot + "/pulled"

// PulledRepositoryPath holds the pull markers of one repository. The last segment, _pulled,
// cannot be a repository name component (they never start with '_'), so the markers of
// team-a never mix with those of team-a/app.
func PulledRepositoryPath(name string) string { return path.Join(PulledRoot, name, "_pulled") }

// PulledPath is the pull marker of manifest d in repository name.
func PulledPath(name string, d digest.Digest) string {
	return path.Join(PulledRepositoryPath(name), d.Algorithm().String(), d.Encoded())
}

// DigestFromPulledPath parses `.../<alg>/<hex>` under a repository's pull markers.
func DigestFromPulledPath(p string) (digest.Digest, bool) {
	parts := strings.Split(p, "/")
	if len(parts) < 2 {
		return "", false
	}
	d := digest.NewDigestFromEncoded(digest.Algorithm(parts[len(parts)-2]), parts[len(parts)-1])
	return d, d.Validate() == nil
}

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

// ReferrersRoot holds the referrers index: one small file per (repository, subject,
// referrer) holding the referrer's descriptor, at
// `<root>/<repository>/_subjects/<alg>/<hex>/<alg>-<hex>`. Repository path components never
// start with `_`, so `_subjects` cannot be part of a repository name.
const ReferrersRoot = dockyardRoot + "/referrers"

// ReferrersDir holds the index entries of the referrers of subject in repository name.
func ReferrersDir(name string, subject digest.Digest) string {
	return path.Join(ReferrersRoot, name, "_subjects", subject.Algorithm().String(), subject.Encoded())
}

// ReferrerPath is the index entry saying that referrer refers to subject in name.
func ReferrerPath(name string, subject, referrer digest.Digest) string {
	return path.Join(ReferrersDir(name, subject), referrer.Algorithm().String()+"-"+referrer.Encoded())
}

// ParseReferrerPath splits an index entry's path; ok is false for anything else.
func ParseReferrerPath(p string) (name string, subject, referrer digest.Digest, ok bool) {
	rest, found := strings.CutPrefix(p, ReferrersRoot+"/")
	if !found {
		return "", "", "", false
	}
	i := strings.LastIndex(rest, "/_subjects/")
	if i <= 0 {
		return "", "", "", false
	}
	name, rest = rest[:i], rest[i+len("/_subjects/"):]
	parts := strings.Split(rest, "/")
	if len(parts) != 3 {
		return "", "", "", false
	}
	subject = digest.NewDigestFromEncoded(digest.Algorithm(parts[0]), parts[1])
	alg, hex, found := strings.Cut(parts[2], "-")
	if !found {
		return "", "", "", false
	}
	referrer = digest.NewDigestFromEncoded(digest.Algorithm(alg), hex)
	if subject.Validate() != nil || referrer.Validate() != nil {
		return "", "", "", false
	}
	return name, subject, referrer, true
}
