package server

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"sync"
)

// certReloader serves the certificate in certFile/keyFile and picks up new files without a
// restart. Mounted Secrets change by a symlink swap, so the files are re-read and compared
// by content on every poll; a pair that does not load keeps the previous certificate.
type certReloader struct {
	certFile, keyFile string
	log               *slog.Logger

	mu              sync.RWMutex
	cert            *tls.Certificate
	certPEM, keyPEM []byte
	// badCert and badKey are the last pair that failed to load, reported once.
	badCert, badKey []byte
}

func newCertReloader(certFile, keyFile string, log *slog.Logger) (*certReloader, error) {
	r := &certReloader{certFile: certFile, keyFile: keyFile, log: log}
	if _, err := r.reload(); err != nil {
		return nil, err
	}
	return r, nil
}

// reload reads the files and swaps in the pair if it changed and is valid.
func (r *certReloader) reload() (bool, error) {
	certPEM, err := os.ReadFile(r.certFile)
	if err != nil {
		return false, fmt.Errorf("read TLS certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(r.keyFile)
	if err != nil {
		return false, fmt.Errorf("read TLS key: %w", err)
	}
	r.mu.RLock()
	same := bytes.Equal(certPEM, r.certPEM) && bytes.Equal(keyPEM, r.keyPEM)
	r.mu.RUnlock()
	if same || (bytes.Equal(certPEM, r.badCert) && bytes.Equal(keyPEM, r.badKey)) {
		return false, nil
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		// Files are often written one after the other; the next poll sees the pair. Report
		// a given bad pair once.
		r.badCert, r.badKey = certPEM, keyPEM
		return false, fmt.Errorf("load TLS key pair %s, %s: %w", r.certFile, r.keyFile, err)
	}
	r.mu.Lock()
	r.cert, r.certPEM, r.keyPEM = &cert, certPEM, keyPEM
	r.mu.Unlock()
	if cert.Leaf != nil {
		r.log.Info("Loaded TLS certificate", "subject", cert.Leaf.Subject.String(),
			"notAfter", cert.Leaf.NotAfter, "serial", cert.Leaf.SerialNumber.String())
	}
	return true, nil
}

func (r *certReloader) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.cert, nil
}
