package registry

import (
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dockyard-dev/dockyard/api/v1alpha1"
	"github.com/dockyard-dev/dockyard/internal/registryconfig"
)

func reg(mut ...func(*v1alpha1.Registry)) *v1alpha1.Registry {
	r := &v1alpha1.Registry{
		ObjectMeta: metav1.ObjectMeta{Name: "main", Namespace: "platform", UID: "uid-1"},
		Spec: v1alpha1.RegistrySpec{Storage: v1alpha1.RegistryStorage{
			Filesystem: &v1alpha1.FilesystemStorage{Size: resource.MustParse("10Gi")},
		}},
	}
	for _, m := range mut {
		m(r)
	}
	return r
}

func replicas(n int32) func(*v1alpha1.Registry) {
	return func(r *v1alpha1.Registry) { r.Spec.Replicas = &n }
}

func s3(secret string) func(*v1alpha1.Registry) {
	return func(r *v1alpha1.Registry) {
		r.Spec.Storage = v1alpha1.RegistryStorage{S3: &v1alpha1.S3Storage{Bucket: "images", Endpoint: "https://minio:9000", ForcePathStyle: true}}
		if secret != "" {
			r.Spec.Storage.S3.CredentialsSecretRef = &v1alpha1.SecretReference{Name: secret}
		}
	}
}

func issuer(r *v1alpha1.Registry) {
	r.Spec.TLS = &v1alpha1.TLSSpec{IssuerRef: &v1alpha1.IssuerReference{Name: "ca", Kind: "ClusterIssuer"}, DNSNames: []string{"registry.internal"}}
}

func auth(r *v1alpha1.Registry) {
	r.Spec.Auth = &v1alpha1.AuthSpec{
		UsersSecretRef: &v1alpha1.SecretReference{Name: "users"},
		Access: []v1alpha1.AccessRule{{
			Subjects:     []v1alpha1.Subject{{Kind: "Group", Name: "team-a"}},
			Repositories: []string{"team-a/**"},
			Role:         v1alpha1.RoleManager,
		}},
	}
}

func ldapOnly(r *v1alpha1.Registry) {
	r.Spec.Auth = &v1alpha1.AuthSpec{
		LDAP: &v1alpha1.LDAPSpec{
			URLs:                  []string{"ldaps://ldap.example.com"},
			CA:                    &v1alpha1.CABundleSource{ConfigMapKeyRef: &v1alpha1.ConfigMapKeyReference{Name: "ldap-ca", Key: "ca.pem"}},
			BindDN:                "cn=registry,dc=example,dc=com",
			BindPasswordSecretRef: v1alpha1.SecretKeyReference{Name: "ldap-bind", Key: "password"},
			UserSearch:            v1alpha1.LDAPUserSearch{BaseDN: "ou=people,dc=example,dc=com"},
			GroupsAttribute:       "memberOf",
		},
		Tokens: &v1alpha1.TokenSpec{TTL: &metav1.Duration{Duration: 10 * time.Minute}, Challenge: v1alpha1.TokenChallengeBasic},
	}
}

func gc(r *v1alpha1.Registry) {
	r.Spec.GarbageCollection = &v1alpha1.GarbageCollectionSpec{Schedule: "0 3 * * *", DeleteUntagged: true}
}

var in = Inputs{Image: "dockyard:1.0", ClusterDomain: "cluster.local", InputsHash: "abc"}

