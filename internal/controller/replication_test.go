package controller_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	ggcrv1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dockyard-dev/dockyard/api/v1alpha1"
	"github.com/dockyard-dev/dockyard/internal/registryconfig"
	"github.com/dockyard-dev/dockyard/internal/testfixture"
	"github.com/dockyard-dev/dockyard/internal/workload/server"
)

// registryAddresses maps "namespace/name" of a Registry to the 127.0.0.1 address of the
// real registry standing in for its pods (see the suite's manager options).
var registryAddresses sync.Map

func registryAddress(reg *v1alpha1.Registry) string {
	if v, ok := registryAddresses.Load(reg.Namespace + "/" + reg.Name); ok {
		return v.(string)
	}
	return "127.0.0.1:1" // nothing listens: a Registry no test started fails as unreachable
}

var (
	eventsOnce sync.Once
	eventsHost string
)

// eventsAddr is where the suite's manager receives registry events: a free port on
// 127.0.0.1, chosen once.
func eventsAddr() string {
	eventsOnce.Do(func() {
		port, err := testfixture.FreePort()
		Expect(err).NotTo(HaveOccurred())
		eventsHost = fmt.Sprintf("127.0.0.1:%d", port)
	})
	return eventsHost
}

// liveRegistry is a real registry (`dockyard registry serve` as a library) on 127.0.0.1.
type liveRegistry struct {
	host  string
	caPEM []byte
	pool  *x509.CertPool
}

