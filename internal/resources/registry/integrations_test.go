package registry

import (
	"maps"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dockyard-dev/dockyard/api/v1alpha1"
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

// A cache's upstream credentials and CA are mounted files named in the config, never
// values in it.
func TestPullThroughCacheRendered(t *testing.T) {
	r := reg(auth, func(r *v1alpha1.Registry) {
		r.Spec.PullThroughCache = &v1alpha1.PullThroughCacheSpec{Upstreams: []v1alpha1.CacheUpstream{
			{Prefix: "docker.io", URL: "https://registry-1.docker.io", CredentialsSecretRef: &v1alpha1.SecretReference{Name: "hub"}},
			{Prefix: "internal", URL: "https://other.platform.svc:5000",
				CABundle: &v1alpha1.CABundleSource{ConfigMapKeyRef: &v1alpha1.ConfigMapKeyReference{Name: "ca", Key: "ca.crt"}}},
			{Prefix: "public", URL: "https://public.example.com"},
		}}
	})
	cfg := Config(r, in)
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	u := cfg.Cache.Upstreams
	if len(u) != 3 || u[0].CredentialsDir != registryconfig.CacheDir+"/0" || u[0].CAFile != "" ||
		u[1].CAFile != registryconfig.CacheDir+"/1/ca.crt" || u[1].CredentialsDir != "" || u[2].CredentialsDir != "" ||
		u[0].TagTTL.Duration != registryconfig.DefaultCacheTagTTL {
		t.Fatalf("cache config: %+v", u)
	}
	spec := Deployment(r, in).Spec.Template.Spec
	var names []string
	for _, v := range spec.Volumes {
		if strings.HasPrefix(v.Name, "cache-") {
			names = append(names, v.Name)
			for _, src := range v.Projected.Sources {
				if src.Secret != nil && (src.Secret.Optional == nil || !*src.Secret.Optional) {
					t.Errorf("%s: a missing Secret would keep the pods from starting", v.Name)
				}
			}
		}
	}
	if strings.Join(names, ",") != "cache-0,cache-1" {
		t.Errorf("cache volumes %v", names)
	}
}

// The PodMonitor scrapes the metrics port of exactly this Registry's pods, carries the
// user's labels without losing ours, and goes away when monitoring is disabled.
func TestPodMonitor(t *testing.T) {
	r := reg(func(r *v1alpha1.Registry) {
		r.Spec.Monitoring = &v1alpha1.MonitoringSpec{Labels: map[string]string{"release": "kube-prometheus-stack", LabelInstance: "spoofed"},
			Interval: &metav1.Duration{Duration: 15 * time.Second}}
	})
	pm := PodMonitor(r)
	if pm == nil || pm.Labels["release"] != "kube-prometheus-stack" || pm.Labels[LabelInstance] != r.Name || len(pm.OwnerReferences) != 1 {
		t.Fatalf("PodMonitor metadata: %+v", pm.ObjectMeta)
	}
	ep := pm.Spec.PodMetricsEndpoints
	if len(ep) != 1 || *ep[0].Port != MetricsPortName || ep[0].Path != registryconfig.MetricsPath || ep[0].Interval != "15s" {
		t.Errorf("endpoints: %+v", ep)
	}
	if !maps.Equal(pm.Spec.Selector.MatchLabels, SelectorLabels(r)) {
		t.Errorf("selector %v", pm.Spec.Selector.MatchLabels)
	}
	if got := PodMonitor(reg()).Spec.PodMetricsEndpoints[0].Interval; got != "30s" {
		t.Errorf("default interval %s", got)
	}
	if PodMonitor(reg(func(r *v1alpha1.Registry) { r.Spec.Monitoring = &v1alpha1.MonitoringSpec{Disabled: true} })) != nil {
		t.Error("a PodMonitor with monitoring disabled")
	}
}
