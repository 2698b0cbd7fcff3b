// Command registrybench measures a registry from the outside with one client,
// go-containerregistry, so that `dockyard registry serve` and upstream distribution are
// driven by exactly the same requests (see hack/bench-registry.sh).
//
//	registrybench pushpull -endpoint 127.0.0.1:5000 -user u -password p -ca ca.crt -label x -out x.json
//	    pushes a fixed, seeded set of images (3 random layers of 1–4 MiB each), then pulls
//	    them back (manifest, config, layers; digests verified) -pull-rounds times; records
//	    total bytes and wall time per phase and the latency of every HTTP request.
//	registrybench gcstore -endpoint ... -images 1700
//	    pushes many small seeded images (4 x 1 KiB layers) and deletes the manifests of every
//	    second one (half by digest, half by tag), leaving a store that is half garbage.
//	registrybench backdate -dir DIR -age 2h
//	    sets the mtime of everything under DIR to now-age, so collectors with a grace
//	    period see it as old.
//	registrybench report -a a1.json,a2.json -b b1.json,b2.json -gc-a c1.json -gc-b d1.json
//	    merges the runs of each registry and prints the tables and the ratios A/B.
package main

import (
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: registrybench pushpull|gcstore|backdate|report [flags]")
		os.Exit(2)
	}
	var err error
	switch cmd, args := os.Args[1], os.Args[2:]; cmd {
	case "pushpull":
		err = runPushPull(args)
	case "gcstore":
		err = runGCStore(args)
	case "backdate":
		err = runBackdate(args)
	case "report":
		err = runReport(args)
	default:
		err = fmt.Errorf("unknown command %q", cmd)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "registrybench:", err)
		os.Exit(1)
	}
}

// target is how to reach one registry.
type target struct {
	endpoint, user, password, ca string
}

func (t *target) flags(fs *flag.FlagSet) {
	fs.StringVar(&t.endpoint, "endpoint", "127.0.0.1:5000", "registry host:port (HTTPS)")
	fs.StringVar(&t.user, "user", "", "user name (basic auth)")
	fs.StringVar(&t.password, "password", "", "password")
	fs.StringVar(&t.ca, "ca", "", "CA certificate (PEM) the registry's certificate is signed by")
}

func (t *target) transport() (*http.Transport, error) {
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if t.ca != "" {
		pem, err := os.ReadFile(t.ca)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s: no certificates", t.ca)
		}
		tlsCfg.RootCAs = pool
	}
	return &http.Transport{TLSClientConfig: tlsCfg, ForceAttemptHTTP2: true, MaxIdleConns: 64,
		MaxIdleConnsPerHost: 64, IdleConnTimeout: time.Minute}, nil
}

func (t *target) auth() authn.Authenticator {
	if t.user == "" {
		return authn.Anonymous
	}
	return &authn.Basic{Username: t.user, Password: t.password}
}
