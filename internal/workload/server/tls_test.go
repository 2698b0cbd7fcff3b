package server_test

import (
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// servedSerial does a fresh TLS handshake and returns the serial of the served certificate.
func servedSerial(t *testing.T, reg *testRegistry) int64 {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", reg.host,
		&tls.Config{RootCAs: reg.ca.pool})
	if err != nil {
		t.Fatalf("TLS handshake: %v", err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
}

func TestTLSRotationDuringPush(t *testing.T) {
	reg := startRegistry(t, nil, nil)
	if got := servedSerial(t, reg); got != 2 {
		t.Fatalf("initial serial = %d, want 2", got)
	}
	// A push that takes ~2s because its layer trickles out.
	layer := newSlowLayer(2<<20, 32<<10, 30*time.Millisecond)
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		t.Fatal(err)
	}
	tag := mustTag(t, reg.host+"/rotate/app:v1")
	pushed := make(chan error, 1)
	go func() { pushed <- remote.Write(tag, img, reg.opts("", "")...) }()
	if !layer.started(10 * time.Second) {
		t.Fatal("push did not start uploading within 10s")
	}

	rotated := time.Now()
	reg.ca.issue(t, 3, reg.certFile, reg.keyFile)
	deadline := time.Now().Add(5 * time.Second)
	for servedSerial(t, reg) != 3 {
		if time.Now().After(deadline) {
			t.Fatal("new certificate not served within 5s of rotation")
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("new certificate served %v after rotation", time.Since(rotated).Round(time.Millisecond))
	select {
	case err := <-pushed:
		if err != nil {
			t.Fatalf("push in flight across the rotation failed: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("push did not finish within 60s")
	}
	// New connections with the new certificate pull the image intact.
	reg.transport.CloseIdleConnections()
	got, err := remote.Image(tag, reg.opts("", "")...)
	if err != nil {
		t.Fatalf("pull after rotation: %v", err)
	}
	if err := verifyImage(got); err != nil {
		t.Fatalf("image pushed across the rotation is broken: %v", err)
	}

	// A broken pair (key that does not match) is ignored; the last good cert stays.
	other := newCA(t)
	other.issue(t, 4, reg.certFile+".x", reg.keyFile)
	time.Sleep(600 * time.Millisecond)
	if got := servedSerial(t, reg); got != 3 {
		t.Errorf("after writing a mismatched key, serial = %d, want 3 (previous cert kept)", got)
	}
}
