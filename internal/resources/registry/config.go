package registry

import (
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/dockyard-dev/dockyard/api/v1alpha1"
	"github.com/dockyard-dev/dockyard/internal/registryconfig"
)

// ShutdownDelay is how long a registry pod keeps serving after SIGTERM (its health path
// failing) so that kube-proxy, ingress controllers and load balancers stop sending it new
// connections before its listener closes: without it a rolling update makes clients time
// out against the IP of a pod that has already gone. Measured on the local cluster.
const ShutdownDelay = 10 * time.Second

// DrainTimeout bounds the wait for in-flight requests (a large blob upload) after the delay.
// ShutdownDelay + DrainTimeout stays under TerminationGracePeriodSeconds.
const DrainTimeout = 40 * time.Second

// Config renders the workload configuration for reg. It holds no secret value: it names
// the environment variables and files through which credentials arrive.
func Config(reg *v1alpha1.Registry, in Inputs) *registryconfig.Config {
	c := &registryconfig.Config{
		APIVersion: registryconfig.APIVersion,
		HTTP: registryconfig.HTTP{
			Addr:          fmt.Sprintf(":%d", registryconfig.DefaultPort),
			SecretEnv:     registryconfig.EnvHTTPSecret,
			ShutdownDelay: registryconfig.Duration{Duration: ShutdownDelay},
			DrainTimeout:  registryconfig.Duration{Duration: DrainTimeout},
		},
		Metrics: registryconfig.Metrics{Addr: fmt.Sprintf(":%d", registryconfig.MetricsPort)},
		Log:     registryconfig.Log{Level: "info", Format: "json"},
	}
	c.Cache = cacheConfig(reg)
	c.Compliance = complianceConfig(reg)
	if in.EventsURL != "" {
		c.Events = &registryconfig.Events{URL: in.EventsURL, TokenFile: registryconfig.EventsTokenDir + "/" + registryconfig.EventsTokenFile,
			Registry: reg.Namespace + "/" + reg.Name}
	}
	if reg.Spec.TLS != nil {
		c.HTTP.TLS = &registryconfig.TLS{
			CertFile: registryconfig.TLSDir + "/" + registryconfig.TLSCertFile,
			KeyFile:  registryconfig.TLSDir + "/" + registryconfig.TLSKeyFile,
		}
	}
	st := reg.Spec.Storage
	switch {
	case st.Filesystem != nil:
		c.Storage.Filesystem = &registryconfig.FilesystemStorage{RootDirectory: registryconfig.DataDir}
	case st.EmptyDir != nil:
		c.Storage.Filesystem = &registryconfig.FilesystemStorage{RootDirectory: registryconfig.DataDir}
	case st.S3 != nil:
		s3 := &registryconfig.S3Storage{
			Bucket:         st.S3.Bucket,
			Region:         st.S3.Region,
			Endpoint:       st.S3.Endpoint,
			ForcePathStyle: st.S3.ForcePathStyle,
			Encrypt:        st.S3.Encrypt,
			RootDirectory:  st.S3.RootDirectory,
		}
		if s3.Region == "" {
			s3.Region = v1alpha1.DefaultS3Region
		}
		if st.S3.CredentialsSecretRef != nil {
			s3.AccessKeyIDEnv = registryconfig.EnvS3AccessKeyID
			s3.SecretAccessKeyEnv = registryconfig.EnvS3SecretAccessKey
		}
		c.Storage.S3 = s3
	case st.GCS != nil:
		g := &registryconfig.GCSStorage{Bucket: st.GCS.Bucket, RootDirectory: st.GCS.RootDirectory}
		if st.GCS.CredentialsSecretRef != nil {
			g.KeyFile = registryconfig.GCSDir + "/" + registryconfig.GCSKeyFile
		}
		c.Storage.GCS = g
	case st.Azure != nil:
		a := &registryconfig.AzureStorage{
			AccountName:   st.Azure.AccountName,
			Container:     st.Azure.Container,
			RootDirectory: st.Azure.RootDirectory,
		}
		if st.Azure.CredentialsSecretRef != nil {
			a.AccountKeyEnv = registryconfig.EnvAzureAccountKey
		}
		c.Storage.Azure = a
	}
	c.Storage.RedirectDownloads = st.RedirectDownloads
	if a := reg.Spec.Auth; a != nil {
		auth := &registryconfig.Auth{
			AnonymousPull: a.AnonymousPull,
			Token: &registryconfig.Token{
				KeysFile:   registryconfig.TokenDir + "/" + registryconfig.TokenKeysKey,
				Issuer:     reg.TokenIssuer(),
				Service:    reg.TokenService(),
				TTL:        registryconfig.Duration{Duration: a.Tokens.GetTTL()},
				Challenge:  string(a.Tokens.GetChallenge()),
				SessionTTL: registryconfig.Duration{Duration: a.Tokens.GetSessionTTL()},
			},
			LDAP:       LDAPConfig(a.LDAP),
			OIDC:       oidcConfig(a.OIDC),
			RobotsFile: registryconfig.RobotsDir + "/" + registryconfig.RobotsKey,
		}
		if a.UsersSecretRef != nil {
			auth.HtpasswdFile = registryconfig.UsersDir + "/" + registryconfig.UsersHtpasswdKey
			if in.UsersHaveGroups {
				auth.GroupsFile = registryconfig.UsersDir + "/" + registryconfig.UsersGroupsKey
			}
		}
		for _, r := range a.Access {
			rule := registryconfig.AccessRule{
				Repositories: append([]string(nil), r.Repositories...),
				Role:         registryconfig.Role(r.Role),
			}
			for _, s := range r.Subjects {
				rule.Subjects = append(rule.Subjects, registryconfig.Subject{Kind: registryconfig.SubjectKind(s.Kind), Name: s.Name})
			}
			auth.Access = append(auth.Access, rule)
		}
		auth.Kubernetes = kubernetesConfig(reg)
		c.Auth = auth
	}
	for _, r := range reg.Spec.ImmutableTags {
		c.ImmutableTags = append(c.ImmutableTags, registryconfig.ImmutableTagRule{
			Repositories: append([]string(nil), r.Repositories...), Tags: append([]string(nil), r.Tags...)})
	}
	if gc := reg.Spec.GarbageCollection; gc != nil {
		c.GC.DeleteUntagged = gc.DeleteUntagged
		c.GC.GracePeriod = registryconfig.Duration{Duration: gc.GetGracePeriod()}
	}
	c.Defaults()
	return c
}

