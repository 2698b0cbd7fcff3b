//go:build e2e

package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"golang.org/x/crypto/bcrypt"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dockyard-dev/dockyard/api/v1alpha1"
)

const regName = "main"

// Labels: "smoke" marks the quick, non-disruptive specs (`-ginkgo.label-filter=smoke`);
// "disruptive" ones renew certificates, roll pods, run GC or delete the Registry. They are
// not nested under one label, so a disruptive spec never counts as smoke.
var _ = Describe("a Registry on a real cluster", Ordered, func() {
	var (
		ns   string
		reg  *regClient
		ca   *x509.CertPool
		port int32
	)

	BeforeAll(func() {
		ns = namespaceWithCA("e2e")
		Expect(k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "users"}, StringData: map[string]string{
			"htpasswd": htpasswd("alice", "alice-pw") + htpasswd("victor", "victor-pw"),
			"groups":   "team-a: alice\n",
		}})).To(Succeed())
		r := &v1alpha1.Registry{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: regName},
			Spec: v1alpha1.RegistrySpec{
				Storage: v1alpha1.RegistryStorage{Filesystem: &v1alpha1.FilesystemStorage{
					Size: resource.MustParse("1Gi"), AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany},
				}},
				TLS: &v1alpha1.TLSSpec{IssuerRef: &v1alpha1.IssuerReference{Kind: "Issuer", Name: "ca"}, DNSNames: []string{"localhost"}},
				Auth: &v1alpha1.AuthSpec{UsersSecretRef: &v1alpha1.SecretReference{Name: "users"}, Access: []v1alpha1.AccessRule{
					{Subjects: []v1alpha1.Subject{{Kind: "Group", Name: "team-a"}}, Repositories: []string{"team-a/**"}, Role: v1alpha1.RoleManager},
					{Subjects: []v1alpha1.Subject{{Kind: "User", Name: "victor"}}, Repositories: []string{"**"}, Role: v1alpha1.RoleViewer},
				}, Robots: []v1alpha1.RobotAccount{
					{Name: "puller", Repositories: []string{"team-a/**"}, Role: v1alpha1.RoleViewer},
				}},
				GarbageCollection: &v1alpha1.GarbageCollectionSpec{Schedule: "0 3 * * *", DeleteUntagged: true},
				Service:           &v1alpha1.ServiceSpec{Type: corev1.ServiceTypeNodePort},
			},
		}
		Expect(k8s.Create(ctx, r)).To(Succeed())
	})

	It("becomes Ready (kubectl wait)", Label("smoke"), func() {
		run("kubectl", "-n", ns, "wait", "--for=condition=Ready", "registry/"+regName, "--timeout=300s")
		r := &v1alpha1.Registry{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: regName}, r)).To(Succeed())
		Expect(r.Status.URL).To(Equal(fmt.Sprintf("https://%s.%s.svc:5000", regName, ns)))
		Expect(r.Status.ObservedGeneration).To(Equal(r.Generation))
		ca = caPool(ns)
		svc := &corev1.Service{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: regName}, svc)).To(Succeed())
		port = svc.Spec.Ports[0].NodePort
		reg = newRegClient(fmt.Sprintf("%s.%s.svc:5000", regName, ns), svc.Spec.ClusterIP+":5000", ca)
		By("waiting for the Service to route to the ready pod (kube-proxy follows endpoints within moments)")
		Eventually(func() (int, error) {
			resp, err := (&http.Client{Transport: reg.transport, Timeout: 5 * time.Second}).Get("https://" + reg.host + "/v2/")
			if err != nil {
				return 0, err
			}
			resp.Body.Close()
			return resp.StatusCode, nil
		}, shortWait, poll).Should(Equal(http.StatusUnauthorized))
	})

	It("takes a push from a Manager and serves the same digest back", Label("smoke"), func() {
		img, err := random.Image(512<<10, 3)
		Expect(err).NotTo(HaveOccurred())
		ref := reg.ref("team-a/app:v1")
		Expect(remote.Write(ref, img, reg.opts("alice", "alice-pw")...)).To(Succeed())
		want, _ := img.Digest()
		got, err := remote.Image(ref, reg.opts("victor", "victor-pw")...)
		Expect(err).NotTo(HaveOccurred())
		gotDigest, _ := got.Digest()
		Expect(gotDigest).To(Equal(want))
		layers, _ := got.Layers()
		for _, l := range layers {
			rc, err := l.Compressed()
			Expect(err).NotTo(HaveOccurred())
			_, err = io.Copy(io.Discard, rc) // go-containerregistry verifies the digest at EOF
			Expect(err).NotTo(HaveOccurred(), "layer content verifies against its digest")
			Expect(rc.Close()).To(Succeed())
		}
	})

	It("refuses a push from a Viewer (403) and a client without credentials (401)", Label("smoke"), func() {
		img, _ := random.Image(1024, 1)
		err := remote.Write(reg.ref("team-a/app:viewer"), img, reg.opts("victor", "victor-pw")...)
		Expect(statusCode(err)).To(Equal(http.StatusForbidden), "%v", err)
		_, err = remote.Image(reg.ref("team-a/app:v1"), remote.WithTransport(reg.transport))
		Expect(statusCode(err)).To(Equal(http.StatusUnauthorized), "%v", err)
	})

	It("lets a pod on the node run an image pulled with the pull secret the operator wrote for a robot", Label("smoke"), func() {
		certsDir := os.Getenv("E2E_CONTAINERD_CERTS_DIR")
		tarPath := filepath.Join(repoRoot, "bin", "images", "dockyard.tar")
		if certsDir == "" {
			Skip("E2E_CONTAINERD_CERTS_DIR is unset: cannot make the node trust the Registry's CA")
		}
		Expect(tarPath).To(BeAnExistingFile(), "make image-tar builds it")
		base, err := tarball.ImageFromPath(tarPath, nil)
		Expect(err).NotTo(HaveOccurred())
		// A distinct image ID (one more label), not the operator's own image: once the kubelet
		// has pulled an image ID with a pull secret, it stops treating that ID as preloaded
		// (KEP-2535, imagePullCredentialsVerificationPolicy) and would re-verify dockyard:dev
		// for the registry's own pods against docker.io, which is not reachable here.
		cfg, err := base.ConfigFile()
		Expect(err).NotTo(HaveOccurred())
		cfg = cfg.DeepCopy()
		cfg.Config.Labels = map[string]string{"dev.dockyard.e2e": ns}
		img, err := mutate.ConfigFile(base, cfg)
		Expect(err).NotTo(HaveOccurred())
		Expect(remote.Write(reg.ref("team-a/dockyard:e2e"), img, reg.opts("alice", "alice-pw")...)).To(Succeed())

		// The node resolves cluster names through CoreDNS (as on clusters whose nodes use
		// cluster DNS); the certificate covers the Service's full name.
		host := fmt.Sprintf("%s.%s.svc.cluster.local:5000", regName, ns)
		_ = port
		trustCA(certsDir, host, ns)
		// The robot's Secret (kubernetes.io/dockerconfigjson, written by the operator) names
		// this host; kubelet and containerd log in with it through the token endpoint.
		robot := &corev1.Secret{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: regName + "-robot-puller"}, robot)).To(Succeed())
		Expect(robot.Type).To(Equal(corev1.SecretTypeDockerConfigJson))
		Expect(string(robot.Data[corev1.DockerConfigJsonKey])).To(ContainSubstring(`"` + host + `"`))
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "pulled"},
			Spec: corev1.PodSpec{
				RestartPolicy:    corev1.RestartPolicyNever,
				ImagePullSecrets: []corev1.LocalObjectReference{{Name: robot.Name}},
				SecurityContext:  &corev1.PodSecurityContext{RunAsNonRoot: ptr(true), RunAsUser: ptr(int64(65532)), SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
				Containers: []corev1.Container{{
					Name: "c", Image: host + "/team-a/dockyard:e2e", ImagePullPolicy: corev1.PullAlways, Args: []string{"version"},
					SecurityContext: &corev1.SecurityContext{AllowPrivilegeEscalation: ptr(false), Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}},
				}},
			},
		}
		Expect(k8s.Create(ctx, pod)).To(Succeed())
		Eventually(func(g Gomega) {
			p := &corev1.Pod{}
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(pod), p)).To(Succeed())
			g.Expect(p.Status.Phase).To(Equal(corev1.PodSucceeded), "pod status: %+v", p.Status.ContainerStatuses)
		}, longWait, poll).Should(Succeed())
	})

	It("keeps serving every push while cert-manager renews the certificate", Label("disruptive"), func() {
		before := servedSerial(reg, ca)
		secret := &corev1.Secret{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: regName + "-tls"}, secret)).To(Succeed())
		oldCert := string(secret.Data["tls.crt"])

		pushes := startLoad(200, 200*time.Millisecond, func(i int) error { // bounded: at most 200 small pushes
			img, _ := random.Image(4096, 1)
			return remote.Write(reg.ref(fmt.Sprintf("team-a/rotation:%d", i)), img, reg.opts("alice", "alice-pw")...)
		})
		defer pushes.Stop()

		By("asking cert-manager to renew (what `cmctl renew` does)")
		renew(ns, regName+"-tls")
		Eventually(func() string {
			s := &corev1.Secret{}
			_ = k8s.Get(ctx, client.ObjectKeyFromObject(secret), s)
			return string(s.Data["tls.crt"])
		}, longWait, poll).ShouldNot(Equal(oldCert))
		By("waiting for the registry to serve the renewed certificate (kubelet refreshes the volume, the registry reloads it)")
		Eventually(func() string { return servedSerial(reg, ca) }, longWait, time.Second).ShouldNot(Equal(before))
		pushes.Stop()
		Expect(pushes.failed.Load()).To(BeZero(), "pushes failed during rotation, last error: %v", pushes.lastErr.Load())
		Expect(pushes.ok.Load()).To(BeNumerically(">", 5))
	})

	It("rolls out a spec change (two replicas, anonymous pull) without a failed request", Label("disruptive"), func() {
		By("pulling a manifest through the Service all along (bounded: at most 1000 requests)")
		pulls := startLoad(1000, 100*time.Millisecond, func(int) error {
			_, err := remote.Head(reg.ref("team-a/app:v1"), reg.opts("victor", "victor-pw")...)
			return err
		})
		defer pulls.Stop()

		Eventually(func() error {
			r := &v1alpha1.Registry{}
			if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: regName}, r); err != nil {
				return err
			}
			r.Spec.Replicas = ptr(int32(2))
			r.Spec.Auth.AnonymousPull = true
			return k8s.Update(ctx, r)
		}, shortWait, poll).Should(Succeed())
		Eventually(func(g Gomega) {
			r := &v1alpha1.Registry{}
			g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: regName}, r)).To(Succeed())
			g.Expect(r.Status.ObservedGeneration).To(Equal(r.Generation))
			g.Expect(r.Status.ReadyReplicas).To(Equal(int32(2)))
			g.Expect(r.Status.Replicas).To(Equal(int32(2)))
			ready := conditionStatus(r, v1alpha1.ConditionReady)
			g.Expect(ready).To(Equal(metav1.ConditionTrue))
		}, longWait, poll).Should(Succeed())
		By("waiting until every old pod is gone (they keep serving while Services drop them)")
		Eventually(func(g Gomega) {
			pods := &corev1.PodList{}
			g.Expect(k8s.List(ctx, pods, client.InNamespace(ns), client.MatchingLabels{"app.kubernetes.io/instance": regName, "app.kubernetes.io/component": "registry"})).To(Succeed())
			g.Expect(pods.Items).To(HaveLen(2), "old pods still terminating")
		}, longWait, poll).Should(Succeed())
		time.Sleep(3 * time.Second) // requests after the last old pod exited
		pulls.Stop()
		GinkgoWriter.Printf("rollout: %d requests served, %d failed\n", pulls.ok.Load(), pulls.failed.Load())
		Expect(pulls.failed.Load()).To(BeZero(), "requests failed during the rollout (%d served), last error: %v", pulls.ok.Load(), pulls.lastErr.Load())
		Expect(pulls.ok.Load()).To(BeNumerically(">", 20))

		_, err := remote.Image(reg.ref("team-a/app:v1"), remote.WithTransport(reg.transport))
		Expect(err).NotTo(HaveOccurred(), "anonymous pull is on")
	})

	It("runs garbage collection from the CronJob and records the result", Label("disruptive"), func() {
		Expect(remote.Delete(reg.ref("team-a/rotation:0"), reg.opts("alice", "alice-pw")...)).To(Succeed())
		job := fmt.Sprintf("%s-gc-manual-%d", regName, time.Now().Unix()%10000)
		run("kubectl", "-n", ns, "create", "job", job, "--from=cronjob/"+regName+"-gc")
		Eventually(func(g Gomega) {
			r := &v1alpha1.Registry{}
			g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: regName}, r)).To(Succeed())
			gc := r.Status.LastGarbageCollection
			g.Expect(gc).NotTo(BeNil())
			g.Expect(gc.JobName).To(Equal(job))
			g.Expect(gc.Result).To(Equal("Succeeded"), "message: %s", gc.Message)
			g.Expect(gc.CompletionTime).NotTo(BeNil())
		}, longWait, poll).Should(Succeed())
		_, err := remote.Image(reg.ref("team-a/app:v1"), reg.opts("victor", "victor-pw")...)
		Expect(err).NotTo(HaveOccurred(), "tagged images survive garbage collection")
	})

	It("deletes its children with the Registry and keeps the volume (deletionPolicy Retain)", Label("disruptive"), func() {
		Expect(k8s.Delete(ctx, &v1alpha1.Registry{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: regName}})).To(Succeed())
		for _, obj := range []client.Object{&appsv1.Deployment{}, &corev1.Service{}, &corev1.ConfigMap{}} {
			name := regName
			if _, ok := obj.(*corev1.ConfigMap); ok {
				name = regName + "-config"
			}
			Eventually(func() error { return k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, obj) }, longWait, poll).
				Should(Satisfy(apierrors.IsNotFound), "%T %s", obj, name)
		}
		Consistently(func() error {
			return k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: regName + "-data"}, &corev1.PersistentVolumeClaim{})
		}, 5*time.Second, poll).Should(Succeed(), "the PVC is retained")
	})
})

