package registry

import (
	"testing"

	"github.com/dockyard-dev/dockyard/internal/registryconfig"
)

// With an events URL, registry pods send pushes to the operator with a token good for
// nothing else; without one, nothing about events is rendered.
func TestEventsTokenAndConfig(t *testing.T) {
	r := reg(auth)
	withEvents := in
	withEvents.EventsURL = "http://dockyard-events.dockyard-system.svc:8082/v1/events"
	cfg := Config(r, withEvents)
	if e := cfg.Events; e == nil || e.URL != withEvents.EventsURL || e.Registry != r.Namespace+"/"+r.Name ||
		e.TokenFile != registryconfig.EventsTokenDir+"/"+registryconfig.EventsTokenFile {
		t.Fatalf("events config: %+v", cfg.Events)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	spec := Deployment(r, withEvents).Spec.Template.Spec
	var found bool
	for _, v := range spec.Volumes {
		if v.Name != volEvents {
			continue
		}
		found = true
		p := v.Projected.Sources[0].ServiceAccountToken
		if p == nil || p.Audience != registryconfig.EventsAudience || *p.ExpirationSeconds != registryconfig.EventsTokenSeconds ||
			p.Path != registryconfig.EventsTokenFile {
			t.Errorf("token projection: %+v", p)
		}
	}
	mounted := false
	for _, m := range spec.Containers[0].VolumeMounts {
		mounted = mounted || (m.Name == volEvents && m.MountPath == registryconfig.EventsTokenDir && m.ReadOnly)
	}
	if !found || !mounted {
		t.Errorf("events token volume %v, mounted %v", found, mounted)
	}
	if Config(r, in).Events != nil {
		t.Error("events rendered without an events URL")
	}
	for _, v := range Deployment(r, in).Spec.Template.Spec.Volumes {
		if v.Name == volEvents {
			t.Error("events token mounted without an events URL")
		}
	}
}