// kubernetesConfig renders spec.auth.serviceAccounts and spec.auth.kubernetesRBAC: the
// pods ask the API server with their own ServiceAccount (see Deployment).
func kubernetesConfig(reg *v1alpha1.Registry) *registryconfig.Kubernetes {
	if !reg.UsesKubernetesAuth() {
		return nil
	}
	a := reg.Spec.Auth
	k := &registryconfig.Kubernetes{}
	if a.ServiceAccounts != nil {
		k.ServiceAccounts = &registryconfig.ServiceAccounts{Audiences: reg.ServiceAccountAudiences(),
			CacheTTL: registryconfig.Duration{Duration: a.ServiceAccounts.ServiceAccountCacheTTL()}}
	}
	if a.KubernetesRBAC != nil {
		k.RBAC = &registryconfig.RBAC{CacheTTL: registryconfig.Duration{Duration: a.KubernetesRBAC.RBACCacheTTL()}}
	}
	return k
}

// oidcConfig renders spec.auth.oidc; the CA arrives as a file.
func oidcConfig(o *v1alpha1.OIDCSpec) *registryconfig.OIDC {
	if o == nil {
		return nil
	}
	out := &registryconfig.OIDC{
		IssuerURL:      o.IssuerURL,
		Audiences:      append([]string(nil), o.Audiences...),
		UsernameClaim:  o.UsernameClaim,
		UsernamePrefix: o.UsernamePrefix,
		GroupsClaim:    o.GroupsClaim,
		GroupsPrefix:   o.GroupsPrefix,
		LoginClientID:  o.LoginClientID,
	}
	if len(o.RequiredClaims) > 0 {
		out.RequiredClaims = make(map[string]string, len(o.RequiredClaims))
		for k, v := range o.RequiredClaims {
			out.RequiredClaims[k] = v
		}
	}
	if o.CA != nil {
		out.CAFile = registryconfig.OIDCDir + "/" + registryconfig.OIDCCAFile
	}
	return out
}

// LDAPConfig renders spec.auth.ldap for the workload config; the bind password and CA
// arrive as files.
func LDAPConfig(l *v1alpha1.LDAPSpec) *registryconfig.LDAP {
	if l == nil {
		return nil
	}
	out := &registryconfig.LDAP{
		URLs:             append([]string(nil), l.URLs...),
		StartTLS:         l.StartTLS,
		BindDN:           l.BindDN,
		BindPasswordFile: registryconfig.LDAPDir + "/" + registryconfig.LDAPBindPasswordFile,
		UserSearch: registryconfig.LDAPUserSearch{
			BaseDN:            l.UserSearch.BaseDN,
			Filter:            l.UserSearch.Filter,
			UsernameAttribute: l.UserSearch.UsernameAttribute,
		},
		GroupsAttribute: l.GroupsAttribute,
	}
	if l.CA != nil {
		out.CAFile = registryconfig.LDAPDir + "/" + registryconfig.LDAPCAFile
	}
	if g := l.GroupSearch; g != nil {
		out.GroupSearch = &registryconfig.LDAPGroupSearch{BaseDN: g.BaseDN, Filter: g.Filter, NameAttribute: g.NameAttribute}
	}
	if l.Timeout != nil {
		out.Timeout = registryconfig.Duration{Duration: l.Timeout.Duration}
	}
	if l.CacheTTL != nil {
		out.CacheTTL = &registryconfig.Duration{Duration: l.CacheTTL.Duration}
	}
	if l.NegativeCacheTTL != nil {
		out.NegativeCacheTTL = &registryconfig.Duration{Duration: l.NegativeCacheTTL.Duration}
	}
	return out
}

// ConfigMap holds the rendered config under registryconfig.ConfigFileName and, when the
// registry refuses non-compliant pulls, its policy under registryconfig.ComplianceFileName
// (read live by the pods; see ComplianceFile).
func ConfigMap(reg *v1alpha1.Registry, rendered, compliance []byte) *corev1.ConfigMap {
	data := map[string]string{registryconfig.ConfigFileName: string(rendered)}
	if compliance != nil {
		data[registryconfig.ComplianceFileName] = string(compliance)
	}
	return &corev1.ConfigMap{
		TypeMeta:   typeMeta("v1", "ConfigMap"),
		ObjectMeta: objectMeta(reg, reg.ConfigMapName(), ComponentServer),
		Data:       data,
	}
}

// HTTPSecret is the generated secret replicas share to sign upload state. The controller
// creates it once with random bytes and never rewrites it.
func HTTPSecret(reg *v1alpha1.Registry, secret []byte) *corev1.Secret {
	return &corev1.Secret{
		TypeMeta:   typeMeta("v1", "Secret"),
		ObjectMeta: objectMeta(reg, reg.HTTPSecretName(), ComponentServer),
		Type:       corev1.SecretTypeOpaque,
		Data:       map[string][]byte{registryconfig.HTTPSecretKey: secret},
	}
}