func TestConfigRendersEveryBackendAndValidates(t *testing.T) {
	cases := map[string]struct {
		reg   *v1alpha1.Registry
		check func(t *testing.T, c *registryconfig.Config)
	}{
		"filesystem": {reg(), func(t *testing.T, c *registryconfig.Config) {
			if c.Storage.Filesystem == nil || c.Storage.Filesystem.RootDirectory != registryconfig.DataDir {
				t.Errorf("filesystem root = %+v", c.Storage.Filesystem)
			}
			if c.HTTP.TLS != nil || c.Auth != nil {
				t.Errorf("tls/auth rendered without being asked for")
			}
		}},
		"s3 with credentials": {reg(s3("creds")), func(t *testing.T, c *registryconfig.Config) {
			s := c.Storage.S3
			if s == nil || s.Bucket != "images" || s.Region != "us-east-1" || !s.ForcePathStyle || s.Endpoint != "https://minio:9000" {
				t.Fatalf("s3 = %+v", s)
			}
			if s.AccessKeyIDEnv != registryconfig.EnvS3AccessKeyID || s.SecretAccessKeyEnv != registryconfig.EnvS3SecretAccessKey {
				t.Errorf("credential env names = %q %q", s.AccessKeyIDEnv, s.SecretAccessKeyEnv)
			}
		}},
		"s3 ambient credentials": {reg(s3("")), func(t *testing.T, c *registryconfig.Config) {
			if c.Storage.S3.AccessKeyIDEnv != "" {
				t.Errorf("ambient credentials must not name env vars")
			}
		}},
		"gcs": {reg(func(r *v1alpha1.Registry) {
			r.Spec.Storage = v1alpha1.RegistryStorage{GCS: &v1alpha1.GCSStorage{Bucket: "b", CredentialsSecretRef: &v1alpha1.SecretReference{Name: "g"}}}
		}), func(t *testing.T, c *registryconfig.Config) {
			if c.Storage.GCS.KeyFile != registryconfig.GCSDir+"/"+registryconfig.GCSKeyFile {
				t.Errorf("gcs key file = %q", c.Storage.GCS.KeyFile)
			}
		}},
		"azure": {reg(func(r *v1alpha1.Registry) {
			r.Spec.Storage = v1alpha1.RegistryStorage{Azure: &v1alpha1.AzureStorage{AccountName: "acct", Container: "images", CredentialsSecretRef: &v1alpha1.SecretReference{Name: "a"}}}
		}), func(t *testing.T, c *registryconfig.Config) {
			if c.Storage.Azure.AccountKeyEnv != registryconfig.EnvAzureAccountKey {
				t.Errorf("azure key env = %q", c.Storage.Azure.AccountKeyEnv)
			}
		}},
		"ldap and token settings": {reg(ldapOnly), func(t *testing.T, c *registryconfig.Config) {
			a := c.Auth
			if a.HtpasswdFile != "" || a.LDAP == nil || a.Token == nil {
				t.Fatalf("auth = %+v, want LDAP and tokens without an htpasswd file", a)
			}
			l := a.LDAP
			if l.BindPasswordFile != registryconfig.LDAPDir+"/"+registryconfig.LDAPBindPasswordFile ||
				l.CAFile != registryconfig.LDAPDir+"/"+registryconfig.LDAPCAFile || l.GroupsAttribute != "memberOf" ||
				l.UserSearch.Filter != "(uid={username})" || l.Timeout.Duration != 5*time.Second {
				t.Errorf("ldap = %+v", l)
			}
			want := registryconfig.Token{KeysFile: registryconfig.TokenDir + "/" + registryconfig.TokenKeysKey,
				Issuer: "dockyard/platform/main", Service: "main.platform.svc",
				TTL: registryconfig.Duration{Duration: 10 * time.Minute}, Challenge: registryconfig.ChallengeBasic,
				SessionTTL: registryconfig.Duration{Duration: 12 * time.Hour}}
			if *a.Token != want {
				t.Errorf("token = %+v, want %+v", *a.Token, want)
			}
		}},
		"tls, auth and gc": {reg(issuer, auth, gc), func(t *testing.T, c *registryconfig.Config) {
			if c.HTTP.TLS == nil || !strings.HasPrefix(c.HTTP.TLS.CertFile, registryconfig.TLSDir) {
				t.Errorf("tls = %+v", c.HTTP.TLS)
			}
			if c.Auth == nil || len(c.Auth.Access) != 1 || c.Auth.Access[0].Subjects[0].Kind != registryconfig.SubjectGroup {
				t.Errorf("auth = %+v", c.Auth)
			}
			if c.Auth.GroupsFile != "" {
				t.Errorf("groups file set although the Secret has no groups key")
			}
			if !c.GC.DeleteUntagged || c.GC.GracePeriod.Duration != v1alpha1.DefaultGracePeriod {
				t.Errorf("gc = %+v", c.GC)
			}
		}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			c := Config(tc.reg, in)
			if err := c.Validate(); err != nil {
				t.Fatalf("rendered config does not validate: %v", err)
			}
			b, err := c.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := registryconfig.Parse(b); err != nil {
				t.Fatalf("rendered config does not parse back: %v", err)
			}
			tc.check(t, c)
		})
	}
}

