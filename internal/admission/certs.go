package admission

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Lifetimes of the webhook's self-managed certificates. The CA outlives many serving
// certificates, so a serving renewal never changes the caBundle the API server trusts:
// the new certificate is trusted the moment it is served. A new CA (every nine years, or
// when the Secret was deleted) is written into the configuration at once (OnBundleChange).
const (
	caLifetime      = 10 * 365 * 24 * time.Hour
	servingLifetime = 365 * 24 * time.Hour
	// A serving certificate is renewed when a third of its life is left; a CA when a
	// year is left (a new CA is added to the bundle beside the old one first).
	renewServingBefore = servingLifetime / 3
	renewCABefore      = 365 * 24 * time.Hour
)

// Keys of the webhook's TLS Secret.
const (
	keyCACert = "ca.crt"
	keyCAKey  = "ca.key"
	// keyCABundle is what the API server trusts: the current CA, and the previous one for
	// a year after a CA rotation.
	keyCABundle = "ca-bundle.crt"
)

// Certs keeps the admission webhook's serving certificate in a Secret of the operator's
// namespace, issued by a CA it also keeps there (no cert-manager needed): every replica
// serves the certificate the Secret holds, and whichever replica finds it missing or due
// for renewal writes a new one (optimistic concurrency: the others read the winner's).
type Certs struct {
	// Reader reads the Secret (uncached: the manager caches only Secrets' metadata);
	// Client writes it.
	Reader client.Reader
	Client client.Client
	// Namespace and Name of the Secret.
	Namespace, Name string
	// Hosts are the DNS names (and IP addresses) the certificate is for.
	Hosts []string
	// Interval between checks; an hour when zero.
	Interval time.Duration
	// Now returns the time; time.Now when nil.
	Now func() time.Time
	Log logr.Logger
	// OnBundleChange, when set, is called after the CA bundle changed (a new CA), so the
	// webhook's configuration is rewritten at once, not at its next hourly check.
	OnBundleChange func()

	mu     sync.RWMutex
	cert   *tls.Certificate
	bundle []byte
	// ready is closed once a certificate is loaded.
	ready     chan struct{}
	readyOnce sync.Once
}

// GetCertificate serves the current certificate (tls.Config.GetCertificate).
func (c *Certs) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.cert == nil {
		return nil, errors.New("the webhook's certificate is not loaded yet")
	}
	return c.cert, nil
}

// CABundle is the PEM bundle clients trust (empty until loaded).
func (c *Certs) CABundle() []byte {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.bundle
}

// Ready is closed once a certificate has been loaded.
func (c *Certs) Ready() <-chan struct{} {
	c.init()
	return c.ready
}

func (c *Certs) init() {
	c.readyOnce.Do(func() { c.ready = make(chan struct{}) })
}

// NeedLeaderElection is false: every replica serves admission requests.
func (c *Certs) NeedLeaderElection() bool { return false }

// Start loads (creating or renewing as needed) the certificate, then checks it every
// Interval until ctx ends.
func (c *Certs) Start(ctx context.Context) error {
	c.init()
	interval := c.Interval
	if interval <= 0 {
		interval = time.Hour
	}
	for {
		if err := c.Ensure(ctx); err != nil {
			c.Log.Error(err, "The admission webhook's certificate could not be loaded or renewed; retrying", "secret", c.Namespace+"/"+c.Name)
			interval = min(interval, 10*time.Second)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(interval):
		}
		if c.Interval > 0 {
			interval = c.Interval
		} else {
			interval = time.Hour
		}
	}
}

// Ensure reads the Secret, creates or renews what is missing or due, and loads it.
func (c *Certs) Ensure(ctx context.Context) error {
	c.init()
	for range 5 {
		sec := &corev1.Secret{}
		err := c.Reader.Get(ctx, client.ObjectKey{Namespace: c.Namespace, Name: c.Name}, sec)
		create := apierrors.IsNotFound(err)
		if err != nil && !create {
			return fmt.Errorf("read Secret %s/%s: %w", c.Namespace, c.Name, err)
		}
		if create {
			sec = &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: c.Namespace, Name: c.Name,
				Labels: map[string]string{"app.kubernetes.io/name": "dockyard", "app.kubernetes.io/component": "admission-webhook"}},
				Type: corev1.SecretTypeTLS}
		}
		orig := sec.DeepCopy()
		changed, err := c.renew(sec)
		if err != nil {
			return err
		}
		if changed {
			if create {
				err = c.Client.Create(ctx, sec)
			} else {
				// A patch that fails if another replica wrote first (the operator may
				// patch Secrets, not update them).
				err = c.Client.Patch(ctx, sec, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{}))
			}
			if apierrors.IsAlreadyExists(err) || apierrors.IsConflict(err) {
				continue // another replica wrote it first: read theirs
			}
			if err != nil {
				return fmt.Errorf("write Secret %s/%s: %w", c.Namespace, c.Name, err)
			}
			c.Log.Info("Issued the admission webhook's serving certificate", "secret", c.Namespace+"/"+c.Name)
		}
		return c.load(sec)
	}
	return fmt.Errorf("the Secret %s/%s kept changing while it was renewed", c.Namespace, c.Name)
}

