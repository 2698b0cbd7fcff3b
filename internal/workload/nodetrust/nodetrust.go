// Package nodetrust is the node agent of spec.nodeTrust: run by a DaemonSet on every node,
// it installs a Registry's CA where the container runtime looks for it — containerd's
// certs.d/<host>/hosts.toml with the CA beside it, CRI-O's (containers-certs.d)
// certs.d/<host>/*.crt — keeps it current as the certificate is renewed, and removes what
// it wrote when it stops (the DaemonSet is deleted with the Registry or with nodeTrust).
//
// It writes nothing but its own files under <dir>/<host>/: a directory whose hosts.toml
// someone else wrote is left alone, and symlinks are never followed. A marker file names
// the pod that wrote the files, so during a rolling update the old pod's cleanup does not
// remove what the new pod has just written.
package nodetrust

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Files the agent writes in each host directory.
const (
	CAFile     = "dockyard-ca.crt"
	HostsFile  = "hosts.toml"
	MarkerFile = ".dockyard-node-trust"
)

// Options configure the agent.
type Options struct {
	// CAFile is the PEM bundle to install (the ca.crt key of the Registry's TLS Secret).
	CAFile string
	// Hosts are the host[:port] names nodes pull from.
	Hosts []string
	// ContainerdDir is containerd's config_path (certs.d); empty skips containerd.
	ContainerdDir string
	// CRIODir is the containers-certs.d directory CRI-O reads; empty skips CRI-O.
	CRIODir string
	// Owner identifies this agent instance (the pod UID) in the marker files.
	Owner string
	// Registry is the namespace/name of the Registry; a host directory another Registry's
	// agent wrote is left alone.
	Registry string
	// Interval between checks of the CA file. Default 10s.
	Interval time.Duration
	Log      *slog.Logger
}

// ValidHost reports whether h is a host[:port] the agent may create a directory for.
func ValidHost(h string) bool {
	if h == "" || len(h) > 260 || strings.Contains(h, "..") || strings.HasPrefix(h, ".") {
		return false
	}
	for _, r := range h {
		if (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '-' && r != '.' && r != ':' {
			return false
		}
	}
	return true
}

// Run installs the CA until ctx ends, then removes what it wrote.
func Run(ctx context.Context, o Options) error {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Interval == 0 {
		o.Interval = 10 * time.Second
	}
	if o.ContainerdDir == "" && o.CRIODir == "" {
		return errors.New("node-trust: set a containerd or a CRI-O directory")
	}
	for _, h := range o.Hosts {
		if !ValidHost(h) {
			return fmt.Errorf("node-trust: %q is not a host[:port]", h)
		}
	}
	if o.Owner == "" || o.Registry == "" {
		return errors.New("node-trust: an owner (the pod UID) and the Registry (namespace/name) are required")
	}
	var last []byte
	t := time.NewTicker(o.Interval)
	defer t.Stop()
	for {
		// Every tick, not only when the CA changes: files removed by the previous pod of a
		// rolling update (or by hand) come back.
		ca, err := readCA(o.CAFile)
		switch {
		case err != nil:
			o.Log.Warn("CA not installed", "err", err)
		default:
			if err := Install(o, ca); err != nil {
				o.Log.Error("Install the CA", "err", err)
			} else if !bytes.Equal(ca, last) {
				o.Log.Info("Installed the registry CA", "hosts", o.Hosts)
				last = ca
			}
		}
		select {
		case <-ctx.Done():
			if err := Remove(o); err != nil {
				return err
			}
			o.Log.Info("Removed the registry CA", "hosts", o.Hosts)
			return nil
		case <-t.C:
		}
	}
}

// readCA reads a PEM bundle and checks it holds at least one certificate.
func readCA(path string) ([]byte, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	rest, n := raw, 0
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type == "CERTIFICATE" {
			if _, err := x509.ParseCertificate(b.Bytes); err != nil {
				return nil, fmt.Errorf("%s: %w", path, err)
			}
			n++
		}
	}
	if n == 0 {
		return nil, fmt.Errorf("%s holds no PEM certificate (is the certificate's issuer a CA that sets ca.crt?)", path)
	}
	return raw, nil
}

// hostsTOML is containerd's per-registry configuration: pull and resolve from the host
// itself, trusting the CA beside it.
func hostsTOML(host, caPath string) []byte {
	return fmt.Appendf(nil, "# Written by Dockyard's node-trust agent; removed with the Registry.\nserver = %q\n\n[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n  ca = %q\n",
		"https://"+host, "https://"+host, caPath)
}

