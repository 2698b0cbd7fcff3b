package admission

import (
	"slices"
	"testing"
)

// TestParseImage reads references as the kubelet does: a missing tag is latest, a digest
// wins over a tag, the host is what decides which Registry is asked.
func TestParseImage(t *testing.T) {
	for _, tc := range []struct{ in, ref, host string }{
		{"main.team-a.svc:5000/app", "main.team-a.svc:5000/app:latest", "main.team-a.svc:5000"},
		{"main.team-a.svc:5000/team/app:v1", "main.team-a.svc:5000/team/app:v1", "main.team-a.svc:5000"},
		{"Registry.Example.com/app:v1", "Registry.Example.com/app:v1", "Registry.Example.com"},
		{"main.team-a.svc:5000/app:v1@sha256:" + hex64, "main.team-a.svc:5000/app@sha256:" + hex64, "main.team-a.svc:5000"},
		{"busybox", "index.docker.io/library/busybox:latest", "docker.io"},
	} {
		ref, host, ok := parseImage(tc.in)
		if !ok || ref.Name() != tc.ref || host != tc.host {
			t.Errorf("parseImage(%q) = %v, %q, %v; want %q, %q", tc.in, ref, host, ok, tc.ref, tc.host)
		}
	}
	for _, bad := range []string{"", "UPPER/app", "app:tag:tag", "host/app@sha256:short"} {
		if _, _, ok := parseImage(bad); ok {
			t.Errorf("parseImage(%q) accepted", bad)
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
