// Command devregistry writes what `dockyard registry serve` needs on a developer machine or
// in a script: a CA, a serving certificate for 127.0.0.1/localhost, a bcrypt users file and
// a config file with filesystem storage, TLS and auth. It only writes files.
//
//	go run ./hack/devregistry -dir /tmp/reg -addr 127.0.0.1:5000 -metrics 127.0.0.1:5001 -user alice -password secret
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"flag"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/dockyard-dev/dockyard/internal/registryconfig"
)

func main() {
	dir := flag.String("dir", "", "output directory (required)")
	addr := flag.String("addr", "127.0.0.1:5000", "registry API address")
	metrics := flag.String("metrics", "127.0.0.1:5001", "metrics address")
	user := flag.String("user", "dev", "user name")
	password := flag.String("password", "dev-password", "password")
	noAuth := flag.Bool("no-auth", false, "leave authentication off")
	noTLS := flag.Bool("no-tls", false, "serve plain HTTP")
	grace := flag.Duration("gc-grace", time.Hour, "gc grace period")
	flag.Parse()
	if *dir == "" {
		fmt.Fprintln(os.Stderr, "devregistry: -dir is required")
		os.Exit(2)
	}
	if err := write(*dir, *addr, *metrics, *user, *password, !*noAuth, !*noTLS, *grace); err != nil {
		fmt.Fprintln(os.Stderr, "devregistry:", err)
		os.Exit(1)
	}
	fmt.Println(filepath.Join(*dir, "config.yaml"))
}

func write(dir, addr, metrics, user, password string, auth, useTLS bool, grace time.Duration) error {
	for _, d := range []string{"tls", "users", "data"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return err
		}
	}
	cfg := registryconfig.Config{
		APIVersion: registryconfig.APIVersion,
		HTTP:       registryconfig.HTTP{Addr: addr},
		Metrics:    registryconfig.Metrics{Addr: metrics},
		Storage: registryconfig.Storage{Filesystem: &registryconfig.FilesystemStorage{
			RootDirectory: filepath.Join(dir, "data")}},
		GC:  registryconfig.GC{DeleteUntagged: true, GracePeriod: registryconfig.Duration{Duration: grace}},
		Log: registryconfig.Log{Level: "warn", Format: "json"},
	}
	if useTLS {
		if err := writeCerts(filepath.Join(dir, "tls")); err != nil {
			return fmt.Errorf("write certificates: %w", err)
		}
		cfg.HTTP.TLS = &registryconfig.TLS{CertFile: filepath.Join(dir, "tls", "tls.crt"),
			KeyFile: filepath.Join(dir, "tls", "tls.key")}
	}
	if auth {
		hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.DefaultCost)
		if err != nil {
			return err
		}
		users := filepath.Join(dir, "users", registryconfig.UsersHtpasswdKey)
		if err := os.WriteFile(users, []byte(user+":"+string(hash)+"\n"), 0o600); err != nil {
			return err
		}
		cfg.Auth = &registryconfig.Auth{HtpasswdFile: users}
	}
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return err
	}
	out, err := cfg.Marshal()
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "config.yaml"), out, 0o600)
}

func writeCerts(dir string) error {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	ca := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "dockyard dev CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(30 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(30 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return err
	}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	files := map[string][]byte{
		registryconfig.TLSCAFile:   pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		registryconfig.TLSCertFile: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		registryconfig.TLSKeyFile:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return err
		}
	}
	return nil
}
