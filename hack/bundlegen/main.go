// Command bundlegen writes Dockyard's OLM bundle (registry+v1 format) from the output of
// `kustomize build config/manifests`, without operator-sdk:
//
//	kustomize build config/manifests | go run ./hack/bundlegen --out bundle --version 0.1.0 --image IMG
//
// It reads the multi-document YAML on stdin and writes
//
//	<out>/manifests/<group>_<plural>.yaml            one file per CustomResourceDefinition
//	<out>/manifests/dockyard.clusterserviceversion.yaml
//	<out>/manifests/<name>_<group>_<version>_<kind>.yaml  Services and ClusterRoles OLM installs as they are
//	<out>/metadata/annotations.yaml
//
// and, with --dockerfile, the bundle image's Dockerfile with the same annotations as LABELs.
// The ServiceAccount, the Roles and ClusterRoles bound to it and their bindings become the
// CSV's permissions and clusterPermissions (OLM creates them); the Namespace is dropped
// (OLM installs into the namespace of the OperatorGroup); the samples become alm-examples.
// The output is deterministic, so `make verify` can regenerate it and diff.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "bundlegen:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("bundlegen", flag.ContinueOnError)
	var o Options
	var out, dockerfile, channels string
	fs.StringVar(&out, "out", "bundle", "directory to write manifests/ and metadata/ into (both are replaced)")
	fs.StringVar(&dockerfile, "dockerfile", "", "also write the bundle image's Dockerfile to this path (COPY paths are relative to its directory)")
	fs.StringVar(&o.Version, "version", "", "semantic version of the operator, e.g. 0.1.0 (required)")
	fs.StringVar(&o.Image, "image", "", "operator image; replaces the manager container's image (and env values equal to it)")
	fs.StringVar(&o.Package, "package", "dockyard", "OLM package name")
	fs.StringVar(&channels, "channels", "alpha", "comma-separated channels of the bundle")
	fs.StringVar(&o.DefaultChannel, "default-channel", "alpha", "default channel of the package")
	fs.StringVar(&o.MinKubeVersion, "min-kube-version", DefaultMinKubeVersion, "oldest Kubernetes version the operator supports")
	if err := fs.Parse(args); err != nil {
		return err
	}
	o.Channels = splitList(channels)

	objs, err := ReadObjects(os.Stdin)
	if err != nil {
		return err
	}
	b, err := Generate(objs, o)
	if err != nil {
		return err
	}
	for _, dir := range []string{ManifestsDir, MetadataDir} {
		if err := os.RemoveAll(filepath.Join(out, dir)); err != nil {
			return fmt.Errorf("clean %s: %w", filepath.Join(out, dir), err)
		}
	}
	files := make([]string, 0, len(b.Files))
	for name := range b.Files {
		files = append(files, name)
	}
	sort.Strings(files)
	for _, name := range files {
		if err := writeFile(filepath.Join(out, name), b.Files[name]); err != nil {
			return err
		}
	}
	if dockerfile != "" {
		rel, err := filepath.Rel(filepath.Dir(dockerfile), out)
		if err != nil {
			return fmt.Errorf("locate %s from %s: %w", out, dockerfile, err)
		}
		if err := writeFile(dockerfile, Dockerfile(b.Annotations, filepath.ToSlash(rel))); err != nil {
			return err
		}
	}
	fmt.Fprintf(os.Stderr, "bundlegen: wrote %d files into %s\n", len(files), out)
	return nil
}

func writeFile(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("create directory for %s: %w", path, err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil { //nolint:gosec // bundle files are public manifests
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
