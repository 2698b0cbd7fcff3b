package controller_test

import (
	"os"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dockyard-dev/dockyard/api/v1alpha1"
)

var _ = Describe("Registry validation at apply time", func() {
	var ns string
	BeforeEach(func() { ns = newNamespace() })

	DescribeTable("rejects an invalid Registry with a message a person understands",
		func(reg func(ns string) *v1alpha1.Registry, wantMessage string) {
			err := k8sClient.Create(ctx, reg(ns), client.DryRunAll)
			Expect(err).To(HaveOccurred())
			Expect(err.Error()).To(ContainSubstring(wantMessage))
		},
		Entry("auth without an identity provider", func(ns string) *v1alpha1.Registry {
			r := newRegistry(ns, "r")
			r.Spec.Auth = &v1alpha1.AuthSpec{AnonymousPull: true}
			return r
		}, "auth needs at least one identity provider"),
		Entry("an immutable-tag rule with a bracket pattern", func(ns string) *v1alpha1.Registry {
			r := newRegistry(ns, "r")
			r.Spec.ImmutableTags = []v1alpha1.ImmutableTagRule{{Repositories: []string{"**"}, Tags: []string{"v[0-9"}}}
			return r
		}, "spec.immutableTags[0].tags[0]"),
		Entry("an immutable-tag rule with an upper-case repository", func(ns string) *v1alpha1.Registry {
			r := newRegistry(ns, "r")
			r.Spec.ImmutableTags = []v1alpha1.ImmutableTagRule{{Repositories: []string{"Team-A/**"}, Tags: []string{"v*"}}}
			return r
		}, "repositories: each pattern is lowercase path segments"),
		Entry("an immutable-tag rule without tags", func(ns string) *v1alpha1.Registry {
			r := newRegistry(ns, "r")
			r.Spec.ImmutableTags = []v1alpha1.ImmutableTagRule{{Repositories: []string{"**"}}}
			return r
		}, "spec.immutableTags[0].tags"),
		Entry("node trust without TLS", func(ns string) *v1alpha1.Registry {
			r := newRegistry(ns, "r")
			r.Spec.NodeTrust = &v1alpha1.NodeTrustSpec{}
			return r
		}, "nodeTrust needs tls"),
		Entry("node trust writing into /etc", func(ns string) *v1alpha1.Registry {
			r := newRegistry(ns, "r", withTLSSecret("tls"))
			r.Spec.NodeTrust = &v1alpha1.NodeTrustSpec{ContainerdConfigPath: "/etc"}
			return r
		}, "spec.nodeTrust.containerdConfigPath"),
		Entry("node trust climbing out of a directory", func(ns string) *v1alpha1.Registry {
			r := newRegistry(ns, "r", withTLSSecret("tls"))
			r.Spec.NodeTrust = &v1alpha1.NodeTrustSpec{CRIOCertsDir: "/etc/containers/../../root/certs.d"}
			return r
		}, "spec.nodeTrust.crioCertsDir"),
		Entry("a scanner database that may be older than its update interval", func(ns string) *v1alpha1.Registry {
			r := newRegistry(ns, "r")
			r.Spec.Scanning = &v1alpha1.ScanningSpec{Database: &v1alpha1.ScanDatabaseSpec{
				UpdateInterval: &metav1.Duration{Duration: 24 * time.Hour}, MaxAge: &metav1.Duration{Duration: 12 * time.Hour}}}
			return r
		}, "maxAge must be longer than updateInterval"),
		Entry("a scanner database updated less often than the default maxAge", func(ns string) *v1alpha1.Registry {
			r := newRegistry(ns, "r")
			r.Spec.Scanning = &v1alpha1.ScanningSpec{Database: &v1alpha1.ScanDatabaseSpec{UpdateInterval: &metav1.Duration{Duration: 96 * time.Hour}}}
			return r
		}, "maxAge must be longer than updateInterval"),
		Entry("a scanner database repository without a tag", func(ns string) *v1alpha1.Registry {
			r := newRegistry(ns, "r")
			r.Spec.Scanning = &v1alpha1.ScanningSpec{Database: &v1alpha1.ScanDatabaseSpec{Repository: "security/trivy-db"}}
			return r
		}, "spec.scanning.database.repository"),
		Entry("17 scans at a time", func(ns string) *v1alpha1.Registry {
			r := newRegistry(ns, "r")
			r.Spec.Scanning = &v1alpha1.ScanningSpec{Concurrency: ptrTo(int32(17))}
			return r
		}, "spec.scanning.concurrency"),
		Entry("a scan timeout of 10s", func(ns string) *v1alpha1.Registry {
			r := newRegistry(ns, "r")
			r.Spec.Scanning = &v1alpha1.ScanningSpec{Timeout: &metav1.Duration{Duration: 10 * time.Second}}
			return r
		}, "timeout must be between 30s and 1h"),
		Entry("a sweep every 5 minutes", func(ns string) *v1alpha1.Registry {
			r := newRegistry(ns, "r")
			r.Spec.Scanning = &v1alpha1.ScanningSpec{SweepInterval: &metav1.Duration{Duration: 5 * time.Minute}}
			return r
		}, "sweepInterval must be between 10m and 168h"),
		Entry("rescans of images pulled within the last 30 minutes", func(ns string) *v1alpha1.Registry {
			r := newRegistry(ns, "r")
			r.Spec.Scanning = &v1alpha1.ScanningSpec{RescanPulledWithin: &metav1.Duration{Duration: 30 * time.Minute}}
			return r
		}, "rescanPulledWithin must be 0s (never) or between 1h and 2160h"),
		Entry("rescans of images pulled within 91 days", func(ns string) *v1alpha1.Registry {
			r := newRegistry(ns, "r")
			r.Spec.Scanning = &v1alpha1.ScanningSpec{RescanPulledWithin: &metav1.Duration{Duration: 91 * 24 * time.Hour}}
			return r
		}, "rescanPulledWithin must be 0s (never) or between 1h and 2160h"),
		Entry("a database update every minute", func(ns string) *v1alpha1.Registry {
			r := newRegistry(ns, "r")
			r.Spec.Scanning = &v1alpha1.ScanningSpec{Database: &v1alpha1.ScanDatabaseSpec{UpdateInterval: &metav1.Duration{Duration: time.Minute}}}
			return r
		}, "updateInterval must be between 10m and 168h"),
		Entry("a database allowed to be 60 days old", func(ns string) *v1alpha1.Registry {
			r := newRegistry(ns, "r")
			r.Spec.Scanning = &v1alpha1.ScanningSpec{Database: &v1alpha1.ScanDatabaseSpec{MaxAge: &metav1.Duration{Duration: 1440 * time.Hour}}}
			return r
		}, "maxAge must be between 1h and 720h"),
		Entry("a Java database repository without a tag", func(ns string) *v1alpha1.Registry {
			r := newRegistry(ns, "r")
			r.Spec.Scanning = &v1alpha1.ScanningSpec{Database: &v1alpha1.ScanDatabaseSpec{JavaRepository: "security/trivy-java-db"}}
			return r
		}, "spec.scanning.database.javaRepository"),
		Entry("no scans at a time", func(ns string) *v1alpha1.Registry {
			r := newRegistry(ns, "r")
			r.Spec.Scanning = &v1alpha1.ScanningSpec{Concurrency: ptrTo(int32(0))}
			return r
		}, "spec.scanning.concurrency"),
		Entry("a scanner image with a space", func(ns string) *v1alpha1.Registry {
			r := newRegistry(ns, "r")
			r.Spec.Scanning = &v1alpha1.ScanningSpec{Image: "trivy latest"}
			return r
		}, "spec.scanning.image"),
		Entry("a compliance policy that refuses nothing", func(ns string) *v1alpha1.Registry {
			r := newRegistry(ns, "r")
			r.Spec.Scanning = &v1alpha1.ScanningSpec{Policy: &v1alpha1.CompliancePolicy{FixableOnly: true}}
			return r
		}, "a policy that refuses nothing"),
		Entry("a compliance policy with an unknown severity", func(ns string) *v1alpha1.Registry {
			r := newRegistry(ns, "r")
			r.Spec.Scanning = &v1alpha1.ScanningSpec{Policy: &v1alpha1.CompliancePolicy{Severity: "Severe"}}
			return r
		}, "spec.scanning.policy.severity"),
		Entry("a compliance policy with an unknown action", func(ns string) *v1alpha1.Registry {
			r := newRegistry(ns, "r")
			r.Spec.Scanning = &v1alpha1.ScanningSpec{Policy: &v1alpha1.CompliancePolicy{Severity: "High", Action: "Audit"}}
			return r
		}, "spec.scanning.policy.action"),
		Entry("a compliance policy with an unknown pull action", func(ns string) *v1alpha1.Registry {
			r := newRegistry(ns, "r", withUsers("users"))
			r.Spec.Scanning = &v1alpha1.ScanningSpec{Policy: &v1alpha1.CompliancePolicy{Severity: "High", PullAction: "Warn"}}
			return r
		}, "spec.scanning.policy.pullAction"),
		Entry("an exemption without a reason", func(ns string) *v1alpha1.Registry {
			r := newRegistry(ns, "r")
			r.Spec.Scanning = &v1alpha1.ScanningSpec{Policy: &v1alpha1.CompliancePolicy{Severity: "High",
				Exemptions: []v1alpha1.VulnerabilityExemption{{ID: "CVE-2099-0001", Expires: metav1.Now()}}}}
			return r
		}, "spec.scanning.policy.exemptions[0].reason"),
		Entry("an exemption with a bad ID", func(ns string) *v1alpha1.Registry {
			r := newRegistry(ns, "r")
			r.Spec.Scanning = &v1alpha1.ScanningSpec{Policy: &v1alpha1.CompliancePolicy{Severity: "High",
				Exemptions: []v1alpha1.VulnerabilityExemption{{ID: "CVE 2099 0001", Reason: "r", Expires: metav1.Now()}}}}
			return r
		}, "spec.scanning.policy.exemptions[0].id"),
		Entry("an exemption for an upper-case repository", func(ns string) *v1alpha1.Registry {
			r := newRegistry(ns, "r")
			r.Spec.Scanning = &v1alpha1.ScanningSpec{Policy: &v1alpha1.CompliancePolicy{Severity: "High",
				Exemptions: []v1alpha1.VulnerabilityExemption{{ID: "CVE-2099-0001", Reason: "r", Expires: metav1.Now(), Repositories: []string{"Team-A/app"}}}}}
			return r
		}, "spec.scanning.policy.exemptions[0].repositories[0]"),
		Entry("a signature key that is not a PEM public key", func(ns string) *v1alpha1.Registry {
			r := newRegistry(ns, "r")
			r.Spec.Scanning = &v1alpha1.ScanningSpec{Policy: &v1alpha1.CompliancePolicy{
				Signatures: &v1alpha1.SignaturePolicy{PublicKeys: []string{"-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----"}}}}
			return r
		}, "each entry is one PEM block"),
		Entry("signatures without keys", func(ns string) *v1alpha1.Registry {
			r := newRegistry(ns, "r")
			r.Spec.Scanning = &v1alpha1.ScanningSpec{Policy: &v1alpha1.CompliancePolicy{Signatures: &v1alpha1.SignaturePolicy{}}}
			return r
		}, "spec.scanning.policy.signatures.publicKeys"),
		Entry("the registry refusing pulls without auth", func(ns string) *v1alpha1.Registry {
			r := newRegistry(ns, "r")
			r.Spec.Scanning = &v1alpha1.ScanningSpec{Policy: &v1alpha1.CompliancePolicy{Severity: "High", PullAction: v1alpha1.PullDeny}}
			return r
		}, "scanning.policy.pullAction: Deny needs auth"),
		Entry("pull secrets without auth", func(ns string) *v1alpha1.Registry {
			r := newRegistry(ns, "r")
			r.Spec.PullSecrets = &v1alpha1.PullSecretsSpec{}
			return r
		}, "pullSecrets needs auth"),
		Entry("a pull credential living a week", func(ns string) *v1alpha1.Registry {
			r := newRegistry(ns, "r", withServiceAccounts())
			r.Spec.PullSecrets = &v1alpha1.PullSecretsSpec{CredentialLifetime: &metav1.Duration{Duration: 7 * 24 * time.Hour}}
			return r
		}, "credentialLifetime must be between 30m and 24h"),
		Entry("a pull credential living a minute", func(ns string) *v1alpha1.Registry {
			r := newRegistry(ns, "r", withServiceAccounts())
			r.Spec.PullSecrets = &v1alpha1.PullSecretsSpec{CredentialLifetime: &metav1.Duration{Duration: time.Minute}}
			return r
		}, "credentialLifetime must be between 30m and 24h"),
		Entry("a pull-secret ServiceAccount name with upper case", func(ns string) *v1alpha1.Registry {
			r := newRegistry(ns, "r", withServiceAccounts())
			r.Spec.PullSecrets = &v1alpha1.PullSecretsSpec{ServiceAccounts: []string{"Default"}}
			return r
		}, "spec.pullSecrets.serviceAccounts[0]"),
		Entry("a ServiceAccount token cache of an hour", func(ns string) *v1alpha1.Registry {
			r := newRegistry(ns, "r", withServiceAccounts())
			r.Spec.Auth.ServiceAccounts.CacheTTL = &metav1.Duration{Duration: time.Hour}
			return r
		}, "cacheTTL must be between 1s and 5m"),
		Entry("an RBAC decision cache of an hour", func(ns string) *v1alpha1.Registry {
			r := newRegistry(ns, "r", withServiceAccounts())
			r.Spec.Auth.KubernetesRBAC = &v1alpha1.KubernetesRBACSpec{CacheTTL: &metav1.Duration{Duration: time.Hour}}
			return r
		}, "cacheTTL must be between 1s and 5m"),
		Entry("an empty ServiceAccount audience", func(ns string) *v1alpha1.Registry {
			r := newRegistry(ns, "r", withServiceAccounts())
			r.Spec.Auth.ServiceAccounts.Audiences = []string{""}
			return r
		}, "spec.auth.serviceAccounts.audiences[0]"),
		Entry("Kubernetes RBAC as the only provider", func(ns string) *v1alpha1.Registry {
			r := newRegistry(ns, "r")
			r.Spec.Auth = &v1alpha1.AuthSpec{KubernetesRBAC: &v1alpha1.KubernetesRBACSpec{}}
			return r
		}, "auth needs at least one identity provider"),
		Entry("plain LDAP without StartTLS", func(ns string) *v1alpha1.Registry {
			return newRegistry(ns, "r", withLDAP("ldap://ldap.example.com", "bind", nil))
		}, "plain ldap:// URLs need startTLS"),
		Entry("an LDAP URL with a path", func(ns string) *v1alpha1.Registry {
			return newRegistry(ns, "r", withLDAP("ldaps://ldap.example.com/dc=example?uid", "bind", nil))
		}, "spec.auth.ldap.urls[0]"),
		Entry("a user filter without {username}", func(ns string) *v1alpha1.Registry {
			r := newRegistry(ns, "r", withLDAP("ldaps://ldap.example.com", "bind", nil))
			r.Spec.Auth.LDAP.UserSearch.Filter = "(uid=alice)"
			return r
		}, "filter must be a parenthesised LDAP filter containing {username}"),
		Entry("both groupSearch and groupsAttribute", func(ns string) *v1alpha1.Registry {
			r := newRegistry(ns, "r", withLDAP("ldaps://ldap.example.com", "bind", nil))
			r.Spec.Auth.LDAP.GroupsAttribute = "memberOf"
			return r
		}, "set groupSearch or groupsAttribute, not both"),
		Entry("a CA from both a Secret and a ConfigMap", func(ns string) *v1alpha1.Registry {
			return newRegistry(ns, "r", withLDAP("ldaps://ldap.example.com", "bind", &v1alpha1.CABundleSource{
				SecretKeyRef:    &v1alpha1.SecretKeyReference{Name: "ca", Key: "ca.crt"},
				ConfigMapKeyRef: &v1alpha1.ConfigMapKeyReference{Name: "ca", Key: "ca.crt"}}))
		}, "set exactly one of secretKeyRef and configMapKeyRef"),
		Entry("an LDAP timeout of an hour", func(ns string) *v1alpha1.Registry {
			r := newRegistry(ns, "r", withLDAP("ldaps://ldap.example.com", "bind", nil))
			r.Spec.Auth.LDAP.Timeout = &metav1.Duration{Duration: time.Hour}
			return r
		}, "timeout must be between 1s and 1m"),
		Entry("an OIDC issuer over plain HTTP", func(ns string) *v1alpha1.Registry {
			r := newRegistry(ns, "r")
			r.Spec.Auth = &v1alpha1.AuthSpec{OIDC: &v1alpha1.OIDCSpec{IssuerURL: "http://idp.example.com", Audiences: []string{"r"}}}
			return r
		}, "spec.auth.oidc.issuerURL"),
		Entry("an OIDC provider without audiences", func(ns string) *v1alpha1.Registry {
			r := newRegistry(ns, "r")
			r.Spec.Auth = &v1alpha1.AuthSpec{OIDC: &v1alpha1.OIDCSpec{IssuerURL: "https://idp.example.com"}}
			return r
		}, "spec.auth.oidc.audiences"),
		Entry("a session longer than a week", func(ns string) *v1alpha1.Registry {
			r := newRegistry(ns, "r", withUsers("users"))
			r.Spec.Auth.Tokens = &v1alpha1.TokenSpec{SessionTTL: &metav1.Duration{Duration: 200 * time.Hour}}
			return r
		}, "sessionTTL must be between 1h and 168h"),
		Entry("a robot name with upper case", func(ns string) *v1alpha1.Registry {
			r := newRegistry(ns, "r")
			r.Spec.Auth = &v1alpha1.AuthSpec{Robots: []v1alpha1.RobotAccount{{Name: "CI", Repositories: []string{"**"}, Role: v1alpha1.RoleViewer}}}
			return r
		}, "spec.auth.robots[0].name"),
		Entry("a robot credential living ten minutes", func(ns string) *v1alpha1.Registry {
			r := newRegistry(ns, "r")
			r.Spec.Auth = &v1alpha1.AuthSpec{Robots: []v1alpha1.RobotAccount{{Name: "ci", Repositories: []string{"**"}, Role: v1alpha1.RoleViewer,
				CredentialLifetime: &metav1.Duration{Duration: 10 * time.Minute}}}}
			return r
		}, "credentialLifetime must be between 1h and 8760h"),
		Entry("two robots of one name", func(ns string) *v1alpha1.Registry {
			r := newRegistry(ns, "r")
			r.Spec.Auth = &v1alpha1.AuthSpec{Robots: []v1alpha1.RobotAccount{
				{Name: "ci", Repositories: []string{"**"}, Role: v1alpha1.RoleViewer},
				{Name: "ci", Repositories: []string{"a"}, Role: v1alpha1.RoleManager}}}
			return r
		}, "Duplicate value"),
		Entry("a group filter without {dn} or {username}", func(ns string) *v1alpha1.Registry {
			r := newRegistry(ns, "r", withLDAP("ldaps://ldap.example.com", "bind", nil))
			r.Spec.Auth.LDAP.GroupSearch.Filter = "(objectClass=groupOfNames)"
			return r
		}, "filter must be a parenthesised LDAP filter containing {dn} or {username}"),
		Entry("a groupsAttribute that is not an attribute name", func(ns string) *v1alpha1.Registry {
			r := newRegistry(ns, "r", withLDAP("ldaps://ldap.example.com", "bind", nil))
			r.Spec.Auth.LDAP.GroupSearch = nil
			r.Spec.Auth.LDAP.GroupsAttribute = "memberOf)(x"
			return r
		}, "spec.auth.ldap.groupsAttribute"),
		Entry("an LDAP URL of another scheme", func(ns string) *v1alpha1.Registry {
			return newRegistry(ns, "r", withLDAP("https://ldap.example.com", "bind", nil))
		}, "spec.auth.ldap.urls[0]"),
		Entry("a bind password Secret key with a slash", func(ns string) *v1alpha1.Registry {
			r := newRegistry(ns, "r", withLDAP("ldaps://ldap.example.com", "bind", nil))
			r.Spec.Auth.LDAP.BindPasswordSecretRef.Key = "../password"
			return r
		}, "spec.auth.ldap.bindPasswordSecretRef.key"),
		Entry("an LDAP login cache of two hours", func(ns string) *v1alpha1.Registry {
			r := newRegistry(ns, "r", withLDAP("ldaps://ldap.example.com", "bind", nil))
			r.Spec.Auth.LDAP.CacheTTL = &metav1.Duration{Duration: 2 * time.Hour}
			return r
		}, "cacheTTL must be at most 1h"),
		Entry("an LDAP failure cache of an hour", func(ns string) *v1alpha1.Registry {
			r := newRegistry(ns, "r", withLDAP("ldaps://ldap.example.com", "bind", nil))
			r.Spec.Auth.LDAP.NegativeCacheTTL = &metav1.Duration{Duration: time.Hour}
			return r
		}, "negativeCacheTTL must be at most 10m"),
		Entry("an OIDC username claim with a space", func(ns string) *v1alpha1.Registry {
			r := newRegistry(ns, "r")
			r.Spec.Auth = &v1alpha1.AuthSpec{OIDC: &v1alpha1.OIDCSpec{IssuerURL: "https://idp.example.com", Audiences: []string{"r"},
				UsernameClaim: "user name"}}
			return r
		}, "spec.auth.oidc.usernameClaim"),
		Entry("an OIDC username prefix with a colon", func(ns string) *v1alpha1.Registry {
			r := newRegistry(ns, "r")
			r.Spec.Auth = &v1alpha1.AuthSpec{OIDC: &v1alpha1.OIDCSpec{IssuerURL: "https://idp.example.com", Audiences: []string{"r"},
				UsernamePrefix: "oidc:"}}
			return r
		}, "spec.auth.oidc.usernamePrefix"),
		Entry("an OIDC CA from nowhere", func(ns string) *v1alpha1.Registry {
			r := newRegistry(ns, "r")
			r.Spec.Auth = &v1alpha1.AuthSpec{OIDC: &v1alpha1.OIDCSpec{IssuerURL: "https://idp.example.com", Audiences: []string{"r"},
				CA: &v1alpha1.CABundleSource{}}}
			return r
		}, "set exactly one of secretKeyRef and configMapKeyRef"),
		Entry("an unknown challenge scheme", func(ns string) *v1alpha1.Registry {
			r := newRegistry(ns, "r", withUsers("users"))
			r.Spec.Auth.Tokens = &v1alpha1.TokenSpec{Challenge: "Digest"}
			return r
		}, "spec.auth.tokens.challenge"),
		Entry("a token lifetime of two hours", func(ns string) *v1alpha1.Registry {
			r := newRegistry(ns, "r", withUsers("users"))
			r.Spec.Auth.Tokens = &v1alpha1.TokenSpec{TTL: &metav1.Duration{Duration: 2 * time.Hour}}
			return r
		}, "ttl must be between 1m and 1h"),
		Entry("a robot with a repository pattern in upper case", func(ns string) *v1alpha1.Registry {
			r := newRegistry(ns, "r")
			r.Spec.Auth = &v1alpha1.AuthSpec{Robots: []v1alpha1.RobotAccount{{Name: "ci", Repositories: []string{"Team/**"}, Role: v1alpha1.RoleViewer}}}
			return r
		}, "repositories: each pattern is lowercase path segments"),
		Entry("a robot with an unknown role", func(ns string) *v1alpha1.Registry {
			r := newRegistry(ns, "r")
			r.Spec.Auth = &v1alpha1.AuthSpec{Robots: []v1alpha1.RobotAccount{{Name: "ci", Repositories: []string{"**"}, Role: "Owner"}}}
			return r
		}, "spec.auth.robots[0].role"),
		Entry("a robot credential living two years", func(ns string) *v1alpha1.Registry {
			r := newRegistry(ns, "r")
			r.Spec.Auth = &v1alpha1.AuthSpec{Robots: []v1alpha1.RobotAccount{{Name: "ci", Repositories: []string{"**"}, Role: v1alpha1.RoleViewer,
				CredentialLifetime: &metav1.Duration{Duration: 2 * 8760 * time.Hour}}}}
			return r
		}, "credentialLifetime must be between 1h and 8760h"),
		Entry("a token lifetime under a minute", func(ns string) *v1alpha1.Registry {
			r := newRegistry(ns, "r", withUsers("users"))
			r.Spec.Auth.Tokens = &v1alpha1.TokenSpec{TTL: &metav1.Duration{Duration: 30 * time.Second}}
			return r
		}, "ttl must be between 1m and 1h"),
		Entry("a key rotation interval of an hour", func(ns string) *v1alpha1.Registry {
			r := newRegistry(ns, "r", withUsers("users"))
			r.Spec.Auth.Tokens = &v1alpha1.TokenSpec{KeyRotationInterval: &metav1.Duration{Duration: time.Hour}}
			return r
		}, "keyRotationInterval must be at least 2h"),
		Entry("no storage backend", func(ns string) *v1alpha1.Registry {
			return newRegistry(ns, "r", withStorage(v1alpha1.RegistryStorage{}))
		}, "set exactly one backend"),
		Entry("two storage backends", func(ns string) *v1alpha1.Registry {
			st := s3Storage("")
			st.EmptyDir = &v1alpha1.EmptyDirStorage{}
			return newRegistry(ns, "r", withStorage(st))
		}, "set exactly one backend"),
		Entry("replicas > 1 on a ReadWriteOnce volume", func(ns string) *v1alpha1.Registry {
			return newRegistry(ns, "r", withReplicas(2))
		}, "a ReadWriteOnce volume cannot be mounted by pods on different nodes"),
		Entry("replicas > 1 on emptyDir", func(ns string) *v1alpha1.Registry {
			return newRegistry(ns, "r", withReplicas(3), withStorage(v1alpha1.RegistryStorage{EmptyDir: &v1alpha1.EmptyDirStorage{}}))
		}, "emptyDir is private to each pod"),
		Entry("both issuerRef and secretRef", func(ns string) *v1alpha1.Registry {
			r := newRegistry(ns, "r", withIssuer("ClusterIssuer", "ca"))
			r.Spec.TLS.SecretRef = &v1alpha1.SecretReference{Name: "cert"}
			return r
		}, "set exactly one of issuerRef"),
		Entry("neither issuerRef nor secretRef", func(ns string) *v1alpha1.Registry {
			r := newRegistry(ns, "r")
			r.Spec.TLS = &v1alpha1.TLSSpec{}
			return r
		}, "set exactly one of issuerRef"),
		Entry("a schedule with six fields", func(ns string) *v1alpha1.Registry {
			return newRegistry(ns, "r", withGC("0 0 3 * * *"))
		}, "use five cron fields"),
		Entry("a schedule that is not cron", func(ns string) *v1alpha1.Registry {
			return newRegistry(ns, "r", withGC("every night"))
		}, "use five cron fields"),
		Entry("an unknown @-macro", func(ns string) *v1alpha1.Registry {
			return newRegistry(ns, "r", withGC("@fortnightly"))
		}, "use five cron fields"),
		Entry("a schedule with a minute out of range", func(ns string) *v1alpha1.Registry {
			return newRegistry(ns, "r", withGC("60 3 * * *"))
		}, "spec.garbageCollection.schedule: Invalid value"),
		Entry("a schedule with an hour out of range", func(ns string) *v1alpha1.Registry {
			return newRegistry(ns, "r", withGC("0 24 * * *"))
		}, "minute 0-59, hour 0-23"),
		Entry("a schedule with an unknown weekday", func(ns string) *v1alpha1.Registry {
			return newRegistry(ns, "r", withGC("0 3 * * MON-FUN"))
		}, "a field is out of range or has an unknown token"),
		Entry("a schedule with a zero step", func(ns string) *v1alpha1.Registry {
			return newRegistry(ns, "r", withGC("*/0 * * * *"))
		}, "a field is out of range or has an unknown token"),
		Entry("a scrape interval of a second", func(ns string) *v1alpha1.Registry {
			r := newRegistry(ns, "r")
			r.Spec.Monitoring = &v1alpha1.MonitoringSpec{Interval: &metav1.Duration{Duration: time.Second}}
			return r
		}, "monitoring.interval: between 5s and 10m"),
		Entry("a backup destination with both s3 and a volume", func(ns string) *v1alpha1.Registry {
			r := newRegistry(ns, "r")
			r.Spec.Backup = &v1alpha1.BackupSpec{Schedule: "@daily", Destination: v1alpha1.BackupLocation{
				S3: &v1alpha1.S3Storage{Bucket: "b"}, Volume: &v1alpha1.BackupVolume{ClaimName: "backups"}}}
			return r
		}, "set exactly one of s3 or volume"),
		Entry("a backup destination with neither", func(ns string) *v1alpha1.Registry {
			r := newRegistry(ns, "r")
			r.Spec.Backup = &v1alpha1.BackupSpec{Schedule: "@daily"}
			return r
		}, "set exactly one of s3 or volume"),
		Entry("a backup of emptyDir storage", func(ns string) *v1alpha1.Registry {
			r := newRegistry(ns, "r", withStorage(v1alpha1.RegistryStorage{EmptyDir: &v1alpha1.EmptyDirStorage{}}))
			r.Spec.Backup = &v1alpha1.BackupSpec{Schedule: "@daily", Destination: v1alpha1.BackupLocation{Volume: &v1alpha1.BackupVolume{ClaimName: "backups"}}}
			return r
		}, "backup and restore need a volume or object storage"),
		Entry("a backup of a ReadWriteOncePod volume", func(ns string) *v1alpha1.Registry {
			r := newRegistry(ns, "r", withAccessModes(corev1.ReadWriteOncePod))
			r.Spec.Backup = &v1alpha1.BackupSpec{Schedule: "@daily", Destination: v1alpha1.BackupLocation{Volume: &v1alpha1.BackupVolume{ClaimName: "backups"}}}
			return r
		}, "backup and restore cannot run on a ReadWriteOncePod volume"),
		Entry("a backup schedule that is no cron schedule", func(ns string) *v1alpha1.Registry {
			r := newRegistry(ns, "r")
			r.Spec.Backup = &v1alpha1.BackupSpec{Schedule: "daily", Destination: v1alpha1.BackupLocation{Volume: &v1alpha1.BackupVolume{ClaimName: "backups"}}}
			return r
		}, "backup.schedule: use five cron fields"),
		Entry("keeping no backup", func(ns string) *v1alpha1.Registry {
			r := newRegistry(ns, "r")
			zero := int32(0)
			r.Spec.Backup = &v1alpha1.BackupSpec{Schedule: "@daily", Keep: &zero, Destination: v1alpha1.BackupLocation{Volume: &v1alpha1.BackupVolume{ClaimName: "backups"}}}
			return r
		}, "spec.backup.keep"),
		Entry("a restore of a backup name with a slash", func(ns string) *v1alpha1.Registry {
			r := newRegistry(ns, "r")
			r.Spec.Restore = &v1alpha1.RestoreSpec{From: v1alpha1.BackupLocation{Volume: &v1alpha1.BackupVolume{ClaimName: "backups"}}, Backup: "../main"}
			return r
		}, "spec.restore.backup"),
		Entry("an alert label that is no Prometheus label name", func(ns string) *v1alpha1.Registry {
			r := newRegistry(ns, "r")
			r.Spec.Monitoring = &v1alpha1.MonitoringSpec{Alerts: &v1alpha1.AlertsSpec{Labels: map[string]string{"team-name": "a"}}}
			return r
		}, "alerts.labels: keys must be Prometheus label names"),
		Entry("an alert label the alerts set themselves", func(ns string) *v1alpha1.Registry {
			r := newRegistry(ns, "r")
			r.Spec.Monitoring = &v1alpha1.MonitoringSpec{Alerts: &v1alpha1.AlertsSpec{Labels: map[string]string{"severity": "info"}}}
			return r
		}, "alerts.labels: namespace, registry, severity and alertname are set by the operator"),
		Entry("a reserved alert label", func(ns string) *v1alpha1.Registry {
			r := newRegistry(ns, "r")
			r.Spec.Monitoring = &v1alpha1.MonitoringSpec{Alerts: &v1alpha1.AlertsSpec{Labels: map[string]string{"__name__": "x"}}}
			return r
		}, "names starting with __ are reserved"),
		Entry("an alert label value over 256 characters", func(ns string) *v1alpha1.Registry {
			r := newRegistry(ns, "r")
			r.Spec.Monitoring = &v1alpha1.MonitoringSpec{Alerts: &v1alpha1.AlertsSpec{Labels: map[string]string{"team": strings.Repeat("a", 257)}}}
			return r
		}, "alerts.labels: values are at most 256 characters"),
		Entry("cache prefixes that overlap", func(ns string) *v1alpha1.Registry {
			r := newRegistry(ns, "r")
			r.Spec.PullThroughCache = &v1alpha1.PullThroughCacheSpec{Upstreams: []v1alpha1.CacheUpstream{
				{Prefix: "docker.io", URL: "https://registry-1.docker.io"}, {Prefix: "docker.io/library", URL: "https://mirror.example.com"}}}
			return r
		}, "one prefix may not contain another"),
		Entry("a cache prefix twice", func(ns string) *v1alpha1.Registry {
			r := newRegistry(ns, "r")
			r.Spec.PullThroughCache = &v1alpha1.PullThroughCacheSpec{Upstreams: []v1alpha1.CacheUpstream{
				{Prefix: "ghcr", URL: "https://ghcr.io"}, {Prefix: "ghcr", URL: "https://mirror.example.com"}}}
			return r
		}, "Duplicate value"),
		Entry("a cache prefix with a wildcard", func(ns string) *v1alpha1.Registry {
			r := newRegistry(ns, "r")
			r.Spec.PullThroughCache = &v1alpha1.PullThroughCacheSpec{Upstreams: []v1alpha1.CacheUpstream{{Prefix: "hub/*", URL: "https://ghcr.io"}}}
			return r
		}, "prefix: lowercase repository path segments"),
		Entry("a cache upstream URL with a path", func(ns string) *v1alpha1.Registry {
			r := newRegistry(ns, "r")
			r.Spec.PullThroughCache = &v1alpha1.PullThroughCacheSpec{Upstreams: []v1alpha1.CacheUpstream{{Prefix: "hub", URL: "https://ghcr.io/v2"}}}
			return r
		}, "url: a registry address"),
		Entry("a cache tag TTL of zero", func(ns string) *v1alpha1.Registry {
			r := newRegistry(ns, "r")
			r.Spec.PullThroughCache = &v1alpha1.PullThroughCacheSpec{Upstreams: []v1alpha1.CacheUpstream{
				{Prefix: "hub", URL: "https://ghcr.io", TagTTL: &metav1.Duration{}}}}
			return r
		}, "tagTTL: between 1s and 168h"),
		Entry("a cache CA for a plain-http upstream", func(ns string) *v1alpha1.Registry {
			r := newRegistry(ns, "r")
			r.Spec.PullThroughCache = &v1alpha1.PullThroughCacheSpec{Upstreams: []v1alpha1.CacheUpstream{{Prefix: "hub", URL: "http://mirror.example.com",
				CABundle: &v1alpha1.CABundleSource{ConfigMapKeyRef: &v1alpha1.ConfigMapKeyReference{Name: "ca", Key: "ca.crt"}}}}}
			return r
		}, "caBundle needs an https URL"),
		Entry("an S3 bucket with '..'", func(ns string) *v1alpha1.Registry {
			st := s3Storage("")
			st.S3.Bucket = "my..bucket"
			return newRegistry(ns, "r", withStorage(st))
		}, "spec.storage.s3.bucket: Invalid value"),
		Entry("an S3 bucket named like an IP address", func(ns string) *v1alpha1.Registry {
			st := s3Storage("")
			st.S3.Bucket = "192.168.1.1"
			return newRegistry(ns, "r", withStorage(st))
		}, "are not an IP address"),
		Entry("an S3 bucket with upper case", func(ns string) *v1alpha1.Registry {
			st := s3Storage("")
			st.S3.Bucket = "Images"
			return newRegistry(ns, "r", withStorage(st))
		}, "spec.storage.s3.bucket: Invalid value"),
		Entry("a GCS bucket containing google", func(ns string) *v1alpha1.Registry {
			return newRegistry(ns, "r", withStorage(v1alpha1.RegistryStorage{GCS: &v1alpha1.GCSStorage{Bucket: "my-google-images"}}))
		}, "neither start with goog nor contain google"),
		Entry("an Azure container with a double hyphen", func(ns string) *v1alpha1.Registry {
			return newRegistry(ns, "r", withStorage(v1alpha1.RegistryStorage{Azure: &v1alpha1.AzureStorage{AccountName: "acct", Container: "img--x"}}))
		}, "spec.storage.azure.container: Invalid value"),
		Entry("a volume of size 0", func(ns string) *v1alpha1.Registry {
			return newRegistry(ns, "r", withStorage(v1alpha1.RegistryStorage{Filesystem: &v1alpha1.FilesystemStorage{Size: resource.MustParse("0")}}))
		}, "storage.filesystem.size must be greater than 0"),
		Entry("a negative emptyDir size limit", func(ns string) *v1alpha1.Registry {
			limit := resource.MustParse("-1Gi")
			return newRegistry(ns, "r", withStorage(v1alpha1.RegistryStorage{EmptyDir: &v1alpha1.EmptyDirStorage{SizeLimit: &limit}}))
		}, "storage.emptyDir.sizeLimit must be greater than 0"),
		Entry("redirectDownloads on a volume", func(ns string) *v1alpha1.Registry {
			r := newRegistry(ns, "r")
			r.Spec.Storage.RedirectDownloads = true
			return r
		}, "storage.redirectDownloads needs object storage"),
		Entry("redirectDownloads on emptyDir", func(ns string) *v1alpha1.Registry {
			r := newRegistry(ns, "r", withStorage(v1alpha1.RegistryStorage{EmptyDir: &v1alpha1.EmptyDirStorage{}, RedirectDownloads: true}))
			return r
		}, "storage.redirectDownloads needs object storage"),
		Entry("a malformed image reference", func(ns string) *v1alpha1.Registry {
			r := newRegistry(ns, "r")
			r.Spec.Image = "https://ghcr.io/dockyard:dev"
			return r
		}, "spec.image: Invalid value"),
		Entry("a repository pattern with a leading slash", func(ns string) *v1alpha1.Registry {
			return newRegistry(ns, "r", withUsers("users", rule(v1alpha1.RoleManager, "alice", "/team-a/**")))
		}, "each pattern is lowercase path segments"),
		Entry("a repository pattern with upper case", func(ns string) *v1alpha1.Registry {
			return newRegistry(ns, "r", withUsers("users", rule(v1alpha1.RoleViewer, "alice", "Team-A/*")))
		}, "each pattern is lowercase path segments"),
		Entry("a repository pattern with a double slash", func(ns string) *v1alpha1.Registry {
			return newRegistry(ns, "r", withUsers("users", rule(v1alpha1.RoleViewer, "alice", "team-a//x")))
		}, "each pattern is lowercase path segments"),
		Entry("an unknown role", func(ns string) *v1alpha1.Registry {
			return newRegistry(ns, "r", withUsers("users", rule("Owner", "alice", "**")))
		}, `supported values: "Manager", "Viewer"`),
		Entry("a port out of range", func(ns string) *v1alpha1.Registry {
			r := newRegistry(ns, "r")
			r.Spec.Service = &v1alpha1.ServiceSpec{Port: 70000}
			return r
		}, "should be less than or equal to 65535"),
		Entry("port 0", func(ns string) *v1alpha1.Registry {
			r := newRegistry(ns, "r")
			r.Spec.Service = &v1alpha1.ServiceSpec{Port: -1}
			return r
		}, "should be greater than or equal to 1"),
		Entry("too many replicas", func(ns string) *v1alpha1.Registry {
			return newRegistry(ns, "r", withReplicas(51), withStorage(s3Storage("")))
		}, "should be less than or equal to 50"),
		Entry("negative replicas", func(ns string) *v1alpha1.Registry {
			return newRegistry(ns, "r", withReplicas(-1))
		}, "should be greater than or equal to 0"),
		Entry("garbage collection on emptyDir", func(ns string) *v1alpha1.Registry {
			return newRegistry(ns, "r", withStorage(v1alpha1.RegistryStorage{EmptyDir: &v1alpha1.EmptyDirStorage{}}), withGC("@daily"))
		}, "garbageCollection cannot run on emptyDir"),
		Entry("garbage collection on a ReadWriteOncePod volume", func(ns string) *v1alpha1.Registry {
			return newRegistry(ns, "r", withAccessModes(corev1.ReadWriteOncePod), withGC("@daily"))
		}, "cannot run on a ReadWriteOncePod volume"),
		Entry("a grace period too short to protect pushes", func(ns string) *v1alpha1.Registry {
			r := newRegistry(ns, "r", withGC("@daily"))
			r.Spec.GarbageCollection.GracePeriod = &metav1.Duration{Duration: 30e9}
			return r
		}, "gracePeriod must be at least 10m"),
		Entry("a name too long for child objects", func(ns string) *v1alpha1.Registry {
			return newRegistry(ns, strings.Repeat("a", 50))
		}, "at most 49 characters"),
		Entry("a name starting with a digit (not a Service name)", func(ns string) *v1alpha1.Registry {
			return newRegistry(ns, "1registry")
		}, "must start with a letter"),
		Entry("an unknown deletion policy", func(ns string) *v1alpha1.Registry {
			return newRegistry(ns, "r", withDeletionPolicy("Orphan"))
		}, `supported values: "Retain", "Delete"`),
		Entry("an S3 endpoint that is not a URL", func(ns string) *v1alpha1.Registry {
			st := s3Storage("")
			st.S3.Endpoint = "minio:9000"
			return newRegistry(ns, "r", withStorage(st))
		}, "spec.storage.s3.endpoint"),
		Entry("dnsNames with a user-provided certificate", func(ns string) *v1alpha1.Registry {
			r := newRegistry(ns, "r", withTLSSecret("mine"))
			r.Spec.TLS.DNSNames = []string{"registry.example.com"}
			return r
		}, "tls.dnsNames only applies with issuerRef"),
		Entry("an issuer kind that is not Issuer or ClusterIssuer", func(ns string) *v1alpha1.Registry {
			return newRegistry(ns, "r", withIssuer("Vault", "v"))
		}, `supported values: "Issuer", "ClusterIssuer"`),
	)

	It("accepts replicas > 1 on shared storage", func() {
		Expect(k8sClient.Create(ctx, newRegistry(ns, "s3", withReplicas(3), withStorage(s3Storage(""))), client.DryRunAll)).To(Succeed())
		Expect(k8sClient.Create(ctx, newRegistry(ns, "rwx", withReplicas(2), withAccessModes(corev1.ReadWriteMany)), client.DryRunAll)).To(Succeed())
	})

	It("rejects a rescanPulledWithin that is not a duration (7d) at apply time", func() {
		obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(newRegistry(ns, "days"))
		Expect(err).NotTo(HaveOccurred())
		u := &unstructured.Unstructured{Object: obj}
		u.SetGroupVersionKind(v1alpha1.GroupVersion.WithKind("Registry"))
		Expect(unstructured.SetNestedField(u.Object, "7d", "spec", "scanning", "rescanPulledWithin")).To(Succeed())
		err = k8sClient.Create(ctx, u, client.DryRunAll)
		Expect(err).To(HaveOccurred())
		Expect(err.Error()).To(ContainSubstring("spec.scanning.rescanPulledWithin"))
	})

	It("accepts rescanPulledWithin 0s (never rescan) and 90 days", func() {
		for _, d := range []time.Duration{0, 2160 * time.Hour} {
			r := newRegistry(ns, "scan")
			r.Spec.Scanning = &v1alpha1.ScanningSpec{RescanPulledWithin: &metav1.Duration{Duration: d}}
			Expect(k8sClient.Create(ctx, r, client.DryRunAll)).To(Succeed(), d.String())
		}
	})

	It("fills defaults: replicas 1, Retain, ReadWriteOnce, ClusterIP port 5000, Issuer kind", func() {
		r := newRegistry(ns, "defaults", withIssuer("", "ca"))
		r.Spec.Service = &v1alpha1.ServiceSpec{}
		Expect(k8sClient.Create(ctx, r)).To(Succeed())
		Expect(*r.Spec.Replicas).To(Equal(int32(1)))
		Expect(r.Spec.DeletionPolicy).To(Equal(v1alpha1.DeletionPolicyRetain))
		Expect(r.Spec.Storage.Filesystem.AccessModes).To(ConsistOf(corev1.ReadWriteOnce))
		Expect(r.Spec.Service.Port).To(Equal(int32(5000)))
		Expect(r.Spec.Service.Type).To(Equal(corev1.ServiceTypeClusterIP))
		Expect(r.Spec.TLS.IssuerRef.Kind).To(Equal("Issuer"))
		Expect(r.Spec.TLS.IssuerRef.Group).To(Equal("cert-manager.io"))
	})

	DescribeTable("rejects updates that would strand data",
		func(mutate func(*v1alpha1.Registry), wantMessage string) {
			r := newRegistry(ns, "upd", func(r *v1alpha1.Registry) {
				r.Spec.Storage.Filesystem.StorageClassName = ptr("fast")
				r.Spec.Storage.Filesystem.Size = resource.MustParse("10Gi")
			})
			Expect(k8sClient.Create(ctx, r)).To(Succeed())
			mutate(r)
			err := k8sClient.Update(ctx, r)
			Expect(err).To(HaveOccurred())
			Expect(err.Error()).To(ContainSubstring(wantMessage))
		},
		Entry("switching the storage backend", func(r *v1alpha1.Registry) {
			r.Spec.Storage = s3Storage("")
		}, "the backend cannot be changed after creation"),
		Entry("shrinking the volume", func(r *v1alpha1.Registry) {
			r.Spec.Storage.Filesystem.Size = resource.MustParse("5Gi")
		}, "can grow but not shrink"),
		Entry("changing the storage class", func(r *v1alpha1.Registry) {
			r.Spec.Storage.Filesystem.StorageClassName = ptr("slow")
		}, "storageClassName cannot be changed"),
	)

	It("allows growing the volume", func() {
		r := newRegistry(ns, "grow")
		Expect(k8sClient.Create(ctx, r)).To(Succeed())
		r.Spec.Storage.Filesystem.Size = resource.MustParse("20Gi")
		Expect(k8sClient.Update(ctx, r)).To(Succeed())
	})

	It("accepts every sample in config/samples (server-side dry run)", func() {
		files, err := filepath.Glob(filepath.Join("..", "..", "config", "samples", "*.yaml"))
		Expect(err).NotTo(HaveOccurred())
		n := 0
		for _, f := range files {
			if filepath.Base(f) == "kustomization.yaml" {
				continue
			}
			data, err := os.ReadFile(f)
			Expect(err).NotTo(HaveOccurred())
			dec := yaml.NewYAMLOrJSONDecoder(strings.NewReader(string(data)), 4096)
			for {
				u := &unstructured.Unstructured{}
				if err := dec.Decode(&u.Object); err != nil {
					break
				}
				if len(u.Object) == 0 {
					continue
				}
				u.SetNamespace(ns)
				Expect(k8sClient.Create(ctx, u, client.DryRunAll)).To(Succeed(), "sample %s (%s %s)", f, u.GetKind(), u.GetName())
				n++
			}
		}
		Expect(n).To(BeNumerically(">", 0), "no samples found in config/samples")
	})
})

func ptr[T any](v T) *T { return &v }
