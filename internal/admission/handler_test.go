package admission

import (
	"slices"
	"testing"
)

// TestParseImage reads references as the kubelet does: a missing tag is latest, a digest
// wins over a tag; the host that decides which Registry is asked is the host name in lower
// case, whatever port; a reference with a host that go-containerregistry cannot read
// still reports the host (so a Registry's image is refused, not let through).
func TestParseImage(t *testing.T) {
	for _, tc := range []struct{ in, ref, host string }{
		{"main.team-a.svc:5000/app", "main.team-a.svc:5000/app:latest", "main.team-a.svc"},
		{"main.team-a.svc:05000/team/app:v1", "main.team-a.svc:05000/team/app:v1", "main.team-a.svc"},
		{"Registry.Example.com/app:v1", "Registry.Example.com/app:v1", "registry.example.com"},
		{"main.team-a.svc:5000/app:v1@sha256:" + hex64, "main.team-a.svc:5000/app@sha256:" + hex64, "main.team-a.svc"},
		{"busybox", "index.docker.io/library/busybox:latest", "docker.io"},
	} {
		ref, host, ok := parseImage(tc.in)
		if !ok || ref.Name() != tc.ref || host != tc.host {
			t.Errorf("parseImage(%q) = %v, %q, %v; want %q, %q", tc.in, ref, host, ok, tc.ref, tc.host)
		}
	}
	for _, bad := range []string{"", "app:tag:tag", "host.example/app@sha256:short"} {
		if _, host, ok := parseImage(bad); ok || host != "" {
			t.Errorf("parseImage(%q) accepted (host %q)", bad, host)
		}
	}
}

// TestMatchesHost: exact names, and a wildcard covers exactly one label.
func TestMatchesHost(t *testing.T) {
	names := []string{"main.team-a.svc", "*.registry.example.com"}
	for host, want := range map[string]bool{"main.team-a.svc": true, "eu.registry.example.com": true,
		"registry.example.com": false, "a.b.registry.example.com": false, "main.team-b.svc": false} {
		if got := matchesHost(names, host); got != want {
			t.Errorf("matchesHost(%q) = %v", host, got)
		}
	}
}

const hex64 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// TestPodImages finds every container's image (init, regular, ephemeral) in each kind
// the webhook is registered for, once each.
func TestPodImages(t *testing.T) {
	spec := `{"initContainers":[{"name":"i","image":"r/init"}],"containers":[{"name":"a","image":"r/app"},{"name":"b","image":"r/app"}],` +
		`"ephemeralContainers":[{"name":"e","image":"r/debug"}]}`
	want := []string{"r/init", "r/app", "r/debug"}
	for kind, obj := range map[string]string{
		"Pod":         `{"spec":` + spec + `}`,
		"Deployment":  `{"spec":{"template":{"spec":` + spec + `}}}`,
		"StatefulSet": `{"spec":{"template":{"spec":` + spec + `}}}`,
		"DaemonSet":   `{"spec":{"template":{"spec":` + spec + `}}}`,
		"ReplicaSet":  `{"spec":{"template":{"spec":` + spec + `}}}`,
		"Job":         `{"spec":{"template":{"spec":` + spec + `}}}`,
		"CronJob":     `{"spec":{"jobTemplate":{"spec":{"template":{"spec":` + spec + `}}}}}`,
	} {
		got, err := podImages(kind, []byte(obj))
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("%s: %v, %v; want %v", kind, got, err, want)
		}
	}
	if _, err := podImages("Service", []byte(`{}`)); err == nil {
		t.Error("an unknown kind was read")
	}
}
