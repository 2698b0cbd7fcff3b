// Package trivy gives tests the real Trivy scanner (built by hack/build-scantools.sh into
// the tool cache; `make test` passes it as DOCKYARD_TRIVY), a vulnerability database the
// test writes itself (so a test can say "musl 1.2.4-r2 is flagged CVE-2099-0001" without
// any download), and images with a made-up Alpine package database for it to scan.
// Without the binary, tests are skipped, unless DOCKYARD_REQUIRE_CLIENTS is set, where
// they fail.
package trivy

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	bolt "go.etcd.io/bbolt"

	"github.com/dockyard-dev/dockyard/internal/testfixture"
)

// TB is what the fixture needs of a test.
type TB = testfixture.TB

// Binary returns trivy's path, or skips (fails under DOCKYARD_REQUIRE_CLIENTS) without it.
func Binary(t TB) string {
	t.Helper()
	if p := os.Getenv("DOCKYARD_TRIVY"); p != "" {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	testfixture.Missing(t, "trivy is not built (DOCKYARD_TRIVY=$(hack/build-scantools.sh trivy); make test does it)")
	return ""
}

// Advisory is one vulnerability of one package of one Alpine release in the database.
type Advisory struct {
	// Release is the Alpine minor release ("3.20").
	Release string
	// Package is the source package name ("musl").
	Package string
	// ID is the vulnerability ID ("CVE-2099-0001").
	ID string
	// Severity is UNKNOWN, LOW, MEDIUM, HIGH or CRITICAL.
	Severity string
	// FixedVersion is empty for a vulnerability nobody fixed yet.
	FixedVersion string
	// Title is shown in reports.
	Title string
}

// Fixtures are the advisories the scanning tests share: a critical fixed one in musl and
// a high unfixed one in zlib, both in Alpine 3.20.
var Fixtures = []Advisory{
	{Release: "3.20", Package: "musl", ID: "CVE-2099-0001", Severity: "CRITICAL", FixedVersion: "1.2.5-r0",
		Title: "musl: made-up heap overflow for Dockyard's tests"},
	{Release: "3.20", Package: "zlib", ID: "CVE-2099-0002", Severity: "HIGH",
		Title: "zlib: made-up unfixed flaw for Dockyard's tests"},
}

var severityRank = map[string]int{"UNKNOWN": 0, "LOW": 1, "MEDIUM": 2, "HIGH": 3, "CRITICAL": 4}

// WriteDB writes a Trivy vulnerability database (schema 2, as trivy-db writes it: bolt
// buckets "<source>" → package → ID, "vulnerability" and "data-source") holding advisories
// into cacheDir/db, with metadata saying it was updated at updatedAt. Trivy then scans
// with --skip-db-update and never goes to the network for it.
func WriteDB(cacheDir string, updatedAt time.Time, advisories []Advisory) error {
	dir := filepath.Join(cacheDir, "db")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	db, err := bolt.Open(filepath.Join(dir, "trivy.db"), 0o644, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return err
	}
	err = db.Update(func(tx *bolt.Tx) error {
		put := func(path []string, key string, value any) error {
			b, err := tx.CreateBucketIfNotExists([]byte(path[0]))
			if err != nil {
				return err
			}
			for _, p := range path[1:] {
				if b, err = b.CreateBucketIfNotExists([]byte(p)); err != nil {
					return err
				}
			}
			data, err := json.Marshal(value)
			if err != nil {
				return err
			}
			return b.Put([]byte(key), data)
		}
		for _, a := range advisories {
			rank, ok := severityRank[a.Severity]
			if !ok {
				return fmt.Errorf("advisory %s: unknown severity %q", a.ID, a.Severity)
			}
			source := "alpine " + a.Release
			adv := map[string]any{}
			if a.FixedVersion != "" {
				adv["FixedVersion"] = a.FixedVersion
			}
			if err := put([]string{source, a.Package}, a.ID, adv); err != nil {
				return err
			}
			if err := put([]string{"data-source"}, source, map[string]string{"ID": "alpine", "Name": "Alpine Secdb (Dockyard test fixture)",
				"URL": "https://secdb.alpinelinux.org/"}); err != nil {
				return err
			}
			if err := put([]string{"vulnerability"}, a.ID, map[string]any{"Title": a.Title, "Severity": a.Severity,
				"VendorSeverity": map[string]int{"alpine": rank}}); err != nil {
				return err
			}
		}
		return nil
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	meta, err := json.Marshal(map[string]any{"Version": 2, "UpdatedAt": updatedAt.UTC(), "NextUpdate": updatedAt.Add(24 * time.Hour).UTC(),
		"DownloadedAt": updatedAt.UTC()})
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "metadata.json"), meta, 0o644)
}

// Package is an installed Alpine package of a test image.
type Package struct{ Name, Version string }

// AlpineImage is a one-layer image that looks like Alpine release (e.g. "3.20.3") to a
// scanner, with packages in its APK database and extra files (path → content).
func AlpineImage(release string, packages []Package, extra map[string]string) (v1.Image, error) {
	var apkdb strings.Builder
	for _, p := range packages {
		fmt.Fprintf(&apkdb, "P:%s\nV:%s\nA:x86_64\no:%s\nL:MIT\nT:%s for Dockyard's tests\n\n", p.Name, p.Version, p.Name, p.Name)
	}
	files := map[string]string{
		"etc/alpine-release": release + "\n",
		"etc/os-release": fmt.Sprintf("NAME=\"Alpine Linux\"\nID=alpine\nVERSION_ID=%s\nPRETTY_NAME=\"Alpine Linux v%s\"\n",
			release, release[:strings.LastIndex(release, ".")]),
		"lib/apk/db/installed": apkdb.String(),
	}
	for k, v := range extra {
		files[k] = v
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	for _, name := range slices.Sorted(maps.Keys(files)) {
		for d := filepath.Dir(name); d != "."; d = filepath.Dir(d) {
			if !dirs[d] {
				dirs[d] = true
				if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755}); err != nil {
					return nil, err
				}
			}
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(files[name]))}); err != nil {
			return nil, err
		}
		if _, err := tw.Write([]byte(files[name])); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	data := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil },
		tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.AppendLayers(img, layer)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	return mutate.ConfigFile(img, cf)
}

