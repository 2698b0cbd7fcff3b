package scan

import (
	"bytes"
	"cmp"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The report artifact: an OCI image manifest whose subject is the scanned manifest.
const (
	// ArtifactType of a report's manifest.
	ArtifactType = "application/vnd.dockyard.vulnerability-report.v1"
	// ReportMediaType of the report blob (a Report as JSON).
	ReportMediaType = "application/vnd.dockyard.vulnerability-report.v1+json"
	// Annotations on the report's manifest, so `oras discover` shows the summary without
	// fetching the report.
	AnnotationCreated  = "org.opencontainers.image.created"
	AnnotationScanner  = "dev.dockyard.scan.scanner"
	AnnotationCritical = "dev.dockyard.scan.critical"
	AnnotationHigh     = "dev.dockyard.scan.high"
	AnnotationMedium   = "dev.dockyard.scan.medium"
	AnnotationLow      = "dev.dockyard.scan.low"
	AnnotationUnknown  = "dev.dockyard.scan.unknown"
	AnnotationFixable  = "dev.dockyard.scan.fixable"
	// AnnotationReportDigest and AnnotationSignature: the scanner's ed25519 signature
	// over the image, the report and its date; readers trust only reports it signed.
	AnnotationReportDigest = "dev.dockyard.scan.report-digest"
	AnnotationSignature    = "dev.dockyard.scan.signature"
)

const emptyJSONMediaType types.MediaType = "application/vnd.oci.empty.v1+json"

// manifest is an OCI image manifest with the artifact fields ggcr's v1.Manifest lacks.
type manifest struct {
	SchemaVersion int               `json:"schemaVersion"`
	MediaType     types.MediaType   `json:"mediaType"`
	ArtifactType  string            `json:"artifactType"`
	Config        v1.Descriptor     `json:"config"`
	Layers        []v1.Descriptor   `json:"layers"`
	Subject       *v1.Descriptor    `json:"subject,omitempty"`
	Annotations   map[string]string `json:"annotations,omitempty"`
}

// rawManifest is what remote.Put writes.
type rawManifest struct{ data []byte }

func (r rawManifest) RawManifest() ([]byte, error)        { return r.data, nil }
func (r rawManifest) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }

// Attach stores r in repo as a referrer of subject (the scanned manifest's descriptor),
// signed with key, and returns the report manifest's digest.
func Attach(repo name.Repository, subject v1.Descriptor, r *Report, key ed25519.PrivateKey, opts ...remote.Option) (v1.Hash, error) {
	if r.Subject != subject.Digest.String() {
		return v1.Hash{}, fmt.Errorf("the report is of %s, not %s", r.Subject, subject.Digest)
	}
	if len(key) != ed25519.PrivateKeySize {
		return v1.Hash{}, errors.New("no key to sign the report with")
	}
	body, err := json.Marshal(r)
	if err != nil {
		return v1.Hash{}, err
	}
	if len(body) > MaxStoredReportBytes {
		return v1.Hash{}, fmt.Errorf("the report is %d bytes, more than the %d a stored report may be", len(body), MaxStoredReportBytes)
	}
	cfg := static.NewLayer([]byte("{}"), emptyJSONMediaType)
	layer := static.NewLayer(body, ReportMediaType)
	for _, l := range []v1.Layer{cfg, layer} {
		if err := remote.WriteLayer(repo, l, opts...); err != nil {
			return v1.Hash{}, fmt.Errorf("upload the report: %w", err)
		}
	}
	cd := v1.Descriptor{MediaType: emptyJSONMediaType, Digest: mustDigest(cfg), Size: 2, Data: []byte("{}")}
	ld := v1.Descriptor{MediaType: ReportMediaType, Digest: mustDigest(layer), Size: int64(len(body))}
	sum := r.Summary()
	created := r.ScannedAt.UTC().Format(time.RFC3339)
	subj := v1.Descriptor{MediaType: subject.MediaType, Digest: subject.Digest, Size: subject.Size}
	m := manifest{SchemaVersion: 2, MediaType: types.OCIManifestSchema1, ArtifactType: ArtifactType, Config: cd,
		Layers: []v1.Descriptor{ld}, Subject: &subj, Annotations: map[string]string{
			AnnotationCreated:      created,
			AnnotationScanner:      r.Scanner.Name + " " + r.Scanner.Version,
			AnnotationCritical:     strconv.Itoa(sum.Critical),
			AnnotationHigh:         strconv.Itoa(sum.High),
			AnnotationMedium:       strconv.Itoa(sum.Medium),
			AnnotationLow:          strconv.Itoa(sum.Low),
			AnnotationUnknown:      strconv.Itoa(sum.Unknown),
			AnnotationFixable:      strconv.Itoa(sum.Fixable),
			AnnotationReportDigest: ld.Digest.String(),
			AnnotationSignature:    base64.StdEncoding.EncodeToString(ed25519.Sign(key, signedPayload(subject.Digest.String(), ld.Digest.String(), created))),
		}}
	data, err := json.Marshal(m)
	if err != nil {
		return v1.Hash{}, err
	}
	h, _, err := v1.SHA256(bytes.NewReader(data))
	if err != nil {
		return v1.Hash{}, err
	}
	if err := remote.Put(repo.Digest(h.String()), rawManifest{data}, opts...); err != nil {
		return v1.Hash{}, fmt.Errorf("store the report: %w", err)
	}
	return h, nil
}

