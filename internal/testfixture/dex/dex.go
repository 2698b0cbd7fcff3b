// Package dex runs a real OpenID Connect provider (dex, built by hack/build-dex.sh) for
// tests: a private instance on 127.0.0.1 with a free port, HTTPS from a CA made for the
// test, in-memory storage, static users with groups, a confidential client that may use
// the password grant and a public client for the device flow.
//
// The binary comes from DOCKYARD_DEX (`make test` sets it); without it the tests skip,
// unless DOCKYARD_REQUIRE_CLIENTS is set, where they fail.
package dex

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/dockyard-dev/dockyard/internal/testfixture"
)

// Clients of every instance.
const (
	// ClientID may use the password grant (with ClientSecret); its tokens' audience.
	ClientID     = "dockyard"
	ClientSecret = "dockyard-client-secret"
	// OtherClientID is another confidential client: its tokens carry another audience.
	OtherClientID     = "other-app"
	OtherClientSecret = "other-app-secret"
	// LoginClientID is public (no secret) and may use the device flow.
	LoginClientID = "dockyard-login"
)

// User is a static user of the instance.
type User struct {
	Email, Name, Password string
	Groups                []string
}

// Options tune an instance.
type Options struct {
	// IDTokenTTL is the lifetime of ID tokens (dex's expiry.idTokens). Default 10m.
	IDTokenTTL string
	// SigningKeyTTL is how long dex signs with one key (expiry.signingKeys); dex checks
	// every 30 s whether to rotate. Default 6h.
	SigningKeyTTL string
}

// TB is what the fixture needs of a test.
type TB = testfixture.TB

// Server is a running dex.
type Server struct {
	// Issuer is https://127.0.0.1:port/dex.
	Issuer string
	// CAPEM and CAFile are the CA that signed dex's certificate.
	CAPEM  []byte
	CAFile string
	// Client trusts the CA.
	Client *http.Client
}

// Binary returns dex's path, or skips (fails under DOCKYARD_REQUIRE_CLIENTS) without it.
func Binary(t TB) string {
	t.Helper()
	p := os.Getenv("DOCKYARD_DEX")
	if p != "" {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	testfixture.Missing(t, "dex is not built (DOCKYARD_DEX=$(hack/build-dex.sh); make test does it)")
	return ""
}

// Start runs dex with users and stops it when the test ends.
func Start(t TB, users []User, opts Options) *Server {
	t.Helper()
	bin := Binary(t)
	dir := t.TempDir()
	certs, err := testfixture.Write(dir)
	if err != nil {
		t.Fatal(err)
	}
	port, err := testfixture.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	if opts.IDTokenTTL == "" {
		opts.IDTokenTTL = "10m"
	}
	if opts.SigningKeyTTL == "" {
		opts.SigningKeyTTL = "6h"
	}
	s := &Server{Issuer: fmt.Sprintf("https://127.0.0.1:%d/dex", port), CAPEM: certs.CAPEM, CAFile: certs.CAFile}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certs.CAPEM)
	s.Client = &http.Client{Timeout: 10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}

	var static []map[string]any
	for i, u := range users {
		h, err := bcrypt.GenerateFromPassword([]byte(u.Password), bcrypt.DefaultCost)
		if err != nil {
			t.Fatal(err)
		}
		static = append(static, map[string]any{"email": u.Email, "username": u.Name, "userID": fmt.Sprintf("user-%d", i),
			"hash": string(h), "groups": u.Groups})
	}
	cfg := map[string]any{
		"issuer":  s.Issuer,
		"storage": map[string]any{"type": "memory"},
		"web":     map[string]any{"https": fmt.Sprintf("127.0.0.1:%d", port), "tlsCert": certs.CertFile, "tlsKey": certs.KeyFile},
		"logger":  map[string]any{"level": "warn"},
		"expiry":  map[string]any{"idTokens": opts.IDTokenTTL, "signingKeys": opts.SigningKeyTTL},
		"oauth2": map[string]any{
			"passwordConnector":  "local",
			"skipApprovalScreen": true,
			"grantTypes": []string{"authorization_code", "refresh_token", "password",
				"urn:ietf:params:oauth:grant-type:device_code"},
		},
		"enablePasswordDB": true,
		"staticPasswords":  static,
		"staticClients": []map[string]any{
			{"id": ClientID, "secret": ClientSecret, "name": "Dockyard", "redirectURIs": []string{"http://127.0.0.1:5555/callback"}},
			{"id": OtherClientID, "secret": OtherClientSecret, "name": "Other", "redirectURIs": []string{"http://127.0.0.1:5556/callback"}},
			{"id": LoginClientID, "public": true, "name": "dockyard login", "redirectURIs": []string{"/device/callback"}},
		},
	}
	b, _ := json.Marshal(cfg)
	conf := filepath.Join(dir, "dex.json")
	if err := os.WriteFile(conf, b, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "serve", conf)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start dex: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() { cancel(); <-exited })
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := s.Client.Get(s.Issuer + "/.well-known/openid-configuration")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s
			}
		}
		select {
		case <-exited:
			t.Fatalf("dex exited at start (see its output above): %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("dex did not answer within 30s: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// PasswordToken logs in with the password grant for clientID/secret and returns the ID
// token.
func (s *Server) PasswordToken(clientID, secret, email, password string) (string, error) {
	form := url.Values{"grant_type": {"password"}, "username": {email}, "password": {password},
		"scope": {"openid email profile groups offline_access"}}
	req, _ := http.NewRequest(http.MethodPost, s.Issuer+"/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(clientID, secret)
	resp, err := s.Client.Do(req)
	if err != nil {
		return "", err
	}
	defer func() { _ = resp.Body.Close() }()
	var body struct {
		IDToken string `json:"id_token"`
		Error   string `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK || body.IDToken == "" {
		return "", fmt.Errorf("password grant: %d %s", resp.StatusCode, body.Error)
	}
	return body.IDToken, nil
}

// ApproveDevice does what a person does in a browser for the device flow: opens the
// verification page with userCode, logs in with email and password, and approves.
func (s *Server) ApproveDevice(userCode, email, password string) error {
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Transport: s.Client.Transport, Jar: jar, Timeout: 10 * time.Second}
	// The code form; dex redirects to the login form of its (only) password connector.
	resp, err := c.PostForm(s.Issuer+"/device/auth/verify_code", url.Values{"user_code": {userCode}})
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	login := resp.Request.URL
	if resp.StatusCode != http.StatusOK || !strings.Contains(login.Path, "/auth/local") {
		return fmt.Errorf("device code form led to %s (%d), not the login form", login, resp.StatusCode)
	}
	resp, err = c.PostForm(login.String(), url.Values{"login": {email}, "password": {password}})
	if err != nil {
		return err
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(resp.Request.URL.Path, "/device/callback") {
		return errors.New("login did not complete the device flow: " + resp.Request.URL.String() + ": " + string(body[:min(len(body), 200)]))
	}
	return nil
}