// startLiveRegistry runs a registry with TLS from a fresh CA and htpasswd users; tokens,
// when set, turns on the token service with those keys, issuer and service; events, when
// set, sends its pushes to the operator.
func startLiveRegistry(users map[string]string, tokens *registryconfig.Token, keys []byte, events ...*registryconfig.Events) *liveRegistry {
	GinkgoHelper()
	dir := GinkgoT().TempDir()
	files, err := testfixture.Write(dir)
	Expect(err).NotTo(HaveOccurred())
	var htpasswd string
	for u, p := range users {
		htpasswd += htpasswdLine(u, p)
	}
	Expect(os.WriteFile(filepath.Join(dir, "htpasswd"), []byte(htpasswd), 0o600)).To(Succeed())
	auth := &registryconfig.Auth{HtpasswdFile: filepath.Join(dir, "htpasswd"), Access: []registryconfig.AccessRule{{
		Subjects: []registryconfig.Subject{{Kind: registryconfig.SubjectUser, Name: "admin"}}, Repositories: []string{"**"}, Role: registryconfig.RoleManager,
	}}}
	if tokens != nil {
		Expect(os.WriteFile(filepath.Join(dir, "keys.json"), keys, 0o600)).To(Succeed())
		t := *tokens
		t.KeysFile = filepath.Join(dir, "keys.json")
		auth.Token = &t
	}
	cfg := &registryconfig.Config{
		APIVersion: registryconfig.APIVersion,
		HTTP:       registryconfig.HTTP{Addr: "127.0.0.1:0", TLS: &registryconfig.TLS{CertFile: files.CertFile, KeyFile: files.KeyFile}},
		Storage:    registryconfig.Storage{Filesystem: &registryconfig.FilesystemStorage{RootDirectory: filepath.Join(dir, "data")}},
		Auth:       auth,
		Log:        registryconfig.Log{Level: "error"},
	}
	if len(events) > 0 {
		cfg.Events = events[0]
	}
	cfg.Defaults()
	Expect(cfg.Validate()).To(Succeed())
	rctx, stop := context.WithCancel(context.Background())
	srv, err := server.New(rctx, cfg, server.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	Expect(err).NotTo(HaveOccurred())
	done := make(chan error, 1)
	go func() { done <- srv.Run(rctx) }()
	DeferCleanup(func() {
		stop()
		Eventually(done, 20*time.Second).Should(Receive(BeNil()))
	})
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(files.CAPEM)
	return &liveRegistry{host: srv.Addr(), caPEM: files.CAPEM, pool: pool}
}

func (l *liveRegistry) opts(user, pw string) []remote.Option {
	return []remote.Option{remote.WithTransport(&http.Transport{TLSClientConfig: &tls.Config{RootCAs: l.pool}}),
		remote.WithAuth(&authn.Basic{Username: user, Password: pw})}
}

func (l *liveRegistry) push(ref string, img ggcrv1.Image) string {
	GinkgoHelper()
	tag, err := name.NewTag(l.host + "/" + ref)
	Expect(err).NotTo(HaveOccurred())
	Expect(remote.Write(tag, img, l.opts("admin", "admin-pw")...)).To(Succeed())
	d, err := img.Digest()
	Expect(err).NotTo(HaveOccurred())
	return d.String()
}

// digestAt is the digest ref names at the registry, "" when it has none.
func (l *liveRegistry) digestAt(ref string) string {
	GinkgoHelper()
	tag, err := name.NewTag(l.host + "/" + ref)
	Expect(err).NotTo(HaveOccurred())
	d, err := remote.Head(tag, l.opts("admin", "admin-pw")...)
	if err != nil {
		return ""
	}
	return d.Digest.String()
}

// localRegistry makes a Ready Registry with TLS and users, and starts the real registry
// its pods would run: its certificate in the Registry's TLS Secret, its token keys those
// the operator generated and, with sendEvents, its pushes sent to the operator with a
// token of its ServiceAccount, as its pods would.
func localRegistry(ns, regName string, sendEvents ...bool) *liveRegistry {
	GinkgoHelper()
	Expect(k8sClient.Create(ctx, usersSecret(ns, "users", map[string]string{registryconfig.UsersHtpasswdKey: htpasswdLine("admin", "admin-pw")}))).To(Succeed())
	reg := newRegistry(ns, regName, withTLSSecret("tls"), withUsers("users"))
	var keys []byte
	Eventually(func(g Gomega) {
		if err := k8sClient.Get(ctx, key(ns, regName), &v1alpha1.Registry{}); err != nil {
			g.Expect(k8sClient.Create(ctx, reg)).To(Succeed())
		}
		sec := &corev1.Secret{}
		g.Expect(k8sClient.Get(ctx, key(ns, reg.TokenKeysSecretName()), sec)).To(Succeed())
		keys = sec.Data[registryconfig.TokenKeysKey]
		g.Expect(keys).NotTo(BeEmpty())
	}, timeout, interval).Should(Succeed())
	var events *registryconfig.Events
	if len(sendEvents) > 0 && sendEvents[0] {
		tokenFile := filepath.Join(GinkgoT().TempDir(), "token")
		Expect(os.WriteFile(tokenFile, []byte(serviceAccountToken(ns, regName, registryconfig.EventsAudience)), 0o600)).To(Succeed())
		events = &registryconfig.Events{URL: "http://" + eventsAddr() + registryconfig.EventsPath, TokenFile: tokenFile, Registry: ns + "/" + regName}
	}
	live := startLiveRegistry(map[string]string{"admin": "admin-pw"},
		&registryconfig.Token{Issuer: reg.TokenIssuer(), Service: reg.TokenService()}, keys, events)
	Expect(k8sClient.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "tls"}, Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{corev1.TLSCertKey: []byte("cert"), corev1.TLSPrivateKeyKey: []byte("key"), "ca.crt": live.caPEM},
	})).To(Succeed())
	registryAddresses.Store(ns+"/"+regName, live.host)
	markPVCBound(ns, regName+"-data")
	markDeploymentAvailable(ns, regName)
	expectCondition(ns, regName, v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonAvailable)
	return live
}