// renew fills in what sec lacks or what is due: a CA, then a serving certificate for
// Hosts signed by it. It reports whether sec changed.
func (c *Certs) renew(sec *corev1.Secret) (bool, error) {
	now := c.now()
	if sec.Data == nil {
		sec.Data = map[string][]byte{}
	}
	changed := false
	ca, caKey, err := parsePair(sec.Data[keyCACert], sec.Data[keyCAKey])
	if err != nil || now.After(ca.NotAfter.Add(-renewCABefore)) {
		// A new CA goes into the bundle beside the old one; the serving certificate the
		// old one signed stays until its own renewal, by which time every client trusts
		// the new CA too.
		var old []byte
		if err == nil {
			old = sec.Data[keyCACert]
		}
		certPEM, keyPEM, err := newCA(now)
		if err != nil {
			return false, err
		}
		sec.Data[keyCACert], sec.Data[keyCAKey] = certPEM, keyPEM
		sec.Data[keyCABundle] = append(append([]byte{}, certPEM...), old...)
		if ca, caKey, err = parsePair(certPEM, keyPEM); err != nil {
			return false, err
		}
		changed = true
	}
	if len(sec.Data[keyCABundle]) == 0 {
		sec.Data[keyCABundle] = sec.Data[keyCACert]
		changed = true
	}
	leaf, _, err := parsePair(sec.Data[corev1.TLSCertKey], sec.Data[corev1.TLSPrivateKeyKey])
	if err != nil || now.After(leaf.NotAfter.Add(-renewServingBefore)) || !coversHosts(leaf, c.Hosts) ||
		!trustedBy(leaf, sec.Data[keyCABundle], now) {
		certPEM, keyPEM, err := newServing(now, ca, caKey, c.Hosts)
		if err != nil {
			return false, err
		}
		sec.Data[corev1.TLSCertKey], sec.Data[corev1.TLSPrivateKeyKey] = certPEM, keyPEM
		changed = true
	}
	return changed, nil
}

func (c *Certs) load(sec *corev1.Secret) error {
	pair, err := tls.X509KeyPair(sec.Data[corev1.TLSCertKey], sec.Data[corev1.TLSPrivateKeyKey])
	if err != nil {
		return fmt.Errorf("the Secret %s/%s: %w", c.Namespace, c.Name, err)
	}
	c.mu.Lock()
	changed := !bytes.Equal(c.bundle, sec.Data[keyCABundle])
	c.cert, c.bundle = &pair, bytes.Clone(sec.Data[keyCABundle])
	c.mu.Unlock()
	if changed && c.OnBundleChange != nil {
		c.OnBundleChange()
	}
	select {
	case <-c.ready:
	default:
		close(c.ready)
	}
	return nil
}

func (c *Certs) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// trustedBy reports whether cert verifies against the CA bundle.
func trustedBy(cert *x509.Certificate, bundle []byte, now time.Time) bool {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(bundle) {
		return false
	}
	_, err := cert.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	return err == nil
}

func coversHosts(cert *x509.Certificate, hosts []string) bool {
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			if !slices.ContainsFunc(cert.IPAddresses, ip.Equal) {
				return false
			}
		} else if !slices.Contains(cert.DNSNames, h) {
			return false
		}
	}
	return true
}

func parsePair(certPEM, keyPEM []byte) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		return nil, nil, errors.New("missing")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, err
	}
	key, err := x509.ParseECPrivateKey(kb.Bytes)
	if err != nil {
		return nil, nil, err
	}
	return cert, key, nil
}

func newCA(now time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "dockyard admission webhook CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(caLifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	return encode(der, key)
}

func newServing(now time.Time, ca *x509.Certificate, caKey *ecdsa.PrivateKey, hosts []string) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: hosts[0]},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(servingLifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, err
	}
	return encode(der, key)
}

func encode(der []byte, key *ecdsa.PrivateKey) (certPEM, keyPEM []byte, err error) {
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand does not fail
	}
	return n
}