func mustDigest(l v1.Layer) v1.Hash {
	h, err := l.Digest()
	if err != nil {
		panic(err) // static layers hash in memory
	}
	return h
}

// signedPayload is what a report's signature covers: the image, the report's bytes (by
// digest) and its date, so a signature cannot be moved to another image, another
// report or another date.
func signedPayload(subject, report, created string) []byte {
	return []byte("dockyard.dev/vulnerability-report/v1\nsubject=" + subject + "\nreport=" + report + "\ncreated=" + created + "\n")
}

// verify checks a report manifest's annotations against subject and keys and returns its
// creation time.
func verify(subject string, ann map[string]string, keys []ed25519.PublicKey, now time.Time) (time.Time, error) {
	created, err := time.Parse(time.RFC3339, ann[AnnotationCreated])
	if err != nil {
		return time.Time{}, errors.New("no valid creation time")
	}
	if created.After(now.Add(maxClockSkew)) {
		return time.Time{}, fmt.Errorf("created in the future (%s)", ann[AnnotationCreated])
	}
	sig, err := base64.StdEncoding.DecodeString(ann[AnnotationSignature])
	if err != nil || len(sig) != ed25519.SignatureSize {
		return time.Time{}, errors.New("not signed")
	}
	payload := signedPayload(subject, ann[AnnotationReportDigest], ann[AnnotationCreated])
	for _, k := range keys {
		if ed25519.Verify(k, payload, sig) {
			return created, nil
		}
	}
	return time.Time{}, errors.New("signed by no trusted scanner key")
}

// maxClockSkew is how far in the future a report's date may be.
const maxClockSkew = 5 * time.Minute

// ErrNoReport is returned by Latest when the manifest has no report.
var ErrNoReport = errors.New("no vulnerability report")

// Stored is a report found in the registry.
type Stored struct {
	// Manifest is the report manifest's digest.
	Manifest v1.Hash
	// Created is its creation time (from its signed annotation).
	Created time.Time
	Report  *Report
}