// serviceAccountToken is a token of a ServiceAccount (created when missing) for audience.
func serviceAccountToken(ns, sa, audience string) string {
	GinkgoHelper()
	acct := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: sa}}
	// The operator may create it meanwhile (a Registry's own ServiceAccount has its name).
	if err := k8sClient.Create(ctx, acct); err != nil {
		Expect(apierrors.IsAlreadyExists(err)).To(BeTrue(), "create ServiceAccount %s/%s: %v", ns, sa, err)
	}
	seconds := int64(3600)
	tr := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{Audiences: []string{audience}, ExpirationSeconds: &seconds}}
	Expect(k8sClient.SubResource("token").Create(ctx, acct, tr)).To(Succeed())
	return tr.Status.Token
}

func newRule(ns, ruleName, registry, url string, mutate ...func(*v1alpha1.ReplicationRule)) *v1alpha1.ReplicationRule {
	r := &v1alpha1.ReplicationRule{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: ruleName},
		Spec: v1alpha1.ReplicationRuleSpec{
			RegistryRef: v1alpha1.LocalRegistryReference{Name: registry},
			Direction:   v1alpha1.ReplicationPush,
			Remote:      v1alpha1.ReplicationRemote{URL: url},
			Filters:     v1alpha1.ReplicationFilters{Repositories: []string{"team-a/**"}},
		},
	}
	for _, m := range mutate {
		m(r)
	}
	return r
}

func ruleCondition(g Gomega, ns, name, t string) *metav1.Condition {
	rule := &v1alpha1.ReplicationRule{}
	g.Expect(k8sClient.Get(ctx, key(ns, name), rule)).To(Succeed())
	return meta.FindStatusCondition(rule.Status.Conditions, t)
}

func expectRuleCondition(ns, name, t string, status metav1.ConditionStatus, reason string) *metav1.Condition {
	GinkgoHelper()
	var c *metav1.Condition
	Eventually(func(g Gomega) {
		c = ruleCondition(g, ns, name, t)
		g.Expect(c).NotTo(BeNil(), "condition %s", t)
		g.Expect(c.Reason).To(Equal(reason), "condition %s: %s", t, c.Message)
		g.Expect(c.Status).To(Equal(status), "condition %s: %s", t, c.Message)
	}, timeout, interval).Should(Succeed())
	return c
}

