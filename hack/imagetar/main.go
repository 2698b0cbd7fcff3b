// Command imagetar builds a single-layer container image from files on disk and writes it
// as a `docker save`-style tarball (importable with `ctr images import` or `docker load`)
// — the way Dockyard's images are made where no Docker engine runs.
//
//	go run ./hack/imagetar --tag dockyard:dev --out bin/images/dockyard.tar \
//	    --file bin/linux/dockyard:/dockyard:0755 --entrypoint /dockyard --user 65532:65532
//
// The dockyard image has the same content as the Dockerfile's (distroless/static:nonroot
// plus /dockyard): the binary, a CA bundle, passwd/group entries for the non-root user and
// a sticky /tmp.
package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

type fileFlag []string

func (f *fileFlag) String() string     { return strings.Join(*f, ",") }
func (f *fileFlag) Set(v string) error { *f = append(*f, v); return nil }

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "imagetar:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("imagetar", flag.ContinueOnError)
	var files fileFlag
	tag := fs.String("tag", "", "image reference to record in the tarball, e.g. dockyard:dev")
	out := fs.String("out", "", "output tarball")
	entrypoint := fs.String("entrypoint", "", "entrypoint (space separated)")
	user := fs.String("user", "65532:65532", "user:group the image runs as")
	nonroot := fs.Bool("nonroot-base", true, "add /etc/passwd, /etc/group for the nonroot user (65532) and a CA bundle (/tmp is always there)")
	fs.Var(&files, "file", "SRC:DEST[:MODE] to copy into the image (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *tag == "" || *out == "" {
		return errors.New("--tag and --out are required")
	}
	layer, err := buildLayer(files, *nonroot)
	if err != nil {
		return err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = "linux", "amd64"
	cfg.Config.User = *user
	cfg.Config.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"}
	if *entrypoint != "" {
		cfg.Config.Entrypoint = strings.Fields(*entrypoint)
	}
	cfg.Created = v1.Time{Time: time.Unix(0, 0).UTC()}
	img, err = mutate.ConfigFile(img, cfg)
	if err != nil {
		return err
	}
	ref, err := name.NewTag(*tag)
	if err != nil {
		return fmt.Errorf("tag %q: %w", *tag, err)
	}
	if err := os.MkdirAll(filepath.Dir(*out), 0o755); err != nil {
		return err
	}
	if err := tarball.WriteToFile(*out, ref, img); err != nil {
		return fmt.Errorf("write %s: %w", *out, err)
	}
	d, _ := img.Digest()
	fmt.Printf("imagetar: wrote %s (%s, %s)\n", *out, ref.Name(), d)
	return nil
}

type entry struct {
	hdr  *tar.Header
	data []byte
}

// buildLayer writes a reproducible layer: fixed times, root ownership unless noted,
// parent directories created, entries sorted.
func buildLayer(files []string, nonroot bool) (v1.Layer, error) {
	entries := map[string]*entry{}
	epoch := time.Unix(0, 0).UTC()
	addDir := func(p string, mode int64) {
		for d := p; d != "." && d != "/" && d != ""; d = path.Dir(d) {
			if _, ok := entries[d+"/"]; !ok {
				entries[d+"/"] = &entry{hdr: &tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755, ModTime: epoch}}
			}
		}
		if mode != 0 {
			entries[p+"/"].hdr.Mode = mode
		}
	}
	addFile := func(dest string, data []byte, mode int64) {
		dest = strings.TrimPrefix(path.Clean("/"+dest), "/")
		addDir(path.Dir(dest), 0)
		entries[dest] = &entry{hdr: &tar.Header{Typeflag: tar.TypeReg, Name: dest, Mode: mode, Size: int64(len(data)), ModTime: epoch}, data: data}
	}
	if nonroot {
		addFile("etc/passwd", []byte("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"), 0o644)
		addFile("etc/group", []byte("root:x:0:\nnonroot:x:65532:\n"), 0o644)
		if ca, err := os.ReadFile("/etc/ssl/certs/ca-certificates.crt"); err == nil {
			addFile("etc/ssl/certs/ca-certificates.crt", ca, 0o644)
		}
		addDir("home/nonroot", 0o700)
		entries["home/nonroot/"].hdr.Uid, entries["home/nonroot/"].hdr.Gid = 65532, 65532
	}
	addDir("tmp", 0o1777) // writable scratch space in every image
	for _, f := range files {
		parts := strings.Split(f, ":")
		if len(parts) < 2 || len(parts) > 3 {
			return nil, fmt.Errorf("--file %q: want SRC:DEST[:MODE]", f)
		}
		data, err := os.ReadFile(parts[0])
		if err != nil {
			return nil, err
		}
		mode := int64(0o644)
		if len(parts) == 3 {
			m, err := strconv.ParseInt(parts[2], 8, 32)
			if err != nil {
				return nil, fmt.Errorf("--file %q: mode: %w", f, err)
			}
			mode = m
		}
		addFile(parts[1], data, mode)
	}
	names := make([]string, 0, len(entries))
	for n := range entries {
		names = append(names, n)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, n := range names {
		e := entries[n]
		e.hdr.Format = tar.FormatPAX
		if err := tw.WriteHeader(e.hdr); err != nil {
			return nil, err
		}
		if e.data != nil {
			if _, err := tw.Write(e.data); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	raw := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(raw)), nil })
}