// load sends requests in the background, one every interval and at most max of them,
// until stopped, counting those that succeed and those that fail.
type load struct {
	ok, failed atomic.Int64
	lastErr    atomic.Value
	stop, done chan struct{}
	once       sync.Once
}

func startLoad(maxRequests int, interval time.Duration, request func(i int) error) *load {
	l := &load{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer GinkgoRecover()
		defer close(l.done)
		for i := 0; i < maxRequests; i++ {
			select {
			case <-l.stop:
				return
			default:
			}
			if err := request(i); err != nil {
				l.failed.Add(1)
				l.lastErr.Store(err.Error())
			} else {
				l.ok.Add(1)
			}
			time.Sleep(interval)
		}
	}()
	return l
}

// Stop ends the load and waits for the request in flight; calling it again does nothing.
func (l *load) Stop() { l.once.Do(func() { close(l.stop); <-l.done }) }

// createCAIssuer makes a CA with cert-manager: a self-signed Issuer signs a CA
// Certificate, and an Issuer named "ca" issues from it.
// namespaceWithCA creates a namespace enforcing the "restricted" Pod Security Standard,
// deleted after the specs unless one failed (its objects then stay for debugging), with a
// CA Issuer named ca.
func namespaceWithCA(prefix string) string {
	GinkgoHelper()
	return namespaceWithCALevel(prefix, "restricted")
}