func TestDeployment(t *testing.T) {
	cases := map[string]struct {
		reg          *v1alpha1.Registry
		wantStrategy appsv1.DeploymentStrategyType
		wantSpread   bool
		wantVolumes  []string
		wantEnv      []string
	}{
		"single replica on a RWO volume":   {reg(), appsv1.RecreateDeploymentStrategyType, false, []string{"config", "tmp", "data"}, []string{registryconfig.EnvHTTPSecret}},
		"three replicas on S3":             {reg(s3("creds"), replicas(3)), appsv1.RollingUpdateDeploymentStrategyType, true, []string{"config", "tmp"}, []string{registryconfig.EnvHTTPSecret, registryconfig.EnvS3AccessKeyID, registryconfig.EnvS3SecretAccessKey}},
		"tls and auth mount their Secrets": {reg(issuer, auth), appsv1.RecreateDeploymentStrategyType, false, []string{"config", "tmp", "data", "tls", "users", "token-keys", "robots"}, []string{registryconfig.EnvHTTPSecret}},
		"ldap without users":               {reg(ldapOnly), appsv1.RecreateDeploymentStrategyType, false, []string{"config", "tmp", "data", "token-keys", "robots", "ldap"}, []string{registryconfig.EnvHTTPSecret}},
		"user affinity replaces spreading": {reg(s3(""), replicas(2), func(r *v1alpha1.Registry) { r.Spec.Affinity = &corev1.Affinity{} }), appsv1.RollingUpdateDeploymentStrategyType, false, []string{"config", "tmp"}, []string{registryconfig.EnvHTTPSecret}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			d := Deployment(tc.reg, in)
			if d.Spec.Strategy.Type != tc.wantStrategy {
				t.Errorf("strategy = %s, want %s", d.Spec.Strategy.Type, tc.wantStrategy)
			}
			if got := len(d.Spec.Template.Spec.TopologySpreadConstraints) > 0; got != tc.wantSpread {
				t.Errorf("topology spread = %v, want %v", got, tc.wantSpread)
			}
			var vols []string
			for _, v := range d.Spec.Template.Spec.Volumes {
				vols = append(vols, v.Name)
			}
			if strings.Join(vols, ",") != strings.Join(tc.wantVolumes, ",") {
				t.Errorf("volumes = %v, want %v", vols, tc.wantVolumes)
			}
			c := d.Spec.Template.Spec.Containers[0]
			var env []string
			for _, e := range c.Env {
				if e.Value != "" || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
					t.Errorf("env %s must come from a secretKeyRef", e.Name)
				}
				env = append(env, e.Name)
			}
			if strings.Join(env, ",") != strings.Join(tc.wantEnv, ",") {
				t.Errorf("env = %v, want %v", env, tc.wantEnv)
			}
			for _, m := range c.VolumeMounts {
				if m.Name != "tmp" && m.Name != "data" && !m.ReadOnly {
					t.Errorf("mount %s must be read-only", m.Name)
				}
			}
			if d.Spec.Template.Annotations[AnnotationInputs] != "abc" {
				t.Errorf("inputs hash annotation missing")
			}
			if c.Image != "dockyard:1.0" {
				t.Errorf("image = %s", c.Image)
			}
		})
	}
}

