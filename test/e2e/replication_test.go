//go:build e2e

package e2e

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dockyard-dev/dockyard/api/v1alpha1"
)

// Two Registries in two namespaces: a push to the first appears in the second on push,
// the rule shows zero lag, and a pod runs the image from the second.
var _ = Describe("a ReplicationRule on a real cluster", Ordered, Label("replication"), func() {
	var (
		srcNS, dstNS string
		src, dst     *regClient
	)

	registry := func(ns, name string, mutate func(*v1alpha1.RegistrySpec), robots ...v1alpha1.RobotAccount) *regClient {
		GinkgoHelper()
		Expect(k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "users"}, StringData: map[string]string{
			"htpasswd": htpasswd("alice", "alice-pw"),
		}})).To(Succeed())
		spec := v1alpha1.RegistrySpec{
			Storage: v1alpha1.RegistryStorage{Filesystem: &v1alpha1.FilesystemStorage{Size: resource.MustParse("1Gi")}},
			TLS:     &v1alpha1.TLSSpec{IssuerRef: &v1alpha1.IssuerReference{Kind: "Issuer", Name: "ca"}},
			Auth: &v1alpha1.AuthSpec{UsersSecretRef: &v1alpha1.SecretReference{Name: "users"}, Access: []v1alpha1.AccessRule{
				{Subjects: []v1alpha1.Subject{{Kind: "User", Name: "alice"}}, Repositories: []string{"**"}, Role: v1alpha1.RoleManager},
			}, Robots: robots},
		}
		if mutate != nil {
			mutate(&spec)
		}
		Expect(k8s.Create(ctx, &v1alpha1.Registry{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: spec})).To(Succeed())
		run("kubectl", "-n", ns, "wait", "--for=condition=Ready", "registry/"+name, "--timeout=300s")
		svc := &corev1.Service{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, svc)).To(Succeed())
		c := newRegClient(fmt.Sprintf("%s.%s.svc:5000", name, ns), svc.Spec.ClusterIP+":5000", caPool(ns))
		waitForAPI(c)
		return c
	}

	BeforeAll(func() {
		srcNS, dstNS = namespaceWithCA("repl-src"), namespaceWithCA("repl-dst")
		src = registry(srcNS, "ci", nil)
		// This cluster runs no Prometheus Operator: the Registry says so instead of failing.
		ci := &v1alpha1.Registry{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: srcNS, Name: "ci"}, ci)).To(Succeed())
		mon := meta.FindStatusCondition(ci.Status.Conditions, v1alpha1.ConditionMonitoringReady)
		Expect(mon).NotTo(BeNil())
		Expect(mon.Status).To(Equal(metav1.ConditionFalse))
		Expect(mon.Reason).To(Equal(v1alpha1.ReasonPrometheusOperatorMissing), mon.Message)
		dst = registry(dstNS, "prod", nil,
			v1alpha1.RobotAccount{Name: "replicator", Repositories: []string{"mirror/**"}, Role: v1alpha1.RoleManager},
			v1alpha1.RobotAccount{Name: "puller", Repositories: []string{"mirror/**"}, Role: v1alpha1.RoleViewer})

		By("giving the source's namespace the destination's robot credentials and CA, as a person would")
		robot := &corev1.Secret{}
		Eventually(func() error {
			return k8s.Get(ctx, client.ObjectKey{Namespace: dstNS, Name: "prod-robot-replicator"}, robot)
		}, shortWait, poll).Should(Succeed())
		Expect(k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: srcNS, Name: "prod-push"}, Data: map[string][]byte{
			"username": robot.Data["username"], "password": robot.Data["password"],
		}})).To(Succeed())
		ca := &corev1.Secret{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: dstNS, Name: "ca"}, ca)).To(Succeed())
		Expect(k8s.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: srcNS, Name: "prod-ca"},
			Data: map[string]string{"ca.crt": string(ca.Data["tls.crt"])}})).To(Succeed())
	})

	It("copies a push to the other Registry within seconds, reports zero lag, and the copy runs in a pod", func() {
		Expect(k8s.Create(ctx, &v1alpha1.ReplicationRule{
			ObjectMeta: metav1.ObjectMeta{Namespace: srcNS, Name: "to-prod"},
			Spec: v1alpha1.ReplicationRuleSpec{
				RegistryRef: v1alpha1.LocalRegistryReference{Name: "ci"},
				Direction:   v1alpha1.ReplicationPush,
				Remote: v1alpha1.ReplicationRemote{URL: "https://" + dst.host,
					CredentialsSecretRef: &v1alpha1.SecretReference{Name: "prod-push"},
					CABundle:             &v1alpha1.CABundleSource{ConfigMapKeyRef: &v1alpha1.ConfigMapKeyReference{Name: "prod-ca", Key: "ca.crt"}}},
				Filters:     v1alpha1.ReplicationFilters{Repositories: []string{"team-a/**"}},
				Destination: &v1alpha1.ReplicationDestination{Prefix: "mirror"},
				OnPush:      true,
			},
		})).To(Succeed())
		run("kubectl", "-n", srcNS, "wait", "--for=condition=Ready", "replicationrule/to-prod", "--timeout=120s")

		By("pushing a runnable image to the source")
		base, err := tarball.ImageFromPath(filepath.Join(repoRoot, "bin", "images", "dockyard.tar"), nil)
		Expect(err).NotTo(HaveOccurred())
		cfg, err := base.ConfigFile()
		Expect(err).NotTo(HaveOccurred())
		cfg = cfg.DeepCopy()
		cfg.Config.Labels = map[string]string{"dev.dockyard.e2e": srcNS}
		img, err := mutate.ConfigFile(base, cfg)
		Expect(err).NotTo(HaveOccurred())
		want, err := img.Digest()
		Expect(err).NotTo(HaveOccurred())
		Expect(remote.Write(src.ref("team-a/app:v1"), img, src.opts("alice", "alice-pw")...)).To(Succeed())
		pushed := time.Now()

		Eventually(func() (string, error) {
			d, err := remote.Head(dst.ref("mirror/team-a/app:v1"), dst.opts("alice", "alice-pw")...)
			if err != nil {
				return "", err
			}
			return d.Digest.String(), nil
		}, 30*time.Second, 100*time.Millisecond).Should(Equal(want.String()))
		GinkgoWriter.Printf("push to copy at the other Registry: %s\n", time.Since(pushed).Round(10*time.Millisecond))

		rule := &v1alpha1.ReplicationRule{}
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: srcNS, Name: "to-prod"}, rule)).To(Succeed())
			g.Expect(rule.Status.LastRun).NotTo(BeNil())
			g.Expect(rule.Status.LastRun.Trigger).To(Equal(v1alpha1.ReplicationTriggerPush))
			g.Expect(rule.Status.LastRun.ArtifactsCopied).To(Equal(int64(1)))
			c := meta.FindStatusCondition(rule.Status.Conditions, v1alpha1.ConditionReady)
			g.Expect(c).NotTo(BeNil())
			g.Expect(c.Reason).To(Equal(v1alpha1.ReasonSynced), c.Message)
			g.Expect(rule.Status.Lag).NotTo(BeNil())
			g.Expect(rule.Status.Lag.Duration).To(BeZero())
		}, shortWait, poll).Should(Succeed())
		printed := run("kubectl", "-n", srcNS, "get", "replicationrule", "to-prod")
		Expect(printed).To(ContainSubstring("Push"))
		Expect(printed).To(ContainSubstring("0s"))

		By("a pod in the destination's namespace runs the copy")
		if certsDir := os.Getenv("E2E_CONTAINERD_CERTS_DIR"); certsDir != "" {
			trustCA(certsDir, dst.host, dstNS)
			podSC, sc := restricted()
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: dstNS, Name: "replicated"}, Spec: corev1.PodSpec{
				RestartPolicy:    corev1.RestartPolicyNever,
				ImagePullSecrets: []corev1.LocalObjectReference{{Name: "prod-robot-puller"}},
				SecurityContext:  podSC,
				Containers: []corev1.Container{{Name: "c", Image: dst.host + "/mirror/team-a/app@" + want.String(),
					ImagePullPolicy: corev1.PullAlways, Args: []string{"version"}, SecurityContext: sc}},
			}}
			Expect(k8s.Create(ctx, pod)).To(Succeed())
			Eventually(func(g Gomega) {
				got := &corev1.Pod{}
				g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(pod), got)).To(Succeed())
				g.Expect(got.Status.Phase).To(Equal(corev1.PodSucceeded), "pod status: %+v", got.Status.ContainerStatuses)
			}, longWait, poll).Should(Succeed())
		} else {
			_, err := remote.Image(dst.ref("mirror/team-a/app:v1"), dst.opts("alice", "alice-pw")...)
			Expect(err).NotTo(HaveOccurred())
		}
	})

	It("serves another Registry's images as a pull-through cache, also when that Registry is gone", func() {
		cacheNS := namespaceWithCA("repl-cache")
		ca := &corev1.Secret{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: srcNS, Name: "ca"}, ca)).To(Succeed())
		Expect(k8s.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: cacheNS, Name: "ci-ca"},
			Data: map[string]string{"ca.crt": string(ca.Data["tls.crt"])}})).To(Succeed())
		Expect(k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: cacheNS, Name: "ci-pull"},
			StringData: map[string]string{"username": "alice", "password": "alice-pw"}})).To(Succeed())
		cache := registry(cacheNS, "cache", func(s *v1alpha1.RegistrySpec) {
			s.PullThroughCache = &v1alpha1.PullThroughCacheSpec{Upstreams: []v1alpha1.CacheUpstream{{
				Prefix: "ci", URL: "https://" + src.host, TagTTL: &metav1.Duration{Duration: time.Second}, // the tag is asked for again: stale-if-error
				CredentialsSecretRef: &v1alpha1.SecretReference{Name: "ci-pull"},
				CABundle:             &v1alpha1.CABundleSource{ConfigMapKeyRef: &v1alpha1.ConfigMapKeyReference{Name: "ci-ca", Key: "ca.crt"}},
			}}}
		})
		want, err := remote.Head(src.ref("team-a/app:v1"), src.opts("alice", "alice-pw")...)
		Expect(err).NotTo(HaveOccurred())
		got, err := remote.Image(cache.ref("ci/team-a/app:v1"), cache.opts("alice", "alice-pw")...)
		Expect(err).NotTo(HaveOccurred())
		d, err := got.Digest()
		Expect(err).NotTo(HaveOccurred())
		Expect(d).To(Equal(want.Digest), "the cache serves the upstream's digest")

		By("scaling the upstream Registry to zero: the cached image is still served")
		run("kubectl", "-n", srcNS, "patch", "registry", "ci", "--type=merge", "-p", `{"spec":{"replicas":0}}`)
		Eventually(func() error {
			_, err := remote.Head(src.ref("team-a/app:v1"), src.opts("alice", "alice-pw")...)
			return err
		}, longWait, poll).ShouldNot(Succeed())
		_, err = remote.Image(cache.ref("ci/team-a/app:v1"), cache.opts("alice", "alice-pw")...)
		Expect(err).NotTo(HaveOccurred(), "a cached image with its upstream gone")
		_, err = remote.Image(cache.ref("ci/team-a/never:v1"), cache.opts("alice", "alice-pw")...)
		Expect(statusCode(err)).To(Equal(http.StatusServiceUnavailable), "an uncached image with the upstream gone: %v", err)
	})
})
