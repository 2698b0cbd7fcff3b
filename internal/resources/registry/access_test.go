package registry

import (
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/dockyard-dev/dockyard/api/v1alpha1"
)

func kubeAuth(r *v1alpha1.Registry) {
	auth(r)
	r.Spec.Auth.ServiceAccounts = &v1alpha1.ServiceAccountAuthSpec{}
	r.Spec.Auth.KubernetesRBAC = &v1alpha1.KubernetesRBACSpec{}
}

func TestKubernetesAuthConfigAndToken(t *testing.T) {
	plain := Deployment(reg(auth), in).Spec.Template.Spec
	if *plain.AutomountServiceAccountToken {
		t.Error("without Kubernetes auth the registry pods get no API token")
	}
	if Config(reg(auth), in).Auth.Kubernetes != nil {
		t.Error("without Kubernetes auth the config has no kubernetes section")
	}
	r := reg(kubeAuth)
	if !*Deployment(r, in).Spec.Template.Spec.AutomountServiceAccountToken {
		t.Error("with Kubernetes auth the registry pods need their API token (TokenReview, SubjectAccessReview)")
	}
	k := Config(r, in).Auth.Kubernetes
	if k == nil || k.ServiceAccounts == nil || k.RBAC == nil {
		t.Fatalf("kubernetes config = %+v", k)
	}
	if !slices.Equal(k.ServiceAccounts.Audiences, []string{"main.platform.svc"}) {
		t.Errorf("default audience = %v, want the token service name", k.ServiceAccounts.Audiences)
	}
	if k.ServiceAccounts.CacheTTL.Duration != 30*time.Second || k.RBAC.CacheTTL.Duration != 10*time.Second {
		t.Errorf("cache TTLs = %s / %s", k.ServiceAccounts.CacheTTL.Duration, k.RBAC.CacheTTL.Duration)
	}
	crb := AuthDelegatorBinding(r)
	if crb.RoleRef.Name != "system:auth-delegator" || len(crb.Subjects) != 1 || crb.Subjects[0].Name != r.ServiceName() || crb.Subjects[0].Namespace != "platform" {
		t.Errorf("binding = %+v", crb)
	}
}

func TestPullSecretRenewal(t *testing.T) {
	r := reg(auth)
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	hosts := r.RegistryHosts("cluster.local")
	s, err := PullSecret(r, "team-a", "cred", "k1", hosts, now, now.Add(4*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if s.Type != corev1.SecretTypeDockerConfigJson || s.Namespace != "team-a" || len(s.OwnerReferences) != 0 {
		t.Errorf("pull Secret = %+v", s.ObjectMeta)
	}
	for _, h := range hosts {
		if !strings.Contains(string(s.Data[corev1.DockerConfigJsonKey]), `"`+h+`"`) {
			t.Errorf("pull Secret does not name %s", h)
		}
	}
	hh := HostsHash(hosts)
	for _, tc := range []struct {
		name    string
		ann     map[string]string
		kid, hh string
		want    time.Time
	}{
		{"fresh: renewed at half life", s.Annotations, "k1", hh, now.Add(2 * time.Hour)},
		{"signed by a retired key", s.Annotations, "k2", hh, now.Add(time.Minute)},
		{"hosts changed", s.Annotations, "k1", "other", now.Add(time.Minute)},
		{"unreadable", map[string]string{}, "k1", hh, now.Add(time.Minute)},
	} {
		got := PullSecretRenewAt(tc.ann, tc.kid, tc.hh, now.Add(time.Minute))
		if !got.Equal(tc.want) {
			t.Errorf("%s: renew at %s, want %s", tc.name, got, tc.want)
		}
	}
}

func TestNodeTrustDaemonSet(t *testing.T) {
	r := reg(issuer, func(r *v1alpha1.Registry) {
		r.Spec.NodeTrust = &v1alpha1.NodeTrustSpec{CRIOCertsDir: "/etc/containers/certs.d"}
	})
	ds := NodeTrustDaemonSet(r, in)
	p := ds.Spec.Template.Spec
	if *p.AutomountServiceAccountToken {
		t.Error("the node agent needs no API token")
	}
	c := p.Containers[0]
	sc := c.SecurityContext
	if *sc.AllowPrivilegeEscalation || !*sc.ReadOnlyRootFilesystem || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" || len(sc.Capabilities.Add) != 0 {
		t.Errorf("security context = %+v", sc)
	}
	var hostPaths []string
	for _, v := range p.Volumes {
		switch {
		case v.HostPath != nil:
			hostPaths = append(hostPaths, v.HostPath.Path)
		case v.Secret != nil:
			if v.Secret.SecretName != r.TLSSecretName() || len(v.Secret.Items) != 1 || v.Secret.Items[0].Key != "ca.crt" {
				t.Errorf("only ca.crt of the TLS Secret may reach nodes: %+v", v.Secret)
			}
		}
	}
	if !slices.Equal(hostPaths, []string{"/etc/containerd/certs.d", "/etc/containers/certs.d"}) {
		t.Errorf("host paths = %v", hostPaths)
	}
	args := strings.Join(c.Args, " ")
	for _, h := range r.RegistryHosts("cluster.local") {
		if !strings.Contains(args, "--host="+h) {
			t.Errorf("args %q lack host %s", args, h)
		}
	}
	if ds.Spec.Selector.MatchLabels[LabelComponent] != ComponentNodeTrust {
		t.Error("the DaemonSet's pods must not match the registry Service's selector")
	}
	if ru := ds.Spec.UpdateStrategy.RollingUpdate; ru == nil || ru.MaxSurge.IntValue() != 1 || ru.MaxUnavailable.IntValue() != 0 {
		t.Error("a rolling update must start the new pod before stopping the old one")
	}
	if len(p.Tolerations) != 1 || p.Tolerations[0].Operator != corev1.TolerationOpExists {
		t.Errorf("default tolerations = %+v", p.Tolerations)
	}
}

func TestImmutableTagsRendered(t *testing.T) {
	r := reg(func(r *v1alpha1.Registry) {
		r.Spec.ImmutableTags = []v1alpha1.ImmutableTagRule{{Repositories: []string{"team-a/**"}, Tags: []string{"v*", "release-*"}}}
	})
	c := Config(r, in)
	if len(c.ImmutableTags) != 1 || !slices.Equal(c.ImmutableTags[0].Tags, []string{"v*", "release-*"}) {
		t.Errorf("immutableTags = %+v", c.ImmutableTags)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("the rendered config must validate: %v", err)
	}
}
