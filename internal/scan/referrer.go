package scan

import (
	"bytes"
	"cmp"
	"encoding/json"
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

// Attach stores r in repo as a referrer of subject (the scanned manifest's descriptor) and
// returns the report manifest's digest.
func Attach(repo name.Repository, subject v1.Descriptor, r *Report, opts ...remote.Option) (v1.Hash, error) {
	if r.Subject != subject.Digest.String() {
		return v1.Hash{}, fmt.Errorf("the report is of %s, not %s", r.Subject, subject.Digest)
	}
	body, err := json.Marshal(r)
	if err != nil {
		return v1.Hash{}, err
	}
	cfg := static.NewLayer([]byte("{}"), emptyJSONMediaType)
	layer := static.NewLayer(body, ReportMediaType)
	for _, l := range []v1.Layer{cfg, layer} {
		if err := remote.WriteLayer(repo, l, opts...); err != nil {
			return v1.Hash{}, fmt.Errorf("upload the report: %w", err)
		}
	}
	desc := func(l v1.Layer) (v1.Descriptor, error) {
		d, err := l.Digest()
		if err != nil {
			return v1.Descriptor{}, err
		}
		size, err := l.Size()
		if err != nil {
			return v1.Descriptor{}, err
		}
		mt, err := l.MediaType()
		return v1.Descriptor{MediaType: mt, Digest: d, Size: size}, err
	}
	cd, err := desc(cfg)
	if err != nil {
		return v1.Hash{}, err
	}
	ld, err := desc(layer)
	if err != nil {
		return v1.Hash{}, err
	}
	s := r.Summary()
	subj := v1.Descriptor{MediaType: subject.MediaType, Digest: subject.Digest, Size: subject.Size}
	m := manifest{SchemaVersion: 2, MediaType: types.OCIManifestSchema1, ArtifactType: ArtifactType, Config: cd,
		Layers: []v1.Descriptor{ld}, Subject: &subj, Annotations: map[string]string{
			AnnotationCreated:  r.ScannedAt.UTC().Format(time.RFC3339),
			AnnotationScanner:  r.Scanner.Name + " " + r.Scanner.Version,
			AnnotationCritical: strconv.Itoa(s.Critical), AnnotationHigh: strconv.Itoa(s.High),
			AnnotationMedium: strconv.Itoa(s.Medium), AnnotationLow: strconv.Itoa(s.Low),
			AnnotationUnknown: strconv.Itoa(s.Unknown), AnnotationFixable: strconv.Itoa(s.Fixable),
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

// ErrNoReport is returned by Latest when the manifest has no report.
var ErrNoReport = errors.New("no vulnerability report")

// Stored is a report found in the registry.
type Stored struct {
	// Manifest is the report manifest's digest.
	Manifest v1.Hash
	// Created is its creation time (from its annotation).
	Created time.Time
	Report  *Report
}

// Reports lists the report manifests referring to subject, newest first, without
// fetching the reports.
func Reports(subject name.Digest, opts ...remote.Option) ([]Stored, error) {
	idx, err := remote.Referrers(subject, append(opts, remote.WithFilter("artifactType", ArtifactType))...)
	if err != nil {
		return nil, fmt.Errorf("list the referrers of %s: %w", subject, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	var out []Stored
	for _, d := range im.Manifests {
		// The registry may not filter (OCI-Filters-Applied): filter here too.
		if d.ArtifactType != ArtifactType {
			continue
		}
		created, _ := time.Parse(time.RFC3339, d.Annotations[AnnotationCreated])
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

// Latest fetches the newest report of subject; ErrNoReport when there is none.
func Latest(subject name.Digest, opts ...remote.Option) (*Stored, error) {
	list, err := Reports(subject, opts...)
	if err != nil {
		return nil, err
	}
	if len(list) == 0 {
		return nil, ErrNoReport
	}
	st := list[0]
	r, err := Fetch(subject.Context(), st.Manifest, opts...)
	if err != nil {
		return nil, err
	}
	if r.Subject != subject.DigestStr() {
		return nil, fmt.Errorf("report %s describes %s, not %s", st.Manifest, r.Subject, subject.DigestStr())
	}
	st.Report = r
	return &st, nil
}

// Fetch reads the report stored under manifest digest h in repo, checking its shape.
func Fetch(repo name.Repository, h v1.Hash, opts ...remote.Option) (*Report, error) {
	desc, err := remote.Get(repo.Digest(h.String()), opts...)
	if err != nil {
		return nil, fmt.Errorf("fetch report %s: %w", h, err)
	}
	var m manifest
	if err := json.Unmarshal(desc.Manifest, &m); err != nil {
		return nil, fmt.Errorf("report %s: %w", h, err)
	}
	if m.ArtifactType != ArtifactType || len(m.Layers) != 1 || m.Layers[0].MediaType != ReportMediaType {
		return nil, fmt.Errorf("report %s is not a %s artifact with one %s layer", h, ArtifactType, ReportMediaType)
	}
	if m.Layers[0].Size > MaxReportBytes {
		return nil, fmt.Errorf("report %s is %d bytes, more than %d", h, m.Layers[0].Size, MaxReportBytes)
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
	data, err := io.ReadAll(io.LimitReader(rc, MaxReportBytes+1))
	if err != nil {
		return nil, fmt.Errorf("fetch report %s: %w", h, err)
	}
	if got, _, _ := v1.SHA256(bytes.NewReader(data)); got != m.Layers[0].Digest {
		return nil, fmt.Errorf("report %s: its blob does not match its digest", h)
	}
	var r Report
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("report %s: %w", h, err)
	}
	if len(r.Vulnerabilities) > MaxVulnerabilities {
		return nil, fmt.Errorf("report %s lists more than %d vulnerabilities", h, MaxVulnerabilities)
	}
	return &r, nil
}