// DBMediaType is the layer media type of Trivy's vulnerability database artifact.
const DBMediaType = "application/vnd.aquasec.trivy.db.layer.v1.tar+gzip"

// DBArtifact packs the database WriteDB wrote under cacheDir as the OCI artifact Trivy
// downloads with --db-repository (one layer, db.tar.gz holding trivy.db and
// metadata.json), as a site mirrors it into its own registry.
func DBArtifact(cacheDir string) (v1.Image, error) {
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, f := range []string{"trivy.db", "metadata.json"} {
		data, err := os.ReadFile(filepath.Join(cacheDir, "db", f))
		if err != nil {
			return nil, err
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: f, Mode: 0o644, Size: int64(len(data))}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := gz.Close(); err != nil {
		return nil, err
	}
	layer := static.NewLayer(buf.Bytes(), DBMediaType)
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, "application/vnd.aquasec.trivy.config.v1+json")
	return mutate.Append(img, mutate.Addendum{Layer: layer, Annotations: map[string]string{"org.opencontainers.image.title": "db.tar.gz"}})
}

// NewKey makes a scanner signing key and the public keys a reader trusts.
func NewKey() (ed25519.PrivateKey, []ed25519.PublicKey) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	return priv, []ed25519.PublicKey{pub}
}

// KeyPEM is key as the scanner reads it (PEM, PKCS #8).
func KeyPEM(key ed25519.PrivateKey) []byte {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		panic(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}
