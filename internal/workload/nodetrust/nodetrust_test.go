package nodetrust

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dockyard-dev/dockyard/internal/testfixture"
)

func caPEM(t *testing.T) []byte {
	t.Helper()
	f, err := testfixture.Write(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return f.CAPEM
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestInstallAndRemove(t *testing.T) {
	ca := caPEM(t)
	cd, crio := t.TempDir(), t.TempDir()
	const host = "registry.team.svc:5000"
	o := Options{Hosts: []string{host, "registry.example.com"}, ContainerdDir: cd, CRIODir: crio, Owner: "pod-a", Registry: "team/registry"}
	if err := Install(o, ca); err != nil {
		t.Fatal(err)
	}
	toml := read(t, filepath.Join(cd, host, HostsFile))
	for _, want := range []string{`server = "https://registry.team.svc:5000"`, `[host."https://registry.team.svc:5000"]`,
		`capabilities = ["pull", "resolve"]`, `ca = "` + filepath.Join(cd, host, CAFile) + `"`} {
		if !strings.Contains(toml, want) {
			t.Errorf("hosts.toml lacks %s:\n%s", want, toml)
		}
	}
	if read(t, filepath.Join(cd, host, CAFile)) != string(ca) || read(t, filepath.Join(crio, host, CAFile)) != string(ca) {
		t.Error("the CA is not installed for containerd and CRI-O")
	}

	// A rolling update: the new pod writes, the old pod's cleanup leaves its files.
	o2 := o
	o2.Owner = "pod-b"
	if err := Install(o2, ca); err != nil {
		t.Fatal(err)
	}
	if err := Remove(o); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(cd, host, HostsFile)); err != nil {
		t.Errorf("the old pod removed the new pod's files: %v", err)
	}
	if err := Remove(o2); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{filepath.Join(cd, host), filepath.Join(crio, host), filepath.Join(cd, "registry.example.com")} {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Errorf("%s left behind: %v", d, err)
		}
	}
}

func TestLeavesOthersAlone(t *testing.T) {
	ca := caPEM(t)
	cd := t.TempDir()
	// Someone configured this host already.
	foreign := filepath.Join(cd, "mine.example.com")
	if err := os.Mkdir(foreign, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(foreign, HostsFile), []byte("server = \"https://mirror\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A symlink planted where a host directory would go must not be followed.
	target := t.TempDir()
	if err := os.Symlink(target, filepath.Join(cd, "link.example.com")); err != nil {
		t.Fatal(err)
	}
	o := Options{Hosts: []string{"mine.example.com", "link.example.com"}, ContainerdDir: cd, Owner: "pod-a", Registry: "team/registry"}
	if err := Install(o, ca); err != nil {
		t.Fatal(err)
	}
	if got := read(t, filepath.Join(foreign, HostsFile)); got != "server = \"https://mirror\"\n" {
		t.Errorf("a foreign hosts.toml was changed: %s", got)
	}
	if entries, _ := os.ReadDir(target); len(entries) != 0 {
		t.Errorf("files written through a symlink: %v", entries)
	}
	if err := Remove(o); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(foreign, HostsFile)); err != nil {
		t.Errorf("a foreign hosts.toml was removed: %v", err)
	}
}

func TestRunFollowsTheCAAndCleansUp(t *testing.T) {
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(caFile, caPEM(t), 0o644); err != nil {
		t.Fatal(err)
	}
	cd := t.TempDir()
	const host = "r.ns.svc:5000"
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{CAFile: caFile, Hosts: []string{host}, ContainerdDir: cd, Owner: "p", Registry: "team/registry", Interval: 20 * time.Millisecond})
	}()
	installed := filepath.Join(cd, host, CAFile)
	waitFor(t, func() bool { b, _ := os.ReadFile(installed); return len(b) > 0 })
	// A renewed CA (a new bundle in the mounted Secret) replaces the installed one.
	next := caPEM(t)
	if err := os.WriteFile(caFile, next, 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { b, _ := os.ReadFile(installed); return string(b) == string(next) })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(cd, host)); !os.IsNotExist(err) {
		t.Errorf("not cleaned up on stop: %v", err)
	}
}

func TestRefusesBadInput(t *testing.T) {
	for _, h := range []string{"", "../etc", "a/b", ".hidden", "UPPER.example.com", "a b"} {
		if ValidHost(h) {
			t.Errorf("ValidHost(%q) = true", h)
		}
	}
	err := Run(context.Background(), Options{Hosts: []string{"../../etc"}, ContainerdDir: t.TempDir(), Owner: "p", Registry: "a/b"})
	if err == nil {
		t.Error("a host with .. must be refused")
	}
	if _, err := readCA(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("a missing CA file must be an error")
	}
	f := filepath.Join(t.TempDir(), "ca.crt")
	_ = os.WriteFile(f, []byte("not a certificate"), 0o644)
	if _, err := readCA(f); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Errorf("a CA file without certificates: %v", err)
	}
}

func waitFor(t *testing.T, ok func() bool) {
	t.Helper()
	for i := 0; i < 250; i++ {
		if ok() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("condition not met within 5s")
}

func TestAnotherRegistrysHostIsLeftAlone(t *testing.T) {
	ca, other := caPEM(t), caPEM(t)
	cd := t.TempDir()
	const host = "registry.example.com"
	first := Options{Hosts: []string{host}, ContainerdDir: cd, Owner: "pod-1", Registry: "team-a/one"}
	if err := Install(first, ca); err != nil {
		t.Fatal(err)
	}
	second := Options{Hosts: []string{host}, ContainerdDir: cd, Owner: "pod-2", Registry: "team-b/two"}
	if err := Install(second, other); err != nil {
		t.Fatal(err)
	}
	if read(t, filepath.Join(cd, host, CAFile)) != string(ca) {
		t.Error("a second Registry with the same host replaced the first one's CA")
	}
	if err := Remove(second); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(cd, host, CAFile)); err != nil {
		t.Errorf("the second Registry's agent removed the first one's files: %v", err)
	}
}

func TestRunRestoresRemovedFiles(t *testing.T) {
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(caFile, caPEM(t), 0o644); err != nil {
		t.Fatal(err)
	}
	cd := t.TempDir()
	const host = "r.ns.svc:5000"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		_ = Run(ctx, Options{CAFile: caFile, Hosts: []string{host}, ContainerdDir: cd, Owner: "new", Registry: "ns/r", Interval: 20 * time.Millisecond})
	}()
	hosts := filepath.Join(cd, host, HostsFile)
	waitFor(t, func() bool { _, err := os.Stat(hosts); return err == nil })
	// The previous pod of a rolling update held the marker last and cleaned up on exit.
	// Run rewrites the files every 20ms, so RemoveAll can race with it ("directory not
	// empty"): try again, a bounded number of times.
	var err error
	for range 50 {
		if err = os.RemoveAll(filepath.Join(cd, host)); err == nil {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { _, err := os.Stat(hosts); return err == nil })
}