// Install writes the CA (and containerd's hosts.toml) for every host.
func Install(o Options, ca []byte) error {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	var errs []error
	for _, h := range o.Hosts {
		if o.ContainerdDir != "" {
			dir := filepath.Join(o.ContainerdDir, h)
			caPath := filepath.Join(dir, CAFile)
			errs = append(errs, writeOwned(dir, o.marker(), map[string][]byte{CAFile: ca, HostsFile: hostsTOML(h, caPath)}, o.Log))
		}
		if o.CRIODir != "" {
			errs = append(errs, writeOwned(filepath.Join(o.CRIODir, h), o.marker(), map[string][]byte{CAFile: ca}, o.Log))
		}
	}
	return errors.Join(errs...)
}

// errForeign marks a host directory someone else configured.
var errForeign = errors.New("configured by someone else")

// ensureDir makes dir (one level under an existing base) unless it is a symlink or a file.
func ensureDir(dir string) error {
	fi, err := os.Lstat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return os.Mkdir(dir, 0o755)
	case err != nil:
		return err
	case !fi.IsDir():
		return fmt.Errorf("%s: %w (not a directory)", dir, errForeign)
	}
	return nil
}

// marker is the content of the marker file: the Registry, then the pod.
func (o Options) marker() string { return o.Registry + " " + o.Owner + "\n" }

// markerOwner parses a marker file: the Registry and the pod that wrote it.
func markerOwner(dir string) (registry, pod string, ok bool) {
	raw, err := os.ReadFile(filepath.Join(dir, MarkerFile))
	if err != nil {
		return "", "", false
	}
	registry, pod, _ = strings.Cut(strings.TrimSpace(string(raw)), " ")
	return registry, pod, true
}

// writeOwned writes files into dir with the marker, unless dir holds a hosts.toml no agent
// wrote or files another Registry's agent wrote. Files already as wanted are not rewritten.
func writeOwned(dir, marker string, files map[string][]byte, log *slog.Logger) error {
	if err := ensureDir(dir); err != nil {
		if errors.Is(err, errForeign) {
			log.Warn("Left alone", "dir", dir, "err", err)
			return nil
		}
		return err
	}
	registry, _, marked := markerOwner(dir)
	if !marked {
		if _, err := os.Lstat(filepath.Join(dir, HostsFile)); err == nil {
			log.Warn("Left alone: a hosts.toml Dockyard did not write is there", "dir", dir)
			return nil
		}
	}
	if want, _, _ := strings.Cut(marker, " "); marked && registry != want {
		log.Warn("Left alone: another Registry serves this host", "dir", dir, "registry", registry)
		return nil
	}
	if err := writeIfChanged(dir, MarkerFile, []byte(marker)); err != nil {
		return err
	}
	for name, data := range files {
		if err := writeIfChanged(dir, name, data); err != nil {
			return err
		}
	}
	return nil
}

// writeIfChanged replaces dir/name with data unless it already holds it. The new content
// goes to a fresh temporary file (O_EXCL: never through a planted symlink) renamed over
// the old one, so readers see the old or the new file.
func writeIfChanged(dir, name string, data []byte) error {
	path := filepath.Join(dir, name)
	if fi, err := os.Lstat(path); err == nil {
		if !fi.Mode().IsRegular() {
			return fmt.Errorf("%s: %w (not a regular file)", path, errForeign)
		}
		if cur, err := os.ReadFile(path); err == nil && bytes.Equal(cur, data) {
			return nil
		}
	}
	f, err := os.CreateTemp(dir, "."+name+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, werr := f.Write(data)
	cerr := f.Close()
	if err := errors.Join(werr, cerr, os.Chmod(tmp, 0o644)); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}

// Remove deletes the files this owner wrote (and the host directories left empty).
func Remove(o Options) error {
	var errs []error
	for _, h := range o.Hosts {
		for _, base := range []string{o.ContainerdDir, o.CRIODir} {
			if base == "" {
				continue
			}
			dir := filepath.Join(base, h)
			registry, pod, ok := markerOwner(dir)
			if !ok || registry != o.Registry || pod != o.Owner {
				continue // not ours, or another instance took over
			}
			for _, name := range []string{HostsFile, CAFile, MarkerFile} {
				if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
					errs = append(errs, err)
				}
			}
			_ = os.Remove(dir) // only when empty
		}
	}
	return errors.Join(errs...)
}