// namespaceWithCALevel is namespaceWithCA enforcing another Pod Security level (privileged
// for a Registry with nodeTrust, whose DaemonSet mounts host directories).
func namespaceWithCALevel(prefix, level string) string {
	GinkgoHelper()
	ns := fmt.Sprintf("%s-%d", prefix, time.Now().Unix()%100000)
	Expect(k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{
		"pod-security.kubernetes.io/enforce": level,
	}}})).To(Succeed())
	DeferCleanup(func() {
		if !CurrentSpecReport().Failed() {
			_ = k8s.Delete(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
		}
	})
	createCAIssuer(ns)
	return ns
}

func createCAIssuer(ns string) {
	GinkgoHelper()
	Expect(k8s.Create(ctx, &cmapi.Issuer{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "selfsigned"},
		Spec: cmapi.IssuerSpec{IssuerConfig: cmapi.IssuerConfig{SelfSigned: &cmapi.SelfSignedIssuer{}}}})).To(Succeed())
	Expect(k8s.Create(ctx, &cmapi.Certificate{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ca"},
		Spec: cmapi.CertificateSpec{IsCA: true, CommonName: "dockyard e2e CA", SecretName: "ca",
			PrivateKey: &cmapi.CertificatePrivateKey{Algorithm: cmapi.ECDSAKeyAlgorithm, Size: 256},
			IssuerRef:  cmmeta.IssuerReference{Name: "selfsigned", Kind: "Issuer"}}})).To(Succeed())
	Expect(k8s.Create(ctx, &cmapi.Issuer{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ca"},
		Spec: cmapi.IssuerSpec{IssuerConfig: cmapi.IssuerConfig{CA: &cmapi.CAIssuer{SecretName: "ca"}}}})).To(Succeed())
}

