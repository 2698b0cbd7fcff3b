package compliance

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/payload"
)

// Keys are the public keys a policy trusts for signatures, parsed once.
type Keys struct {
	Keys []crypto.PublicKey
	// ID identifies the set (a hash of the keys), for caching verdicts per policy.
	ID string
	// verifiers, one per key.
	verifiers []signature.Verifier
}

// ParseKeys reads PEM public keys (cosign.pub); every one must parse and be of a kind
// and size sigstore accepts (ECDSA P-256/384/521, RSA ≥ 2048 bits, Ed25519).
func ParseKeys(pems []string) (*Keys, error) {
	k := &Keys{}
	h := sha256.New()
	for i, p := range pems {
		pub, err := cryptoutils.UnmarshalPEMToPublicKey([]byte(strings.TrimSpace(p)))
		if err != nil {
			return nil, fmt.Errorf("public key %d: %w", i+1, err)
		}
		if err := acceptableKey(pub); err != nil {
			return nil, fmt.Errorf("public key %d: %w", i+1, err)
		}
		ver, err := signature.LoadVerifier(pub, crypto.SHA256)
		if err != nil {
			return nil, fmt.Errorf("public key %d: %w", i+1, err)
		}
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			return nil, fmt.Errorf("public key %d: %w", i+1, err)
		}
		h.Write(der)
		k.Keys = append(k.Keys, pub)
		k.verifiers = append(k.verifiers, ver)
	}
	if len(k.Keys) == 0 {
		return nil, errors.New("no public key")
	}
	k.ID = hex.EncodeToString(h.Sum(nil))[:16]
	return k, nil
}

// acceptableKey admits the keys cosign makes and sigstore verifies: ECDSA on P-256, P-384
// or P-521, RSA of 2048 bits or more, Ed25519.
func acceptableKey(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
			return nil
		}
		return fmt.Errorf("ECDSA curve %s is not accepted (P-256, P-384 or P-521)", k.Curve.Params().Name)
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return fmt.Errorf("RSA key of %d bits is too small (2048 or more)", k.N.BitLen())
		}
		return nil
	case ed25519.PublicKey:
		return nil
	}
	return fmt.Errorf("key type %T is not accepted", pub)
}

// Cosign's signature format (what `cosign sign --key` stores): a manifest whose layers are
// simple-signing payloads, each with its base64 signature in an annotation; found by the
// tag sha256-<hex>.sig in the image's repository, or (cosign's OCI 1.1 mode) as a
// referrer of the image with artifact type cosignArtifactType.
const (
	cosignPayloadMediaType = "application/vnd.dev.cosign.simplesigning.v1+json"
	cosignSignatureAnn     = "dev.cosignproject.cosign/signature"
	cosignArtifactType     = "application/vnd.dev.cosign.artifact.sig.v1+json"
	// maxSignatureLayers bounds the signatures read per manifest; maxPayload the size of one.
	maxSignatureLayers = 32
	maxPayload         = 64 << 10
	maxSignatureBytes  = 4 << 10
	maxSigReferrers    = 16
)

// SignedBy reports whether the image d has a valid cosign signature by one of keys: the
// signature verifies against the key over the payload, and the payload names d's digest
// (its docker-reference is not compared: a signed image stays signed when it is copied or
// replicated to another registry, as with `cosign verify`).
func SignedBy(d name.Digest, keys *Keys, opts ...remote.Option) (bool, error) {
	h, err := v1.NewHash(d.DigestStr())
	if err != nil {
		return false, err
	}
	var manifests []v1.Hash
	tag := d.Context().Tag(fmt.Sprintf("%s-%s.sig", h.Algorithm, h.Hex))
	desc, err := remote.Head(tag, opts...)
	switch {
	case isNotFound(err):
	case err != nil:
		return false, fmt.Errorf("look up the signatures of %s: %w", d, err)
	default:
		manifests = append(manifests, desc.Digest)
	}
	if idx, err := remote.Referrers(d, append(opts, remote.WithFilter("artifactType", cosignArtifactType))...); err == nil {
		im, err := idx.IndexManifest()
		if err == nil {
			for _, m := range im.Manifests {
				if m.ArtifactType == cosignArtifactType && len(manifests) < maxSigReferrers {
					manifests = append(manifests, m.Digest)
				}
			}
		}
	} else if !isNotFound(err) {
		return false, fmt.Errorf("list the referrers of %s: %w", d, err)
	}
	// Every signature manifest is tried: a broken one does not hide a valid one; an
	// error counts only when no valid signature was found.
	var errs []error
	for _, m := range manifests {
		ok, err := signedIn(d.Context().Digest(m.String()), h, keys, opts)
		if ok {
			return true, nil
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return false, errors.Join(errs...)
}

// signedIn checks the signatures in one cosign signature manifest.
func signedIn(sigs name.Digest, subject v1.Hash, keys *Keys, opts []remote.Option) (bool, error) {
	img, err := remote.Image(sigs, opts...)
	if err != nil {
		return false, fmt.Errorf("read the signatures %s: %w", sigs, err)
	}
	m, err := img.Manifest()
	if err != nil {
		return false, fmt.Errorf("read the signatures %s: %w", sigs, err)
	}
	var readErr error
	for i, l := range m.Layers {
		if i == maxSignatureLayers {
			break
		}
		b64 := l.Annotations[cosignSignatureAnn]
		if l.MediaType != cosignPayloadMediaType || b64 == "" || l.Size > maxPayload || len(b64) > maxSignatureBytes {
			continue
		}
		sig, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			continue
		}
		pl, err := readBlob(img, l.Digest)
		if err != nil {
			readErr = fmt.Errorf("read signature payload %s: %w", l.Digest, err)
			continue
		}
		if !payloadNames(pl, subject) {
			continue
		}
		for _, v := range keys.verifiers {
			if v.VerifySignature(bytes.NewReader(sig), bytes.NewReader(pl)) == nil {
				return true, nil
			}
		}
	}
	return false, readErr
}

// payloadNames reports whether a simple-signing payload is a cosign signature of subject.
func payloadNames(pl []byte, subject v1.Hash) bool {
	var p payload.SimpleContainerImage
	if err := json.Unmarshal(pl, &p); err != nil {
		return false
	}
	return p.Critical.Type == payload.CosignSignatureType && p.Critical.Image.DockerManifestDigest == subject.String()
}

func readBlob(img v1.Image, h v1.Hash) ([]byte, error) {
	l, err := img.LayerByDigest(h)
	if err != nil {
		return nil, err
	}
	rc, err := l.Compressed()
	if err != nil {
		return nil, err
	}
	defer func() { _ = rc.Close() }()
	b, err := io.ReadAll(io.LimitReader(rc, maxPayload+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxPayload {
		return nil, fmt.Errorf("larger than %d bytes", maxPayload)
	}
	if sum := sha256.Sum256(b); h.Algorithm != "sha256" || hex.EncodeToString(sum[:]) != h.Hex {
		return nil, errors.New("content does not match its digest")
	}
	return b, nil
}

// isNotFound is a registry's 404 (no such manifest or repository).
func isNotFound(err error) bool {
	var te *transport.Error
	return errors.As(err, &te) && te.StatusCode == http.StatusNotFound
}