// TestRestrictedPodSecurity checks the fields the "restricted" Pod Security Standard
// requires, on both the registry and the GC pods.
func TestRestrictedPodSecurity(t *testing.T) {
	r := reg(gc, issuer, auth, func(r *v1alpha1.Registry) { r.Spec.Scanning = &v1alpha1.ScanningSpec{} })
	pods := map[string]corev1.PodSpec{
		"registry": Deployment(r, in).Spec.Template.Spec,
		"gc":       CronJob(r, in).Spec.JobTemplate.Spec.Template.Spec,
		"scanner":  ScannerDeployment(r, in, "h").Spec.Template.Spec,
	}
	for name, p := range pods {
		t.Run(name, func(t *testing.T) {
			psc := p.SecurityContext
			if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
				t.Fatalf("pod security context = %+v", psc)
			}
			if p.AutomountServiceAccountToken == nil || *p.AutomountServiceAccountToken {
				t.Errorf("the registry needs no API token")
			}
			for _, c := range append(p.InitContainers, p.Containers...) {
				sc := c.SecurityContext
				if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
					sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
					sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" || len(sc.Capabilities.Add) != 0 {
					t.Errorf("container %s security context = %+v", c.Name, sc)
				}
			}
		})
	}
}

func TestCronJob(t *testing.T) {
	if CronJob(reg(), in) != nil {
		t.Fatal("no CronJob without garbageCollection")
	}
	cases := map[string]struct {
		reg          *v1alpha1.Registry
		wantAffinity bool
	}{
		"RWO volume: run beside the serving pod": {reg(gc), true},
		"RWO volume scaled to zero: anywhere":    {reg(gc, replicas(0)), false},
		"RWX volume: anywhere": {reg(gc, func(r *v1alpha1.Registry) {
			r.Spec.Storage.Filesystem.AccessModes = []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany}
		}), false},
		"object storage: anywhere": {reg(gc, s3("c")), false},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			cj := CronJob(tc.reg, in)
			if cj.Spec.ConcurrencyPolicy != "Forbid" || cj.Spec.StartingDeadlineSeconds == nil || *cj.Spec.SuccessfulJobsHistoryLimit == 0 {
				t.Errorf("cron job policy = %+v", cj.Spec)
			}
			pod := cj.Spec.JobTemplate.Spec.Template.Spec
			if got := pod.Affinity != nil; got != tc.wantAffinity {
				t.Errorf("affinity = %v, want %v", got, tc.wantAffinity)
			}
			c := pod.Containers[0]
			if c.TerminationMessagePath != registryconfig.TerminationMessagePath {
				t.Errorf("termination message path = %s", c.TerminationMessagePath)
			}
			for _, e := range c.Env {
				if e.Name == registryconfig.EnvHTTPSecret {
					t.Errorf("the GC job does not need the HTTP secret")
				}
			}
			for _, v := range pod.Volumes {
				if v.Name == "users" || v.Name == "tls" {
					t.Errorf("the GC job must not mount %s", v.Name)
				}
			}
		})
	}
}

func TestPVCOwnershipFollowsDeletionPolicy(t *testing.T) {
	if PersistentVolumeClaim(reg(s3(""))) != nil {
		t.Fatal("no PVC for object storage")
	}
	retain := PersistentVolumeClaim(reg())
	if len(retain.OwnerReferences) != 0 {
		t.Errorf("Retain: the PVC must not be owned")
	}
	del := PersistentVolumeClaim(reg(func(r *v1alpha1.Registry) { r.Spec.DeletionPolicy = v1alpha1.DeletionPolicyDelete }))
	if len(del.OwnerReferences) != 1 || del.OwnerReferences[0].UID != "uid-1" {
		t.Errorf("Delete: owner references = %+v", del.OwnerReferences)
	}
	if got := retain.Spec.AccessModes; len(got) != 1 || got[0] != corev1.ReadWriteOnce {
		t.Errorf("default access modes = %v", got)
	}
}