func caPool(ns string) *x509.CertPool {
	GinkgoHelper()
	s := &corev1.Secret{}
	Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "ca"}, s)).To(Succeed())
	pool := x509.NewCertPool()
	Expect(pool.AppendCertsFromPEM(s.Data["tls.crt"])).To(BeTrue())
	return pool
}

// trustCA writes containerd's per-registry host config so the node trusts the CA.
func trustCA(certsDir, host, ns string) {
	GinkgoHelper()
	s := &corev1.Secret{}
	Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "ca"}, s)).To(Succeed())
	dir := filepath.Join(certsDir, host)
	Expect(os.MkdirAll(dir, 0o755)).To(Succeed())
	Expect(os.WriteFile(filepath.Join(dir, "ca.crt"), s.Data["tls.crt"], 0o644)).To(Succeed())
	Expect(os.WriteFile(filepath.Join(dir, "hosts.toml"), []byte(fmt.Sprintf(
		"server = \"https://%s\"\n\n[host.\"https://%s\"]\n  capabilities = [\"pull\", \"resolve\"]\n  ca = %q\n", host, host, filepath.Join(dir, "ca.crt"))), 0o644)).To(Succeed())
	DeferCleanup(os.RemoveAll, dir)
}

// renew sets the Issuing condition on a Certificate, as `cmctl renew` does.
func renew(ns, name string) {
	GinkgoHelper()
	Eventually(func() error {
		c := &cmapi.Certificate{}
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, c); err != nil {
			return err
		}
		now := metav1.Now()
		c.Status.Conditions = append(c.Status.Conditions, cmapi.CertificateCondition{
			Type: cmapi.CertificateConditionIssuing, Status: cmmeta.ConditionTrue, Reason: "ManuallyTriggered",
			Message: "Certificate re-issuance manually triggered", LastTransitionTime: &now, ObservedGeneration: c.Generation,
		})
		return k8s.Status().Update(ctx, c)
	}, shortWait, poll).Should(Succeed())
}

