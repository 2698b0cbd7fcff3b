// Package login is `dockyard login REGISTRY`: a person logs in to a Registry through its
// OpenID Connect provider (the OAuth2 device flow: open a URL, enter a code, sign in), and
// the docker / podman credentials file then holds a registry session (a refresh token the
// registry issued), so `docker push` and `podman pull` work until the session ends.
package login

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/dockyard-dev/dockyard/internal/registryconfig"
)

// Usage is the command's help.
const Usage = `usage: dockyard login [flags] REGISTRY

Logs in to a Dockyard registry through its OpenID Connect provider and stores a session in
the docker credentials file ($DOCKER_CONFIG/config.json, ~/.docker/config.json) or, with
--authfile, in a podman/skopeo auth file. docker, podman, skopeo, crane and containerd then
trade the session for registry tokens by themselves until it ends (spec.auth.tokens.sessionTTL).

By default the OAuth2 device flow is used: open the URL shown, enter the code, sign in.
With --username and --password-stdin, the provider's password grant is used instead (for
providers and clients that allow it; for scripts).

flags:
`

// Options are the command's inputs (flags and streams).
type Options struct {
	Registry      string
	CAFile        string
	ConfigDir     string
	AuthFile      string
	Username      string
	PasswordStdin bool
	Stdin         io.Reader
	Stdout        io.Writer
	Stderr        io.Writer
	// Timeout bounds the whole login, the device flow's wait for the person included.
	Timeout time.Duration
}

// Run parses args and logs in.
func Run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("login", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := Options{Stdin: stdin, Stdout: stdout, Stderr: stderr}
	fs.StringVar(&o.CAFile, "ca-file", "", "PEM bundle to trust for the registry and the OIDC provider (default: the system roots)")
	fs.StringVar(&o.ConfigDir, "config", "", "docker config directory (default $DOCKER_CONFIG, else ~/.docker)")
	fs.StringVar(&o.AuthFile, "authfile", "", "write this podman/skopeo auth file instead of the docker config")
	fs.StringVar(&o.Username, "username", "", "user name for the password grant (with --password-stdin)")
	fs.BoolVar(&o.PasswordStdin, "password-stdin", false, "read a password from stdin and use the password grant instead of the device flow")
	fs.DurationVar(&o.Timeout, "timeout", 10*time.Minute, "give up after this long")
	fs.Usage = func() { fmt.Fprint(stderr, Usage); fs.PrintDefaults() }
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return errors.New("login: name exactly one registry (host[:port])")
	}
	o.Registry = strings.TrimSuffix(strings.TrimPrefix(fs.Arg(0), "https://"), "/")
	return Login(ctx, o)
}

// Login logs in as o says.
func Login(ctx context.Context, o Options) error {
	if o.Registry == "" || strings.ContainsAny(o.Registry, "/ ") {
		return fmt.Errorf("login: %q is not a registry host[:port]", o.Registry)
	}
	if o.PasswordStdin && o.Username == "" {
		return errors.New("login: --password-stdin needs --username")
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	client, err := httpClient(o.CAFile)
	if err != nil {
		return err
	}
	ctx = oidc.ClientContext(ctx, client)

	info, err := loginInfo(ctx, client, o.Registry)
	if err != nil {
		return err
	}
	prov, err := oidc.NewProvider(ctx, info.Issuer)
	if err != nil {
		return fmt.Errorf("login: discover the OIDC provider %s: %w", info.Issuer, err)
	}
	conf := oauth2.Config{ClientID: info.ClientID, Endpoint: prov.Endpoint(), Scopes: info.Scopes}
	var tok *oauth2.Token
	if o.PasswordStdin {
		pw, err := io.ReadAll(io.LimitReader(o.Stdin, 64<<10))
		if err != nil {
			return fmt.Errorf("login: read the password: %w", err)
		}
		tok, err = conf.PasswordCredentialsToken(ctx, o.Username, strings.TrimRight(string(pw), "\r\n"))
		if err != nil {
			return fmt.Errorf("login: the provider refused the password grant: %w", err)
		}
	} else {
		if conf.Endpoint.DeviceAuthURL == "" {
			return fmt.Errorf("login: %s does not offer the device flow; use --username and --password-stdin", info.Issuer)
		}
		da, err := conf.DeviceAuth(ctx)
		if err != nil {
			return fmt.Errorf("login: start the device flow: %w", err)
		}
		where := da.VerificationURI
		if da.VerificationURIComplete != "" {
			where = da.VerificationURIComplete
		}
		fmt.Fprintf(o.Stderr, "To sign in, open %s\nand enter the code %s\nWaiting...\n", where, da.UserCode)
		tok, err = conf.DeviceAccessToken(ctx, da)
		if err != nil {
			return fmt.Errorf("login: the device flow did not complete: %w", err)
		}
	}
	idToken, _ := tok.Extra("id_token").(string)
	if idToken == "" {
		return errors.New("login: the provider returned no ID token (is the openid scope allowed for the client?)")
	}
	session, who, err := startSession(ctx, client, o.Registry, idToken)
	if err != nil {
		return err
	}
	path, err := writeCredentials(o, session)
	if err != nil {
		return err
	}
	fmt.Fprintf(o.Stdout, "Logged in to %s as %s; session stored in %s\n", o.Registry, who, path)
	return nil
}

func httpClient(caFile string) (*http.Client, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("login: read --ca-file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("login: %s holds no PEM certificate", caFile)
		}
		tc.RootCAs = pool
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tc
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}, nil
}

