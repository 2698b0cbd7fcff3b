package server_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	ggcrv1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

const (
	sigType  = "application/vnd.dev.cosign.artifact.sig.v1+json"
	sbomType = "application/spdx+json"
)

// artifact builds an OCI artifact manifest (empty config, one layer) referring to subject.
func artifact(t *testing.T, artifactType string, subject ggcrv1.Descriptor, annotations map[string]string) ggcrv1.Image {
	t.Helper()
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.MediaType(artifactType))
	img, err := mutate.Append(img, mutate.Addendum{Layer: static.NewLayer([]byte("payload of "+artifactType), "application/octet-stream")})
	if err != nil {
		t.Fatal(err)
	}
	img = mutate.Annotations(img, annotations).(ggcrv1.Image)
	return mutate.Subject(img, subject).(ggcrv1.Image)
}

func descriptorOf(t *testing.T, img ggcrv1.Image) ggcrv1.Descriptor {
	t.Helper()
	d, err := partialDescriptor(img)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func partialDescriptor(img ggcrv1.Image) (ggcrv1.Descriptor, error) {
	mt, err := img.MediaType()
	if err != nil {
		return ggcrv1.Descriptor{}, err
	}
	d, err := img.Digest()
	if err != nil {
		return ggcrv1.Descriptor{}, err
	}
	sz, err := img.Size()
	return ggcrv1.Descriptor{MediaType: mt, Digest: d, Size: sz}, err
}

// getReferrers asks the referrers API directly and decodes the index.
func getReferrers(t *testing.T, reg *testRegistry, user, pw, repo, subject, query string) (int, http.Header, ocispec.Index) {
	t.Helper()
	u := "https://" + reg.host + "/v2/" + repo + "/referrers/" + subject
	if query != "" {
		u += "?" + query
	}
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	if user != "" {
		req.SetBasicAuth(user, pw)
	}
	resp, err := reg.transport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var idx ocispec.Index
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(body, &idx); err != nil {
			t.Fatalf("decode referrers %s: %v", body, err)
		}
	}
	return resp.StatusCode, resp.Header, idx
}