// regClient talks to a registry by its Service name, dialling the Service's ClusterIP (the
// test runs inside the cluster's network namespace but not with cluster DNS).
type regClient struct {
	host      string
	transport http.RoundTripper
}

func newRegClient(host, dialAddr string, ca *x509.CertPool) *regClient {
	d := &net.Dialer{Timeout: 10 * time.Second}
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: ca, MinVersion: tls.VersionTLS12},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, dialAddr)
		},
		DisableKeepAlives: true, // every request sees the certificate served now
	}
	return &regClient{host: host, transport: tr}
}

func (c *regClient) ref(repoTag string) name.Reference {
	r, err := name.ParseReference(c.host + "/" + repoTag)
	Expect(err).NotTo(HaveOccurred())
	return r
}

func (c *regClient) opts(user, pw string) []remote.Option {
	return []remote.Option{remote.WithTransport(c.transport), remote.WithAuth(&authn.Basic{Username: user, Password: pw})}
}

// servedSerial returns the serial number of the certificate the registry serves now.
func servedSerial(c *regClient, ca *x509.CertPool) string {
	tr := c.transport.(*http.Transport)
	conn, err := tr.DialContext(ctx, "tcp", c.host)
	if err != nil {
		return "dial: " + err.Error()
	}
	defer conn.Close()
	host, _, _ := net.SplitHostPort(c.host)
	tc := tls.Client(conn, &tls.Config{RootCAs: ca, ServerName: host, MinVersion: tls.VersionTLS12})
	if err := tc.HandshakeContext(ctx); err != nil {
		return "handshake: " + err.Error()
	}
	return tc.ConnectionState().PeerCertificates[0].SerialNumber.String()
}