var _ = Describe("ReplicationRule", func() {
	var ns string
	BeforeEach(func() { ns = newNamespace() })

	It("copies to a remote with TLS and credentials, reports counts and lag, and runs again on request", func() {
		local := localRegistry(ns, "main")
		remoteReg := startLiveRegistry(map[string]string{"admin": "admin-pw", "pusher": "pusher-pw"}, nil, nil)
		Expect(k8sClient.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "remote-creds"},
			StringData: map[string]string{"username": "admin", "password": "admin-pw"}})).To(Succeed())
		Expect(k8sClient.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "remote-ca"},
			Data: map[string]string{"ca.crt": string(remoteReg.caPEM)}})).To(Succeed())
		img, _ := random.Image(16<<10, 2)
		d := local.push("team-a/app:v1", img)
		local.push("team-b/other:v1", img)

		Expect(k8sClient.Create(ctx, newRule(ns, "promote", "main", "https://"+remoteReg.host, func(r *v1alpha1.ReplicationRule) {
			r.Spec.Remote.CredentialsSecretRef = &v1alpha1.SecretReference{Name: "remote-creds"}
			r.Spec.Remote.CABundle = &v1alpha1.CABundleSource{ConfigMapKeyRef: &v1alpha1.ConfigMapKeyReference{Name: "remote-ca", Key: "ca.crt"}}
			r.Spec.Destination = &v1alpha1.ReplicationDestination{Prefix: "prod", StripSegments: 1}
		}))).To(Succeed())
		c := expectRuleCondition(ns, "promote", v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonSynced)
		Expect(c.Message).To(ContainSubstring("1 artifacts in 1 repositories at the destination: 1 copied"))
		expectRuleCondition(ns, "promote", v1alpha1.ConditionDegraded, metav1.ConditionFalse, v1alpha1.ReasonAsExpected)
		expectRuleCondition(ns, "promote", v1alpha1.ConditionProgressing, metav1.ConditionFalse, v1alpha1.ReasonAsExpected)
		Expect(remoteReg.digestAt("prod/app:v1")).To(Equal(d))
		Expect(remoteReg.digestAt("prod/other:v1")).To(BeEmpty())
		rule := get(ns, "promote", &v1alpha1.ReplicationRule{})
		st := rule.Status
		Expect(st.ObservedGeneration).To(Equal(rule.Generation))
		Expect(st.LastRun).NotTo(BeNil())
		Expect(st.LastRun.Trigger).To(Equal(v1alpha1.ReplicationTriggerSpec))
		Expect(st.LastRun.Result).To(Equal(v1alpha1.ReplicationSucceeded))
		Expect(st.LastRun.ArtifactsCopied).To(Equal(int64(1)))
		Expect(st.LastRun.BytesCopied).To(BeNumerically(">=", 2*16<<10))
		Expect(st.Lag).NotTo(BeNil())
		Expect(st.Lag.Duration).To(BeZero())
		Expect(st.LastSuccessfulSyncTime).NotTo(BeNil())
		Expect(st.InSyncAsOf).NotTo(BeNil())

		By("a run cut short by an operator restart runs again")
		stale := get(ns, "promote", &v1alpha1.ReplicationRule{})
		patched := stale.DeepCopy()
		meta.SetStatusCondition(&patched.Status.Conditions, metav1.Condition{Type: v1alpha1.ConditionProgressing,
			Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonSyncing, Message: "a run that never finished"})
		Expect(k8sClient.Status().Patch(ctx, patched, client.MergeFrom(stale))).To(Succeed())
		poke := get(ns, "promote", &v1alpha1.ReplicationRule{})
		poked := poke.DeepCopy()
		poked.Annotations = map[string]string{"example.com/poke": "1"} // any event brings the reconcile a restart brings
		Expect(k8sClient.Patch(ctx, poked, client.MergeFrom(poke))).To(Succeed())
		Eventually(func(g Gomega) {
			got := &v1alpha1.ReplicationRule{}
			g.Expect(k8sClient.Get(ctx, key(ns, "promote"), got)).To(Succeed())
			g.Expect(got.Status.LastRun.Trigger).To(Equal(v1alpha1.ReplicationTriggerRetry))
			g.Expect(meta.IsStatusConditionFalse(got.Status.Conditions, v1alpha1.ConditionProgressing)).To(BeTrue())
		}, timeout, interval).Should(Succeed())
		rule = get(ns, "promote", &v1alpha1.ReplicationRule{})

		By("a new push and a run request")
		img2, _ := random.Image(8<<10, 1)
		d2 := local.push("team-a/app:v2", img2)
		p := rule.DeepCopy()
		p.Annotations = map[string]string{v1alpha1.ReplicationRunAnnotation: "1"}
		Expect(k8sClient.Patch(ctx, p, client.MergeFrom(rule))).To(Succeed())
		Eventually(func(g Gomega) {
			got := &v1alpha1.ReplicationRule{}
			g.Expect(k8sClient.Get(ctx, key(ns, "promote"), got)).To(Succeed())
			g.Expect(got.Status.LastHandledRunRequest).To(Equal("1"))
			g.Expect(got.Status.LastRun.Trigger).To(Equal(v1alpha1.ReplicationTriggerRequest))
			g.Expect(got.Status.LastRun.ArtifactsCopied).To(Equal(int64(1)))
			g.Expect(got.Status.LastRun.ArtifactsSkipped).To(Equal(int64(1)))
			g.Expect(got.Status.Total.ArtifactsCopied).To(Equal(int64(2)))
		}, timeout, interval).Should(Succeed())
		Expect(remoteReg.digestAt("prod/app:v2")).To(Equal(d2))
	})

	It("copies a push within seconds on push (onPush), and refuses events from anyone but the Registry", func() {
		local := localRegistry(ns, "main", true)
		remoteReg := startLiveRegistry(map[string]string{"admin": "admin-pw"}, nil, nil)
		Expect(k8sClient.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "remote"},
			StringData: map[string]string{"username": "admin", "password": "admin-pw", "ca.crt": string(remoteReg.caPEM)}})).To(Succeed())
		Expect(k8sClient.Create(ctx, newRule(ns, "live", "main", "https://"+remoteReg.host, func(r *v1alpha1.ReplicationRule) {
			r.Spec.OnPush = true
			r.Spec.Remote.CredentialsSecretRef = &v1alpha1.SecretReference{Name: "remote"}
			r.Spec.Remote.CABundle = &v1alpha1.CABundleSource{SecretKeyRef: &v1alpha1.SecretKeyReference{Name: "remote", Key: "ca.crt"}}
		}))).To(Succeed())
		expectRuleCondition(ns, "live", v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonNothingMatched)
		Expect(get(ns, "live", &v1alpha1.ReplicationRule{}).Status.NextScheduleTime).NotTo(BeNil(), "onPush rules get a backstop schedule")

		img, _ := random.Image(4<<10, 1)
		d := local.push("team-a/app:v1", img)
		local.push("team-b/app:v1", img) // not selected: no run
		Eventually(func() string { return remoteReg.digestAt("team-a/app:v1") }, 10*time.Second, 50*time.Millisecond).Should(Equal(d))
		Eventually(func(g Gomega) {
			got := &v1alpha1.ReplicationRule{}
			g.Expect(k8sClient.Get(ctx, key(ns, "live"), got)).To(Succeed())
			g.Expect(got.Status.LastRun.Trigger).To(Equal(v1alpha1.ReplicationTriggerPush))
			g.Expect(got.Status.LastRun.Repositories).To(Equal(int64(1)))
			g.Expect(got.Status.Lag.Duration).To(BeZero())
		}, timeout, interval).Should(Succeed())

		By("events from another ServiceAccount, or without a token, are refused")
		post := func(token string) int {
			body := `{"registry":"` + ns + `/main","events":[{"action":"push","repository":"team-a/app","tag":"v1"}]}`
			req, _ := http.NewRequest(http.MethodPost, "http://"+eventsAddr()+registryconfig.EventsPath, strings.NewReader(body))
			if token != "" {
				req.Header.Set("Authorization", "Bearer "+token)
			}
			resp, err := http.DefaultClient.Do(req)
			Expect(err).NotTo(HaveOccurred())
			_ = resp.Body.Close()
			return resp.StatusCode
		}
		Expect(post("")).To(Equal(http.StatusUnauthorized))
		Expect(post(serviceAccountToken(ns, "intruder", registryconfig.EventsAudience))).To(Equal(http.StatusForbidden))
		Expect(post(serviceAccountToken(ns, "main", "some-other-audience"))).To(Equal(http.StatusForbidden))
	})

	It("pulls from a remote into the Registry with a replication credential of its own", func() {
		local := localRegistry(ns, "main")
		upstream := startLiveRegistry(map[string]string{"admin": "admin-pw"}, nil, nil)
		img, _ := random.Image(8<<10, 1)
		d := upstream.push("library/alpine:1.0", img)
		upstream.push("library/alpine:2.0", img)
		Expect(k8sClient.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "upstream-ca"},
			Data: map[string][]byte{"ca.crt": upstream.caPEM}})).To(Succeed())
		Expect(k8sClient.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "upstream-creds"},
			Type:       corev1.SecretTypeDockerConfigJson,
			StringData: map[string]string{corev1.DockerConfigJsonKey: `{"auths":{"https://` + upstream.host + `":{"username":"admin","password":"admin-pw"}}}`}})).To(Succeed())
		Expect(k8sClient.Create(ctx, newRule(ns, "mirror", "main", upstream.host, func(r *v1alpha1.ReplicationRule) {
			r.Spec.Direction = v1alpha1.ReplicationPull
			r.Spec.Filters = v1alpha1.ReplicationFilters{Repositories: []string{"library/alpine"}, Tags: &v1alpha1.TagSelector{Glob: "1*"}}
			r.Spec.Destination = &v1alpha1.ReplicationDestination{Prefix: "mirror"}
			r.Spec.Remote.CredentialsSecretRef = &v1alpha1.SecretReference{Name: "upstream-creds"}
			r.Spec.Remote.CABundle = &v1alpha1.CABundleSource{SecretKeyRef: &v1alpha1.SecretKeyReference{Name: "upstream-ca", Key: "ca.crt"}}
		}))).To(Succeed())
		expectRuleCondition(ns, "mirror", v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonSynced)
		Expect(local.digestAt("mirror/library/alpine:1.0")).To(Equal(d))
		Expect(local.digestAt("mirror/library/alpine:2.0")).To(BeEmpty())
	})

	It("explains what is wrong: missing credentials, wrong credentials, an untrusted CA, no Registry", func() {
		localRegistry(ns, "main")
		remoteReg := startLiveRegistry(map[string]string{"admin": "admin-pw"}, nil, nil)
		url := "https://" + remoteReg.host
		Expect(k8sClient.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "remote-ca"},
			Data: map[string]string{"ca.crt": string(remoteReg.caPEM)}})).To(Succeed())
		withCA := func(r *v1alpha1.ReplicationRule) {
			r.Spec.Remote.CABundle = &v1alpha1.CABundleSource{ConfigMapKeyRef: &v1alpha1.ConfigMapKeyReference{Name: "remote-ca", Key: "ca.crt"}}
		}
		withCreds := func(r *v1alpha1.ReplicationRule) {
			r.Spec.Remote.CredentialsSecretRef = &v1alpha1.SecretReference{Name: "creds"}
		}
		Expect(k8sClient.Create(ctx, newRule(ns, "nocreds", "main", url, withCA, withCreds))).To(Succeed())
		c := expectRuleCondition(ns, "nocreds", v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonCredentialsNotFound)
		Expect(c.Message).To(ContainSubstring("Secret creds not found"))

		By("a wrong password: AuthenticationFailed, Degraded, and never the password in status")
		Expect(k8sClient.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "creds"},
			StringData: map[string]string{"username": "admin", "password": "not-the-password"}})).To(Succeed())
		expectRuleCondition(ns, "nocreds", v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonAuthenticationFailed)
		c = expectRuleCondition(ns, "nocreds", v1alpha1.ConditionDegraded, metav1.ConditionTrue, v1alpha1.ReasonAuthenticationFailed)
		Expect(c.Message).To(ContainSubstring(remoteReg.host))
		rule := get(ns, "nocreds", &v1alpha1.ReplicationRule{})
		Expect(rule.Status.LastRun.Result).To(Equal(v1alpha1.ReplicationFailed))
		Expect(rule.Status.FailedRuns).To(BeNumerically(">=", 1))
		raw, err := json.Marshal(rule.Status)
		Expect(err).NotTo(HaveOccurred())
		Expect(string(raw)).NotTo(ContainSubstring("not-the-password"))

		By("a remote whose CA is not trusted: TLSUntrusted")
		Expect(k8sClient.Create(ctx, newRule(ns, "untrusted", "main", url))).To(Succeed())
		expectRuleCondition(ns, "untrusted", v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonTLSUntrusted)

		By("a Registry that does not exist: RegistryNotFound")
		Expect(k8sClient.Create(ctx, newRule(ns, "orphan", "nowhere", url, withCA))).To(Succeed())
		expectRuleCondition(ns, "orphan", v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonRegistryNotFound)

		By("filters that match nothing: Ready with NothingMatched")
		Expect(k8sClient.Create(ctx, newRule(ns, "empty", "main", url, withCA, func(r *v1alpha1.ReplicationRule) {
			r.Spec.Filters.Repositories = []string{"nothing-here/**"}
		}))).To(Succeed())
		expectRuleCondition(ns, "empty", v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonNothingMatched)
	})

	DescribeTable("rejects an invalid ReplicationRule with a message a person understands",
		func(mutate func(*v1alpha1.ReplicationRule), wantMessage string) {
			err := k8sClient.Create(ctx, newRule(ns, "bad", "main", "https://registry.example.com", mutate), client.DryRunAll)
			Expect(err).To(HaveOccurred())
			Expect(err.Error()).To(ContainSubstring(wantMessage))
		},
		Entry("an unknown direction", func(r *v1alpha1.ReplicationRule) { r.Spec.Direction = "Both" }, `spec.direction: Unsupported value: "Both"`),
		Entry("a URL with a path", func(r *v1alpha1.ReplicationRule) { r.Spec.Remote.URL = "https://registry.example.com/v2/" }, "url: a registry address"),
		Entry("a URL of another scheme", func(r *v1alpha1.ReplicationRule) { r.Spec.Remote.URL = "ftp://registry.example.com" }, "url: a registry address"),
		Entry("a URL with credentials in it", func(r *v1alpha1.ReplicationRule) { r.Spec.Remote.URL = "https://user:pw@registry.example.com" }, "url: a registry address"),
		Entry("a CA bundle and insecureSkipTLSVerify", func(r *v1alpha1.ReplicationRule) {
			r.Spec.Remote.InsecureSkipTLSVerify = true
			r.Spec.Remote.CABundle = &v1alpha1.CABundleSource{ConfigMapKeyRef: &v1alpha1.ConfigMapKeyReference{Name: "ca", Key: "ca.crt"}}
		}, "set caBundle or insecureSkipTLSVerify, not both"),
		Entry("a CA bundle for plain http", func(r *v1alpha1.ReplicationRule) {
			r.Spec.Remote.URL = "http://registry.example.com"
			r.Spec.Remote.CABundle = &v1alpha1.CABundleSource{ConfigMapKeyRef: &v1alpha1.ConfigMapKeyReference{Name: "ca", Key: "ca.crt"}}
		}, "caBundle and insecureSkipTLSVerify need an https URL"),
		Entry("no repositories", func(r *v1alpha1.ReplicationRule) { r.Spec.Filters.Repositories = nil }, "spec.filters.repositories"),
		Entry("an upper-case repository pattern", func(r *v1alpha1.ReplicationRule) { r.Spec.Filters.Repositories = []string{"Team-A/**"} }, "repositories: each pattern is lowercase path segments"),
		Entry("a bad tag regex", func(r *v1alpha1.ReplicationRule) { r.Spec.Filters.Tags = &v1alpha1.TagSelector{Regex: "v(["} }, "regex: not a valid RE2 regular expression"),
		Entry("a bad semver range", func(r *v1alpha1.ReplicationRule) {
			r.Spec.Filters.Tags = &v1alpha1.TagSelector{Semver: "bigger than 1"}
		}, "semver: not a version constraint"),
		Entry("a destination prefix with a trailing slash", func(r *v1alpha1.ReplicationRule) {
			r.Spec.Destination = &v1alpha1.ReplicationDestination{Prefix: "mirror/"}
		}, "destination.prefix: lowercase path segments"),
		Entry("stripping every segment", func(r *v1alpha1.ReplicationRule) {
			r.Spec.Filters.Repositories = []string{"team-a/app"}
			r.Spec.Destination = &v1alpha1.ReplicationDestination{StripSegments: 2}
		}, "every repository pattern must keep at least one segment"),
		Entry("a schedule with six fields", func(r *v1alpha1.ReplicationRule) { r.Spec.Schedule = "0 0 3 * * *" }, "schedule: use five cron fields"),
		Entry("a schedule with an hour out of range", func(r *v1alpha1.ReplicationRule) { r.Spec.Schedule = "0 24 * * *" }, "schedule: a field is out of range"),
		Entry("a credentials Secret name with upper case", func(r *v1alpha1.ReplicationRule) {
			r.Spec.Remote.CredentialsSecretRef = &v1alpha1.SecretReference{Name: "Creds"}
		}, "spec.remote.credentialsSecretRef.name"),
	)
})