// Reports lists the report manifests referring to subject that one of keys signed, newest
// first, without fetching the reports. Anything else with the report's artifact type
// (pushed by someone who is not the scanner) is ignored.
func Reports(subject name.Digest, keys []ed25519.PublicKey, opts ...remote.Option) ([]Stored, error) {
	if len(keys) == 0 {
		return nil, errors.New("no scanner key to check reports with")
	}
	idx, err := remote.Referrers(subject, append(opts, remote.WithFilter("artifactType", ArtifactType))...)
	if err != nil {
		return nil, fmt.Errorf("list the referrers of %s: %w", subject, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	var out []Stored
	for _, d := range im.Manifests {
		// The registry may not filter (OCI-Filters-Applied): filter here too.
		if d.ArtifactType != ArtifactType {
			continue
		}
		created, err := verify(subject.DigestStr(), d.Annotations, keys, now)
		if err != nil {
			continue
		}
		out = append(out, Stored{Manifest: d.Digest, Created: created})
	}
	sortStored(out)
	return out, nil
}

// sortStored orders newest first; ties by digest, so every reader picks the same one.
func sortStored(s []Stored) {
	slices.SortFunc(s, func(a, b Stored) int {
		return cmp.Or(b.Created.Compare(a.Created), cmp.Compare(a.Manifest.String(), b.Manifest.String()))
	})
}

// Latest fetches the newest signed report of subject that reads back whole; ErrNoReport
// when there is none.
func Latest(subject name.Digest, keys []ed25519.PublicKey, opts ...remote.Option) (*Stored, error) {
	list, err := Reports(subject, keys, opts...)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, st := range list {
		r, err := Fetch(subject, st.Manifest, keys, opts...)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		st.Report = r
		return &st, nil
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%w that reads back (%w): %w", ErrNoReport, ErrUnreadable, errors.Join(errs...))
	}
	return nil, ErrNoReport
}

// ErrUnreadable marks (besides ErrNoReport) an image whose signed reports are listed but
// none of them could be read: a scanner rescans it, a gate must not take it for unscanned.
var ErrUnreadable = errors.New("listed reports could not be read")

// Prune deletes the report manifests of subject other than keep (older scans; anything
// unsigned wearing the report's type), so the list read on every check stays short.
func Prune(subject name.Digest, keep v1.Hash, opts ...remote.Option) error {
	idx, err := remote.Referrers(subject, append(opts, remote.WithFilter("artifactType", ArtifactType))...)
	if err != nil {
		return err
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return err
	}
	var errs []error
	for _, d := range im.Manifests {
		if d.ArtifactType != ArtifactType || d.Digest == keep {
			continue
		}
		if err := remote.Delete(subject.Context().Digest(d.Digest.String()), opts...); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Fetch reads and checks the report stored under manifest h for subject: the manifest's
// own signature, its shape, and the report's bytes against the signed digest.
func Fetch(subject name.Digest, h v1.Hash, keys []ed25519.PublicKey, opts ...remote.Option) (*Report, error) {
	repo := subject.Context()
	desc, err := remote.Get(repo.Digest(h.String()), opts...)
	if err != nil {
		return nil, fmt.Errorf("fetch report %s: %w", h, err)
	}
	var m manifest
	if err := json.Unmarshal(desc.Manifest, &m); err != nil {
		return nil, fmt.Errorf("report %s: %w", h, err)
	}
	if m.ArtifactType != ArtifactType || len(m.Layers) != 1 || m.Layers[0].MediaType != ReportMediaType ||
		m.Subject == nil || m.Subject.Digest.String() != subject.DigestStr() {
		return nil, fmt.Errorf("report %s is not a %s artifact of %s with one %s layer", h, ArtifactType, subject.DigestStr(), ReportMediaType)
	}
	if _, err := verify(subject.DigestStr(), m.Annotations, keys, time.Now()); err != nil {
		return nil, fmt.Errorf("report %s: %w", h, err)
	}
	if m.Layers[0].Digest.String() != m.Annotations[AnnotationReportDigest] {
		return nil, fmt.Errorf("report %s: its layer is not the report that was signed", h)
	}
	if m.Layers[0].Size > MaxStoredReportBytes {
		return nil, fmt.Errorf("report %s is %d bytes, more than %d", h, m.Layers[0].Size, MaxStoredReportBytes)
	}
	l, err := remote.Layer(repo.Digest(m.Layers[0].Digest.String()), opts...)
	if err != nil {
		return nil, err
	}
	rc, err := l.Compressed()
	if err != nil {
		return nil, fmt.Errorf("fetch report %s: %w", h, err)
	}
	defer func() { _ = rc.Close() }()
	data, err := io.ReadAll(io.LimitReader(rc, MaxStoredReportBytes+1))
	if err != nil {
		return nil, fmt.Errorf("fetch report %s: %w", h, err)
	}
	if got, _, _ := v1.SHA256(bytes.NewReader(data)); got != m.Layers[0].Digest {
		return nil, fmt.Errorf("report %s: its blob does not match its digest", h)
	}
	r, err := decodeReport(data)
	if err != nil {
		return nil, fmt.Errorf("report %s: %w", h, err)
	}
	if r.Subject != subject.DigestStr() {
		return nil, fmt.Errorf("report %s describes %s, not %s", h, r.Subject, subject.DigestStr())
	}
	return r, nil
}

// decodeReport reads a stored report element by element, refusing more than
// MaxVulnerabilities before they are all in memory, and cutting long fields.
func decodeReport(data []byte) (*Report, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, errors.New("a report is a JSON object")
	}
	r := &Report{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key, _ := t.(string)
		switch key {
		case "vulnerabilities":
			if t, err := dec.Token(); err != nil || t != json.Delim('[') {
				return nil, errors.New("vulnerabilities is a JSON array")
			}
			for dec.More() {
				if len(r.Vulnerabilities) == MaxVulnerabilities {
					return nil, fmt.Errorf("more than %d vulnerabilities", MaxVulnerabilities)
				}
				var v Vulnerability
				if err := dec.Decode(&v); err != nil {
					return nil, err
				}
				r.Vulnerabilities = append(r.Vulnerabilities, v.bounded())
			}
			if _, err := dec.Token(); err != nil {
				return nil, err
			}
		case "subject":
			err = dec.Decode(&r.Subject)
		case "scanner":
			err = dec.Decode(&r.Scanner)
		case "scannedAt":
			err = dec.Decode(&r.ScannedAt)
		case "os":
			err = dec.Decode(&r.OS)
		default:
			var skip json.RawMessage
			err = dec.Decode(&skip)
		}
		if err != nil {
			return nil, fmt.Errorf("field %q: %w", key, err)
		}
	}
	r.OS, r.Scanner.Name, r.Scanner.Version = truncate(r.OS, 100), truncate(r.Scanner.Name, 50), truncate(r.Scanner.Version, 50)
	return r, nil
}

// bounded cuts a vulnerability's fields to sizes a message and a cache can carry.
func (v Vulnerability) bounded() Vulnerability {
	v.ID, v.Package, v.Target = truncate(v.ID, 128), truncate(v.Package, 256), truncate(v.Target, 256)
	v.InstalledVersion, v.FixedVersion = truncate(v.InstalledVersion, 128), truncate(v.FixedVersion, 128)
	v.Title, v.URL = truncate(v.Title, 200), truncate(v.URL, 500)
	if _, err := ParseSeverity(string(v.Severity)); err != nil {
		v.Severity = SeverityUnknown
	}
	return v
}

// ParseSigningKey reads a PEM "PRIVATE KEY" (PKCS #8) holding an ed25519 key.
func ParseSigningKey(data []byte) (ed25519.PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, errors.New("no PEM PRIVATE KEY block")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, err
	}
	ek, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("the key is a %T, not ed25519", k)
	}
	return ek, nil
}

// ParsePublicKeys reads every PEM "PUBLIC KEY" (PKIX) ed25519 key in data.
func ParsePublicKeys(data []byte) ([]ed25519.PublicKey, error) {
	var keys []ed25519.PublicKey
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "PUBLIC KEY" {
			continue
		}
		k, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, err
		}
		ek, ok := k.(ed25519.PublicKey)
		if !ok {
			return nil, fmt.Errorf("a key is a %T, not ed25519", k)
		}
		keys = append(keys, ek)
	}
	if len(keys) == 0 {
		return nil, errors.New("no PEM PUBLIC KEY block")
	}
	return keys, nil
}