func statusCode(err error) int {
	var te *transport.Error
	if errors.As(err, &te) {
		return te.StatusCode
	}
	return 0
}

func conditionStatus(r *v1alpha1.Registry, t string) metav1.ConditionStatus {
	for _, c := range r.Status.Conditions {
		if c.Type == t {
			return c.Status
		}
	}
	return metav1.ConditionUnknown
}

func htpasswd(user, pw string) string {
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	Expect(err).NotTo(HaveOccurred())
	return user + ":" + string(h) + "\n"
}

func ptr[T any](v T) *T { return &v }

// registryClient returns a client of Registry ns/name (through its Service's ClusterIP,
// trusting the namespace's CA) once its API answers.
func registryClient(ns, name string) *regClient {
	GinkgoHelper()
	svc := &corev1.Service{}
	Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, svc)).To(Succeed())
	reg := newRegClient(fmt.Sprintf("%s.%s.svc:5000", name, ns), svc.Spec.ClusterIP+":5000", caPool(ns))
	waitForAPI(reg)
	return reg
}

// waitForAPI waits until the registry answers /v2/ at all (kube-proxy follows a new
// pod's endpoints within moments).
func waitForAPI(reg *regClient) {
	GinkgoHelper()
	Eventually(func() error {
		resp, err := (&http.Client{Transport: reg.transport, Timeout: 5 * time.Second}).Get("https://" + reg.host + "/v2/")
		if err == nil {
			resp.Body.Close()
		}
		return err
	}, shortWait, poll).Should(Succeed())
}

// aliceRegistry is a Registry on a 1Gi volume with TLS from the namespace's CA Issuer and
// alice (Secret users, see htpasswd) as Manager of every repository.
func aliceRegistry(ns, name string, mutate func(*v1alpha1.Registry)) *v1alpha1.Registry {
	r := &v1alpha1.Registry{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1alpha1.RegistrySpec{
			Storage: v1alpha1.RegistryStorage{Filesystem: &v1alpha1.FilesystemStorage{Size: resource.MustParse("1Gi")}},
			TLS:     &v1alpha1.TLSSpec{IssuerRef: &v1alpha1.IssuerReference{Kind: "Issuer", Name: "ca"}},
			Auth: &v1alpha1.AuthSpec{UsersSecretRef: &v1alpha1.SecretReference{Name: "users"}, Access: []v1alpha1.AccessRule{
				{Subjects: []v1alpha1.Subject{{Kind: "User", Name: "alice"}}, Repositories: []string{"**"}, Role: v1alpha1.RoleManager},
			}},
		},
	}
	if mutate != nil {
		mutate(r)
	}
	return r
}

// aliceUsers creates the users Secret aliceRegistry reads.
func aliceUsers(ns string) {
	GinkgoHelper()
	Expect(k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "users"}, StringData: map[string]string{
		"htpasswd": htpasswd("alice", "alice-pw"),
	}})).To(Succeed())
}