func TestOptionalChildren(t *testing.T) {
	plain := reg()
	if PodDisruptionBudget(plain) != nil || NetworkPolicy(plain) != nil || Ingress(plain) != nil || Certificate(plain, in) != nil {
		t.Fatal("optional children built without being asked for")
	}
	if PodDisruptionBudget(reg(s3(""), replicas(2))) == nil {
		t.Error("PDB expected for 2 replicas")
	}
	if Certificate(reg(func(r *v1alpha1.Registry) {
		r.Spec.TLS = &v1alpha1.TLSSpec{SecretRef: &v1alpha1.SecretReference{Name: "mine"}}
	}), in) != nil {
		t.Error("no Certificate for a user-provided TLS Secret")
	}
}

func TestCertificateNames(t *testing.T) {
	c := Certificate(reg(issuer, func(r *v1alpha1.Registry) { r.Spec.Ingress = &v1alpha1.IngressSpec{Host: "registry.example.com"} }), in)
	want := []string{"main", "main.platform", "main.platform.svc", "main.platform.svc.cluster.local", "registry.example.com", "registry.internal"}
	if strings.Join(c.Spec.DNSNames, ",") != strings.Join(want, ",") {
		t.Errorf("dns names = %v, want %v", c.Spec.DNSNames, want)
	}
	if c.Spec.IssuerRef.Kind != "ClusterIssuer" || c.Spec.IssuerRef.Group != "cert-manager.io" || c.Spec.SecretName != "main-tls" {
		t.Errorf("certificate = %+v", c.Spec)
	}
}

func TestNetworkPolicyNeverAdmitsEveryone(t *testing.T) {
	np := NetworkPolicy(reg(func(r *v1alpha1.Registry) { r.Spec.NetworkPolicy = &v1alpha1.NetworkPolicySpec{} }))
	if len(np.Spec.Ingress) != 0 {
		t.Errorf("empty peer lists must produce no rule (a rule without peers admits all): %+v", np.Spec.Ingress)
	}
	np = NetworkPolicy(reg(func(r *v1alpha1.Registry) {
		r.Spec.NetworkPolicy = &v1alpha1.NetworkPolicySpec{MetricsFrom: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{}}}}
	}))
	if len(np.Spec.Ingress) != 1 || np.Spec.Ingress[0].Ports[0].Port.IntValue() != int(registryconfig.MetricsPort) {
		t.Errorf("metrics rule = %+v", np.Spec.Ingress)
	}
}

func TestServiceAndIngress(t *testing.T) {
	r := reg(issuer, func(r *v1alpha1.Registry) {
		r.Spec.Service = &v1alpha1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Port: 443, Annotations: map[string]string{"a": "b"}}
		r.Spec.Ingress = &v1alpha1.IngressSpec{Host: "registry.example.com"}
	})
	s := Service(r)
	if s.Spec.Type != corev1.ServiceTypeLoadBalancer || s.Spec.Ports[0].Port != 443 || s.Annotations["a"] != "b" || len(s.Spec.Ports) != 1 {
		t.Errorf("service = %+v", s.Spec)
	}
	if r.URL() != "https://main.platform.svc:443" {
		t.Errorf("url = %s", r.URL())
	}
	ing := Ingress(r)
	if ing.Spec.TLS[0].SecretName != "main-tls" || ing.Spec.Rules[0].HTTP.Paths[0].Backend.Service.Port.Name != PortName {
		t.Errorf("ingress = %+v", ing.Spec)
	}
}

