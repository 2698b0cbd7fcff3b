package controller

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dockyard-dev/dockyard/api/v1alpha1"
	"github.com/dockyard-dev/dockyard/internal/registryconfig"
)

// Which image references and image IDs name the Registry, and what of them is kept.
func TestImageOf(t *testing.T) {
	reg := &v1alpha1.Registry{ObjectMeta: metav1.ObjectMeta{Name: "main", Namespace: "platform"},
		Spec: v1alpha1.RegistrySpec{TLS: &v1alpha1.TLSSpec{DNSNames: []string{"registry.example.com"}}}}
	hosts := registryHostSet(reg, "cluster.local")
	d := "sha256:" + "ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12"
	cases := map[string]*registryconfig.ImageInUse{
		"main.platform.svc:5000/team-a/app:v1":                                         {Repository: "team-a/app", Tag: "v1"},
		"main.platform.svc.cluster.local:5000/team-a/app@" + d:                         {Repository: "team-a/app", Digest: d},
		"docker-pullable://main.platform.svc:5000/team-a/app@" + d:                     {Repository: "team-a/app", Digest: d},
		"main.platform.svc:5000/team-a/app:v1@" + d:                                    {Repository: "team-a/app", Digest: d},
		"main.platform.svc:5000/app":                                                   {Repository: "app", Tag: "latest"},
		"registry.example.com/team-a/app:v2":                                           {Repository: "team-a/app", Tag: "v2"},
		"registry.example.com:5000/team-a/app:v2":                                      {Repository: "team-a/app", Tag: "v2"},
		"other.platform.svc:5000/team-a/app:v1":                                        nil,
		"docker.io/library/nginx:1.27":                                                 nil,
		"nginx":                                                                        nil,
		"sha256:" + "cd34cd34cd34cd34cd34cd34cd34cd34cd34cd34cd34cd34cd34cd34cd34cd34": nil,
		"":                  nil,
		"NOT a reference!!": nil,
	}
	for ref, want := range cases {
		got, ok := imageOf(ref, hosts)
		if (want == nil) != !ok || (want != nil && got != *want) {
			t.Errorf("imageOf(%q) = %+v, %v; want %+v", ref, got, ok, want)
		}
	}
}
