package registry

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/dockyard-dev/dockyard/api/v1alpha1"
	"github.com/dockyard-dev/dockyard/internal/registryconfig"
)

func scanning(db string) func(*v1alpha1.Registry) {
	return func(r *v1alpha1.Registry) {
		r.Spec.Scanning = &v1alpha1.ScanningSpec{}
		if db != "" {
			r.Spec.Scanning.Database = &v1alpha1.ScanDatabaseSpec{Repository: db}
		}
	}
}

// TestScannerConfig: the scanner reaches the Registry's Service, trusts its CA with TLS,
// has a credential only with access control, and takes its database from the Registry
// itself when the repository names no host (an air-gapped site), from elsewhere as given.
func TestScannerConfig(t *testing.T) {
	cases := []struct {
		name             string
		reg              *v1alpha1.Registry
		db               string
		ca, creds, plain bool
	}{
		{"defaults, no TLS, no auth", reg(scanning("")), v1alpha1.DefaultScanDatabase, false, false, true},
		{"database in the Registry, TLS and auth", reg(issuer, auth, scanning("security/trivy-db:2")),
			"main.platform.svc:5000/security/trivy-db:2", true, true, false},
		{"a one-segment repository is the Registry's", reg(scanning("trivy-db:2")), "main.platform.svc:5000/trivy-db:2", false, false, true},
		{"another registry with a port", reg(scanning("mirror.internal:5000/aquasec/trivy-db:2")), "mirror.internal:5000/aquasec/trivy-db:2", false, false, true},
		{"localhost is another registry", reg(scanning("localhost/trivy-db:2")), "localhost/trivy-db:2", false, false, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := ScannerConfig(tc.reg)
			cfg.Defaults()
			if err := cfg.Validate(); err != nil {
				t.Fatalf("the rendered config does not validate: %v", err)
			}
			if cfg.Registry != "main.platform.svc:5000" || cfg.Trivy.DBRepository != tc.db || cfg.Insecure != tc.plain {
				t.Errorf("registry %q, database %q, insecure %v", cfg.Registry, cfg.Trivy.DBRepository, cfg.Insecure)
			}
			if (cfg.CAFile != "") != tc.ca || (cfg.CredentialsDir != "") != tc.creds {
				t.Errorf("caFile %q, credentialsDir %q", cfg.CAFile, cfg.CredentialsDir)
			}
			d := ScannerDeployment(tc.reg, in, "h")
			vols := map[string]corev1.Volume{}
			for _, v := range d.Spec.Template.Spec.Volumes {
				vols[v.Name] = v
			}
			if _, ok := vols["credentials"]; ok != tc.creds {
				t.Errorf("credentials volume present = %v, want %v", ok, tc.creds)
			}
			if v, ok := vols["registry-ca"]; ok != tc.ca || (ok && (v.Secret.Optional == nil || !*v.Secret.Optional || len(v.Secret.Items) != 1)) {
				t.Errorf("registry-ca volume = %+v, want only ca.crt, optional", v)
			}
			// Only the signing key and the job token of the scanner Secret are mounted: the
			// public key is for readers.
			if items := vols["secret"].Secret.Items; len(items) != 2 || slices.ContainsFunc(items, func(k corev1.KeyToPath) bool { return k.Key == ScannerPublicKeyKey }) {
				t.Errorf("scanner Secret items = %+v", items)
			}
		})
	}
}