func TestReferrersAPI(t *testing.T) {
	_, auth := authFixture(t, testUsers)
	reg := startRegistry(t, auth, nil)
	admin := reg.opts("admin", "admin-pw")
	// Repository names that contain route words must work like any other.
	for _, repo := range []string{"team-a/app", "team-a/referrers/blobs/manifests"} {
		t.Run(strings.ReplaceAll(repo, "/", "_"), func(t *testing.T) {
			subjectImg, _ := random.Image(512, 1)
			tag := mustTag(t, reg.host+"/"+repo+":v1")
			if err := remote.Write(tag, subjectImg, admin...); err != nil {
				t.Fatal(err)
			}
			subject := descriptorOf(t, subjectImg)
			sig := artifact(t, sigType, subject, map[string]string{"org.example.signer": "ci"})
			sbom := artifact(t, sbomType, subject, nil)
			for _, a := range []ggcrv1.Image{sig, sbom} {
				d := descriptorOf(t, a)
				ref := tag.Context().Digest(d.Digest.String())
				if err := remote.Write(ref, a, admin...); err != nil {
					t.Fatal(err)
				}
			}
			// ggcr falls back to the referrers tag schema when OCI-Subject is missing: no
			// such tag may exist.
			tags, err := remote.List(tag.Context(), admin...)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(tags, []string{"v1"}) {
				t.Errorf("tags = %v, want only v1 (a fallback referrers tag means OCI-Subject was missing)", tags)
			}

			sigD, sbomD := descriptorOf(t, sig), descriptorOf(t, sbom)
			code, hdr, idx := getReferrers(t, reg, "bob", "bob-pw", repo, subject.Digest.String(), "")
			if code != http.StatusOK || hdr.Get("Content-Type") != ocispec.MediaTypeImageIndex {
				t.Fatalf("GET referrers as viewer: %d %s", code, hdr.Get("Content-Type"))
			}
			want := map[string]ocispec.Descriptor{
				sigD.Digest.String():  {MediaType: ocispec.MediaTypeImageManifest, Digest: digestOf(sigD), Size: sigD.Size, ArtifactType: sigType, Annotations: map[string]string{"org.example.signer": "ci"}},
				sbomD.Digest.String(): {MediaType: ocispec.MediaTypeImageManifest, Digest: digestOf(sbomD), Size: sbomD.Size, ArtifactType: sbomType},
			}
			if len(idx.Manifests) != 2 {
				t.Fatalf("referrers = %+v, want the signature and the SBOM", idx.Manifests)
			}
			for _, got := range idx.Manifests {
				w := want[got.Digest.String()]
				if got.MediaType != w.MediaType || got.Size != w.Size || got.ArtifactType != w.ArtifactType || len(got.Annotations) != len(w.Annotations) ||
					got.Annotations["org.example.signer"] != w.Annotations["org.example.signer"] {
					t.Errorf("referrer %s = %+v, want %+v", got.Digest, got, w)
				}
			}
			// ggcr's own client reads the API too.
			refs, err := remote.Referrers(tag.Context().Digest(subject.Digest.String()), admin...)
			if err != nil {
				t.Fatal(err)
			}
			if m, _ := refs.IndexManifest(); len(m.Manifests) != 2 {
				t.Errorf("remote.Referrers = %d manifests, want 2", len(m.Manifests))
			}

			code, hdr, idx = getReferrers(t, reg, "bob", "bob-pw", repo, subject.Digest.String(), "artifactType="+url.QueryEscape(sbomType))
			if code != http.StatusOK || hdr.Get("OCI-Filters-Applied") != "artifactType" || len(idx.Manifests) != 1 || idx.Manifests[0].ArtifactType != sbomType {
				t.Errorf("filtered referrers: %d %q %+v", code, hdr.Get("OCI-Filters-Applied"), idx.Manifests)
			}

			// Deleting a referrer removes it from the list at once.
			if err := remote.Delete(tag.Context().Digest(sigD.Digest.String()), admin...); err != nil {
				t.Fatal(err)
			}
			_, _, idx = getReferrers(t, reg, "bob", "bob-pw", repo, subject.Digest.String(), "")
			if len(idx.Manifests) != 1 || idx.Manifests[0].Digest.String() != sbomD.Digest.String() {
				t.Errorf("after deleting the signature: %+v, want only the SBOM", idx.Manifests)
			}
		})
	}

	t.Run("errors", func(t *testing.T) {
		unknown := "sha256:" + strings.Repeat("ab", 32)
		if code, _, idx := getReferrers(t, reg, "bob", "bob-pw", "team-a/app", unknown, ""); code != http.StatusOK || idx.Manifests == nil || len(idx.Manifests) != 0 {
			t.Errorf("unknown subject: %d %+v, want 200 with an empty list", code, idx.Manifests)
		}
		if code, _, _ := getReferrers(t, reg, "bob", "bob-pw", "team-a/app", "sha256:"+strings.Repeat("ab", 31), ""); code != http.StatusBadRequest {
			t.Errorf("malformed digest: %d, want 400", code)
		}
		if code, hdr, _ := getReferrers(t, reg, "", "", "team-a/app", unknown, ""); code != http.StatusUnauthorized || !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Basic ") {
			t.Errorf("anonymous: %d %q, want 401 with a challenge", code, hdr.Get("WWW-Authenticate"))
		}
		if code, _, _ := getReferrers(t, reg, "carol", "carol-pw", "team-a/app", unknown, ""); code != http.StatusForbidden {
			t.Errorf("user without pull: %d, want 403", code)
		}
	})
}

func digestOf(d ggcrv1.Descriptor) digest.Digest { return digest.Digest(d.Digest.String()) }
