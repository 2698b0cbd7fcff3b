package server_test

import (
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
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"golang.org/x/crypto/bcrypt"

	"github.com/dockyard-dev/dockyard/internal/registryconfig"
	"github.com/dockyard-dev/dockyard/internal/workload/internal/imagecheck"
	"github.com/dockyard-dev/dockyard/internal/workload/server"
)

// testCA is a throwaway certificate authority.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newCA(t testing.TB) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "dockyard test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// issue writes a serving certificate for 127.0.0.1 with the given serial to certFile and
// keyFile (replacing them atomically, as a Secret volume update does).
func (ca *testCA) issue(t testing.TB, serial int64, certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: "registry"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(12 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writeAtomic(t, keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}))
	writeAtomic(t, certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

func writeAtomic(t testing.TB, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// htpasswd renders users (name -> password) with cheap bcrypt hashes.
func htpasswd(t testing.TB, users map[string]string) []byte {
	t.Helper()
	var b strings.Builder
	for u, p := range users {
		h, err := bcrypt.GenerateFromPassword([]byte(p), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s:%s\n", u, h)
	}
	return []byte(b.String())
}

// testRegistry is a running server plus what a client needs to reach it.
type testRegistry struct {
	srv       *server.Server
	host      string
	ca        *testCA
	dir       string
	certFile  string
	keyFile   string
	transport *http.Transport
	done      chan error
	cancel    context.CancelFunc
	// expiresIn is the expires_in the token helper expects (the default TTL, 300 s; -1:
	// any).
	expiresIn int
}

// startRegistry runs a registry on 127.0.0.1 with filesystem storage under a temp dir,
// TLS from a fresh CA and, when auth is not nil, access control. mutate may adjust the
// config before start.
func startRegistry(t testing.TB, auth *registryconfig.Auth, mutate func(*registryconfig.Config)) *testRegistry {
	t.Helper()
	dir := t.TempDir()
	tr := &testRegistry{dir: dir, ca: newCA(t), certFile: filepath.Join(dir, "tls.crt"),
		keyFile: filepath.Join(dir, "tls.key"), done: make(chan error, 1), expiresIn: 300}
	tr.ca.issue(t, 2, tr.certFile, tr.keyFile)
	cfg := &registryconfig.Config{
		APIVersion: registryconfig.APIVersion,
		HTTP: registryconfig.HTTP{Addr: "127.0.0.1:0",
			TLS: &registryconfig.TLS{CertFile: tr.certFile, KeyFile: tr.keyFile}},
		Metrics: registryconfig.Metrics{Addr: "127.0.0.1:0"},
		Storage: registryconfig.Storage{Filesystem: &registryconfig.FilesystemStorage{RootDirectory: filepath.Join(dir, "data")}},
		Auth:    auth,
		Log:     registryconfig.Log{Level: "warn"},
	}
	if mutate != nil {
		mutate(cfg)
	}
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tr.cancel = cancel
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	srv, err := server.New(ctx, cfg, server.Options{Logger: log, ReloadInterval: 200 * time.Millisecond})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	tr.srv = srv
	tr.host = srv.Addr()
	go func() { tr.done <- srv.Run(ctx) }()
	tr.transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: tr.ca.pool}, ForceAttemptHTTP2: true}
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-tr.done:
			if err != nil {
				t.Errorf("server stopped with error: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("server did not stop within 20s")
		}
		tr.transport.CloseIdleConnections()
	})
	return tr
}

// opts returns go-containerregistry options for a user ("" for anonymous).
func (tr *testRegistry) opts(user, password string) []remote.Option {
	a := authn.Anonymous
	if user != "" {
		a = &authn.Basic{Username: user, Password: password}
	}
	return []remote.Option{remote.WithTransport(tr.transport), remote.WithAuth(a)}
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// statusOf extracts the HTTP status and first error code from a registry error.
func statusOf(err error) (int, string) {
	var terr *transport.Error
	if errors.As(err, &terr) {
		code := ""
		if len(terr.Errors) > 0 {
			code = string(terr.Errors[0].Code)
		}
		return terr.StatusCode, code
	}
	return 0, ""
}

// verifyImage reads every blob of img and checks it against its digest.
func verifyImage(img v1.Image) error { return imagecheck.Verify(img) }