// TestScannerDeployment: the scanner runs the dockyard binary (copied in by the dockyard
// image) in the Trivy image; one pod, replaced rather than doubled; its inputs roll it;
// its Service reaches not-ready pods.
func TestScannerDeployment(t *testing.T) {
	r := reg(issuer, auth, scanning(""), func(r *v1alpha1.Registry) { r.Spec.Scanning.Image = "trivy.example/trivy:0.74.0" })
	d := ScannerDeployment(r, in, "hash-1")
	p := d.Spec.Template.Spec
	if len(p.InitContainers) != 1 || p.InitContainers[0].Image != "dockyard:1.0" ||
		!slices.Equal(p.InitContainers[0].Args, []string{"registry", "copy-binary", "/opt/dockyard/dockyard"}) {
		t.Errorf("init containers = %+v", p.InitContainers)
	}
	c := p.Containers[0]
	if c.Image != "trivy.example/trivy:0.74.0" || c.Command[0] != "/opt/dockyard/dockyard" ||
		!slices.Equal(c.Args, []string{"registry", "scanner", "--config", "/etc/dockyard/scanner/config.json"}) {
		t.Errorf("scanner container = %s %v %v", c.Image, c.Command, c.Args)
	}
	if p.ServiceAccountName != "main-scanner" || p.ServiceAccountName == r.ServiceName() {
		t.Errorf("the scanner runs as %q: want its own ServiceAccount, not the Registry's", p.ServiceAccountName)
	}
	if *d.Spec.Replicas != 1 || d.Spec.Strategy.Type != "Recreate" {
		t.Errorf("replicas %d, strategy %s: one scanner at a time", *d.Spec.Replicas, d.Spec.Strategy.Type)
	}
	if d.Spec.Template.Annotations[AnnotationInputs] != "hash-1" {
		t.Errorf("inputs hash not on the pod template")
	}
	if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" || c.LivenessProbe.HTTPGet.Path != "/healthz" {
		t.Errorf("probes = %+v / %+v", c.ReadinessProbe, c.LivenessProbe)
	}
	if _, ok := c.Resources.Limits[corev1.ResourceEphemeralStorage]; !ok {
		t.Errorf("no ephemeral-storage limit: the cache could fill the node")
	}
	if ScannerSelectorLabels(r)[LabelComponent] == SelectorLabels(r)[LabelComponent] {
		t.Errorf("the scanner's pods would be selected by the registry Service")
	}
	svc := ScannerService(r)
	if !svc.Spec.PublishNotReadyAddresses || svc.Spec.Ports[0].Port != ScannerPort {
		t.Errorf("Service = %+v", svc.Spec)
	}
	cm, err := ScannerConfigMap(r, []byte("-----BEGIN PUBLIC KEY-----"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg registryconfig.Scanner
	if err := json.Unmarshal([]byte(cm.Data[ScannerConfigKey]), &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.SigningKeyFile != "/var/run/dockyard/scanner/signing-key.pem" || cfg.TokenFile != "/var/run/dockyard/scanner/token" {
		t.Errorf("config = %+v", cfg)
	}
	if strings.Contains(cm.Data[ScannerConfigKey], "PRIVATE") || cm.Data[ScannerPublicKeyKey] == "" {
		t.Errorf("config map = %v: want the public key and no private one", cm.Data)
	}
	// The pod mounts only the config from it.
	for _, v := range p.Volumes {
		if v.Name == "config" && (len(v.ConfigMap.Items) != 1 || v.ConfigMap.Items[0].Key != ScannerConfigKey) {
			t.Errorf("config volume = %+v", v.ConfigMap)
		}
	}
	// Memory grows with concurrent scans.
	r.Spec.Scanning.Concurrency = ptr(int32(4))
	if m := ScannerDeployment(r, in, "h").Spec.Template.Spec.Containers[0].Resources.Limits[corev1.ResourceMemory]; m.Value() != 5<<30 {
		t.Errorf("memory limit with 4 scans at a time = %s, want 5Gi", m.String())
	}
}

// TestNetworkPolicyAdmitsTheScanner: with a network policy, the Registry's own scanner may
// still reach the registry port.
func TestNetworkPolicyAdmitsTheScanner(t *testing.T) {
	r := reg(scanning(""), func(r *v1alpha1.Registry) {
		r.Spec.NetworkPolicy = &v1alpha1.NetworkPolicySpec{}
	})
	np := NetworkPolicy(r)
	found := slices.ContainsFunc(np.Spec.Ingress, func(rule networkingv1.NetworkPolicyIngressRule) bool {
		return len(rule.From) == 1 && rule.From[0].PodSelector != nil &&
			rule.From[0].PodSelector.MatchLabels[LabelComponent] == ComponentScanner && rule.Ports[0].Port.IntValue() == int(registryconfig.DefaultPort)
	})
	if !found {
		t.Errorf("ingress rules = %+v, want one for the scanner's pods", np.Spec.Ingress)
	}
	if len(NetworkPolicy(reg(func(r *v1alpha1.Registry) { r.Spec.NetworkPolicy = &v1alpha1.NetworkPolicySpec{} })).Spec.Ingress) != 0 {
		t.Errorf("without scanning, an empty policy admits no one")
	}
}