type info struct {
	Issuer   string   `json:"issuer"`
	ClientID string   `json:"clientID"`
	Scopes   []string `json:"scopes"`
}

// loginInfo asks the registry which provider and client to use.
func loginInfo(ctx context.Context, client *http.Client, registry string) (info, error) {
	var in info
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+registry+registryconfig.OIDCLoginPath, http.NoBody)
	if err != nil {
		return in, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return in, fmt.Errorf("login: reach %s: %w", registry, err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode == http.StatusNotFound {
		return in, fmt.Errorf("login: %s does not offer OIDC login (spec.auth.oidc.loginClientID is not set); use docker login", registry)
	}
	if resp.StatusCode != http.StatusOK {
		return in, fmt.Errorf("login: %s%s answered %s", registry, registryconfig.OIDCLoginPath, resp.Status)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&in); err != nil {
		return in, fmt.Errorf("login: unexpected answer from %s%s: %w", registry, registryconfig.OIDCLoginPath, err)
	}
	if in.Issuer == "" || in.ClientID == "" {
		return in, fmt.Errorf("login: %s%s names no issuer or client", registry, registryconfig.OIDCLoginPath)
	}
	return in, nil
}

// startSession trades the ID token for a registry session (a refresh token).
func startSession(ctx context.Context, client *http.Client, registry, idToken string) (string, string, error) {
	q := url.Values{"offline_token": {"true"}, "client_id": {"dockyard-login"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+registry+registryconfig.TokenPath+"?"+q.Encode(), http.NoBody)
	if err != nil {
		return "", "", err
	}
	req.SetBasicAuth("oidc", idToken)
	resp, err := client.Do(req)
	if err != nil {
		return "", "", fmt.Errorf("login: reach %s: %w", registry, err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return "", "", fmt.Errorf("login: the registry refused the ID token: %s %s", resp.Status, bytes.TrimSpace(body))
	}
	var out struct {
		RefreshToken string `json:"refresh_token"`
	}
	if err := json.Unmarshal(body, &out); err != nil || out.RefreshToken == "" {
		return "", "", errors.New("login: the registry issued no session (refresh token)")
	}
	return out.RefreshToken, subjectOf(out.RefreshToken), nil
}

// subjectOf reads a token's subject for the message (nothing is verified here).
func subjectOf(token string) string {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return "?"
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "?"
	}
	var c struct {
		Sub string `json:"sub"`
	}
	_ = json.Unmarshal(b, &c)
	return c.Sub
}

// writeCredentials stores the session for the registry in the docker config (or the auth
// file), keeping everything else in it, and returns the file's path.
func writeCredentials(o Options, session string) (string, error) {
	path := o.AuthFile
	if path == "" {
		dir := o.ConfigDir
		if dir == "" {
			dir = os.Getenv("DOCKER_CONFIG")
		}
		if dir == "" {
			home, err := os.UserHomeDir()
			if err != nil {
				return "", fmt.Errorf("login: find the docker config: %w", err)
			}
			dir = filepath.Join(home, ".docker")
		}
		path = filepath.Join(dir, "config.json")
	}
	doc := map[string]any{}
	if b, err := os.ReadFile(path); err == nil {
		if err := json.Unmarshal(b, &doc); err != nil {
			return "", fmt.Errorf("login: %s is not JSON; not touching it: %w", path, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("login: read %s: %w", path, err)
	}
	auths, _ := doc["auths"].(map[string]any)
	if auths == nil {
		auths = map[string]any{}
	}
	// docker's convention for identity tokens: the user name "<token>", no password.
	auths[o.Registry] = map[string]any{
		"auth":          base64.StdEncoding.EncodeToString([]byte("<token>:")),
		"identitytoken": session,
	}
	doc["auths"] = auths
	if helpers, _ := doc["credHelpers"].(map[string]any); helpers[o.Registry] != nil || doc["credsStore"] != nil {
		fmt.Fprintf(o.Stderr, "warning: %s names a credential helper, which docker asks instead of this file for %s\n", path, o.Registry)
	}
	out, err := json.MarshalIndent(doc, "", "\t")
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", fmt.Errorf("login: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".config-*.json")
	if err != nil {
		return "", fmt.Errorf("login: %w", err)
	}
	defer func() { _ = os.Remove(tmp.Name()) }()
	if _, err := tmp.Write(append(out, '\n')); err != nil {
		_ = tmp.Close()
		return "", fmt.Errorf("login: write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return "", err
	}
	if err := os.Chmod(tmp.Name(), 0o600); err != nil {
		return "", err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return "", fmt.Errorf("login: write %s: %w", path, err)
	}
	return path, nil
}