// A registry pod keeps serving for a while after SIGTERM (so Services stop routing to it
// before its listener closes) and drains in-flight requests, all before the kubelet's
// SIGKILL at the end of the termination grace period.
func TestShutdownFitsTheGracePeriod(t *testing.T) {
	r := reg()
	c := Config(r, Inputs{})
	if c.HTTP.ShutdownDelay.Duration <= 0 {
		t.Errorf("shutdownDelay = %v: the listener would close before endpoints are updated", c.HTTP.ShutdownDelay)
	}
	if c.HTTP.DrainTimeout.Duration <= 0 {
		t.Errorf("drainTimeout = %v", c.HTTP.DrainTimeout)
	}
	grace := *Deployment(r, Inputs{}).Spec.Template.Spec.TerminationGracePeriodSeconds
	if total := c.HTTP.ShutdownDelay.Duration + c.HTTP.DrainTimeout.Duration; total >= time.Duration(grace)*time.Second {
		t.Errorf("shutdownDelay + drainTimeout = %v, not under the grace period %ds", total, grace)
	}
}

func TestEphemeralStorageAndProbes(t *testing.T) {
	q := resource.MustParse
	emptyDir := func(limit string) func(*v1alpha1.Registry) {
		return func(r *v1alpha1.Registry) {
			r.Spec.Storage = v1alpha1.RegistryStorage{EmptyDir: &v1alpha1.EmptyDirStorage{}}
			if limit != "" {
				l := q(limit)
				r.Spec.Storage.EmptyDir.SizeLimit = &l
			}
		}
	}
	userResources := func(r *v1alpha1.Registry) {
		r.Spec.Resources = &corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: q("1")},
			Limits:   corev1.ResourceList{corev1.ResourceEphemeralStorage: q("32Mi")},
		}
	}
	cases := map[string]struct {
		reg                *v1alpha1.Registry
		wantReq, wantLimit string // "" = unset
	}{
		"volume storage: defaults":              {reg(gc), "64Mi", "2Gi"},
		"emptyDir with a size limit: grows":     {reg(gc, emptyDir("5Gi")), "64Mi", "7Gi"},
		"emptyDir without a size limit: none":   {reg(gc, emptyDir("")), "64Mi", ""},
		"user's limit kept, request fits under": {reg(gc, userResources), "32Mi", "32Mi"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			for what, c := range map[string]corev1.Container{
				"registry": Deployment(tc.reg, in).Spec.Template.Spec.Containers[0],
				"gc":       CronJob(tc.reg, in).Spec.JobTemplate.Spec.Template.Spec.Containers[0],
			} {
				req, hasReq := c.Resources.Requests[corev1.ResourceEphemeralStorage]
				lim, hasLim := c.Resources.Limits[corev1.ResourceEphemeralStorage]
				if !hasReq || req.Cmp(q(tc.wantReq)) != 0 {
					t.Errorf("%s: ephemeral-storage request %v (set %v), want %s", what, req.String(), hasReq, tc.wantReq)
				}
				if hasLim != (tc.wantLimit != "") || (hasLim && lim.Cmp(q(tc.wantLimit)) != 0) {
					t.Errorf("%s: ephemeral-storage limit %v (set %v), want %q", what, lim.String(), hasLim, tc.wantLimit)
				}
			}
		})
	}
	r := reg(gc, userResources)
	_ = Deployment(r, in)
	if _, changed := r.Spec.Resources.Requests[corev1.ResourceEphemeralStorage]; changed {
		t.Error("the builder changed the Registry's own spec.resources")
	}
	c := Deployment(reg(), in).Spec.Template.Spec.Containers[0]
	if c.LivenessProbe.HTTPGet.Path != registryconfig.LivenessPath || c.ReadinessProbe.HTTPGet.Path != registryconfig.HealthPath {
		t.Errorf("liveness %s, readiness %s: liveness must not follow storage", c.LivenessProbe.HTTPGet.Path, c.ReadinessProbe.HTTPGet.Path)
	}
}
