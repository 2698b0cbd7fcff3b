//go:build e2e

package e2e

import (
	"archive/tar"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	ggcrv1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/dockyard-dev/dockyard/api/v1alpha1"
	"github.com/dockyard-dev/dockyard/internal/admission"
	resources "github.com/dockyard-dev/dockyard/internal/resources/registry"
	"github.com/dockyard-dev/dockyard/internal/scan"
	"github.com/dockyard-dev/dockyard/internal/testfixture/cosign"
	trivyfix "github.com/dockyard-dev/dockyard/internal/testfixture/trivy"
)

// The compliance gate on a real node: `kubectl apply` of a Pod whose image the Registry's
// policy refuses fails with the CVE in the message, and the registry refuses the image to
// a Viewer pulling from outside the cluster (pullAction: Deny); an exemption lets it run,
// and reaches the registry pods without restarting them; with signatures required, an
// unsigned image is refused and one the real cosign signed runs.
var _ = Describe("compliance gate on a real cluster", Ordered, Label("scanning", "compliance"), func() {
	var ns, host string
	var reg *regClient

	BeforeAll(func() {
		ns = namespaceWithCA("gate")
		// alice is a Manager, bob a Viewer (who pulls from outside the cluster).
		Expect(k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "users"}, StringData: map[string]string{
			"htpasswd": htpasswd("alice", "alice-pw") + htpasswd("bob", "bob-pw"),
		}})).To(Succeed())
		Expect(k8s.Create(ctx, aliceRegistry(ns, "main", func(r *v1alpha1.Registry) {
			r.Spec.Auth.Access = append(r.Spec.Auth.Access, v1alpha1.AccessRule{
				Subjects: []v1alpha1.Subject{{Kind: "User", Name: "bob"}}, Repositories: []string{"**"}, Role: v1alpha1.RoleViewer})
			r.Spec.Scanning = &v1alpha1.ScanningSpec{Image: "trivy:e2e",
				Database: &v1alpha1.ScanDatabaseSpec{Repository: "security/trivy-db:2"},
				Policy:   &v1alpha1.CompliancePolicy{Severity: "High", PullAction: v1alpha1.PullDeny}}
		}))).To(Succeed())
		run("kubectl", "-n", ns, "wait", "--for=condition=Ready", "registry/main", "--timeout=300s")
		reg = registryClient(ns, "main")
		mirrorFixtureDB(reg)
		expectScannerReady(ns, "main", metav1.ConditionTrue, v1alpha1.ReasonScannerAvailable)

		// The node pulls by the Service's full name, trusting the namespace's CA, as alice.
		host = fmt.Sprintf("main.%s.svc.cluster.local:5000", ns)
		trustCA(os.Getenv("E2E_CONTAINERD_CERTS_DIR"), host, ns)
		auth := base64.StdEncoding.EncodeToString([]byte("alice:alice-pw"))
		cfg, _ := json.Marshal(map[string]any{"auths": map[string]any{host: map[string]string{"auth": auth}}})
		Expect(k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "pull"},
			Type: corev1.SecretTypeDockerConfigJson, Data: map[string][]byte{corev1.DockerConfigJsonKey: cfg}})).To(Succeed())
	})

	It("refuses a vulnerable image at kubectl apply, admits a clean one, and an exempted one with a warning", func() {
		clean, vulnerable := runnableAlpine("1.2.5-r0"), runnableAlpine("1.2.4-r2")
		for tag, img := range map[string]ggcrv1.Image{"clean": clean, "vulnerable": vulnerable} {
			Expect(remote.Write(reg.ref("team-a/web:"+tag), img, reg.opts("alice", "alice-pw")...)).To(Succeed())
			waitForReport(ns, reg, "team-a/web@"+must(img.Digest()).String())
		}
		Eventually(func() error {
			return k8s.Get(ctx, client.ObjectKey{Name: admission.ConfigName}, &admissionregistrationv1.ValidatingWebhookConfiguration{})
		}, longWait, poll).Should(Succeed())

		By("a clean image runs")
		Eventually(func() error { _, err := kubectlApply(gatePod(ns, "clean", host+"/team-a/web:clean")); return err },
			shortWait, poll).Should(Succeed())
		expectPodSucceeded(ns, "clean")

		By("a vulnerable image is refused with the CVE, the image and the way out in the message")
		out, err := kubectlApply(gatePod(ns, "vulnerable", host+"/team-a/web:vulnerable"))
		Expect(err).To(HaveOccurred(), out)
		Expect(out).To(SatisfyAll(ContainSubstring("denied the request"), ContainSubstring(host+"/team-a/web:vulnerable"),
			ContainSubstring("CVE-2099-0001 (CRITICAL, musl 1.2.4-r2, fixed in 1.2.5-r0)"),
			ContainSubstring("spec.scanning.policy.exemptions of Registry "+ns+"/main")))
		GinkgoWriter.Printf("kubectl apply said:\n%s\n", out)

		By("the registry itself refuses the vulnerable image to a Viewer outside the cluster (pullAction: Deny), not to a Manager")
		_, err = remote.Get(reg.ref("team-a/web:vulnerable"), reg.opts("bob", "bob-pw")...)
		Expect(err).To(HaveOccurred())
		Expect(err.Error()).To(SatisfyAll(ContainSubstring("DENIED"), ContainSubstring("CVE-2099-0001 (CRITICAL, musl 1.2.4-r2, fixed in 1.2.5-r0)")))
		GinkgoWriter.Printf("a Viewer's pull got: %v\n", err)
		_, err = remote.Get(reg.ref("team-a/web:clean"), reg.opts("bob", "bob-pw")...)
		Expect(err).NotTo(HaveOccurred())
		_, err = remote.Get(reg.ref("team-a/web:vulnerable"), reg.opts("alice", "alice-pw")...)
		Expect(err).NotTo(HaveOccurred())
		podsBefore := registryPodNames(ns)
		Expect(podsBefore).NotTo(BeEmpty())

		By("after an exemption is added, it runs, and kubectl shows a warning")
		r := &v1alpha1.Registry{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "main"}, r)).To(Succeed())
		r.Spec.Scanning.Policy.Exemptions = []v1alpha1.VulnerabilityExemption{{ID: "CVE-2099-0001",
			Reason: "not reachable here, SEC-42", Expires: metav1.NewTime(time.Now().Add(7 * 24 * time.Hour))}}
		Expect(k8s.Update(ctx, r)).To(Succeed())
		Eventually(func() error {
			out, err = kubectlApply(gatePod(ns, "vulnerable", host+"/team-a/web:vulnerable"))
			return err
		}, shortWait, poll).Should(Succeed(), func() string { return out })
		Expect(out).To(ContainSubstring("Warning: image " + host + "/team-a/web:vulnerable: CVE-2099-0001"))
		expectPodSucceeded(ns, "vulnerable")

		By("the exemption reaches the registry pods without a restart: the Viewer may pull the image")
		Eventually(func() error {
			_, err := remote.Get(reg.ref("team-a/web:vulnerable"), reg.opts("bob", "bob-pw")...)
			return err
		}, longWait, poll).Should(Succeed())
		Expect(registryPodNames(ns)).To(Equal(podsBefore))
	})

	It("with signatures required, refuses an unsigned image and runs one the real cosign signed", func() {
		signer := cosign.New(GinkgoT(), caPEM(ns))
		// cosign runs outside the cluster's DNS: it reaches the Registry by its ClusterIP.
		svc := &corev1.Service{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "main"}, svc)).To(Succeed())
		direct := svc.Spec.ClusterIP + ":5000"
		signer.Login(GinkgoT(), direct, "alice", "alice-pw")
		signed := runnableAlpine("1.2.6-r0")
		Expect(remote.Write(reg.ref("team-a/signed:v1"), signed, reg.opts("alice", "alice-pw")...)).To(Succeed())
		Expect(remote.Write(reg.ref("team-a/unsigned:v1"), runnableAlpine("1.2.7-r0"), reg.opts("alice", "alice-pw")...)).To(Succeed())
		Expect(signer.Sign(direct+"/team-a/signed@"+must(signed.Digest()).String(), "--allow-insecure-registry")).To(Succeed())

		r := &v1alpha1.Registry{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "main"}, r)).To(Succeed())
		r.Spec.Scanning.Policy.Signatures = &v1alpha1.SignaturePolicy{PublicKeys: []string{signer.PublicKeyPEM(GinkgoT())}}
		Expect(k8s.Update(ctx, r)).To(Succeed())

		var out string
		Eventually(func() string {
			out, _ = kubectlApply(gatePod(ns, "unsigned", host+"/team-a/unsigned:v1"))
			return out
		}, shortWait, poll).Should(ContainSubstring("is not signed by any of the 1 keys the policy trusts"))
		GinkgoWriter.Printf("kubectl apply said:\n%s\n", out)
		out, err := kubectlApply(gatePod(ns, "signed", host+"/team-a/signed:v1"))
		Expect(err).NotTo(HaveOccurred(), out)
		expectPodSucceeded(ns, "signed")
	})
})

// runnableAlpine is the fixture Alpine image with musl at version, plus the node's static
// busybox, so a Pod of it runs (`busybox true`) as a non-root user.
func runnableAlpine(musl string) ggcrv1.Image {
	GinkgoHelper()
	base, err := trivyfix.AlpineImage("3.20.3", []trivyfix.Package{{Name: "musl", Version: musl}}, nil)
	Expect(err).NotTo(HaveOccurred())
	bb, err := os.ReadFile("/bin/busybox")
	Expect(err).NotTo(HaveOccurred(), "the static busybox (Debian's busybox-static; make tools installs it)")
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	Expect(tw.WriteHeader(&tar.Header{Name: "bin/busybox", Mode: 0o755, Size: int64(len(bb)), ModTime: time.Unix(0, 0)})).To(Succeed())
	_, err = tw.Write(bb)
	Expect(err).NotTo(HaveOccurred())
	Expect(tw.Close()).To(Succeed())
	layer, err := tarball.LayerFromReader(bytes.NewReader(buf.Bytes()))
	Expect(err).NotTo(HaveOccurred())
	img, err := mutate.AppendLayers(base, layer)
	Expect(err).NotTo(HaveOccurred())
	cfg, err := img.ConfigFile()
	Expect(err).NotTo(HaveOccurred())
	cfg = cfg.DeepCopy()
	cfg.Config.Entrypoint = []string{"/bin/busybox", "true"}
	cfg.Config.User = "65532"
	img, err = mutate.ConfigFile(img, cfg)
	Expect(err).NotTo(HaveOccurred())
	return img
}

// waitForReport waits until the scanner stored a report of ref (repository@digest).
func waitForReport(ns string, reg *regClient, ref string) {
	GinkgoHelper()
	cm := &corev1.ConfigMap{}
	Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "main-scanner"}, cm)).To(Succeed())
	keys, err := scan.ParsePublicKeys([]byte(cm.Data[resources.ScannerPublicKeyKey]))
	Expect(err).NotTo(HaveOccurred())
	d, err := name.NewDigest(reg.host + "/" + ref)
	Expect(err).NotTo(HaveOccurred())
	Eventually(func() error {
		_, err := scan.Latest(d, keys, reg.opts("alice", "alice-pw")...)
		return err
	}, longWait, poll).Should(Succeed(), "report of %s", ref)
}

// gatePod is a restricted Pod running image once, pulling with the namespace's Secret.
func gatePod(ns, podName, image string) *corev1.Pod {
	return &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: podName},
		Spec: corev1.PodSpec{
			RestartPolicy:    corev1.RestartPolicyNever,
			ImagePullSecrets: []corev1.LocalObjectReference{{Name: "pull"}},
			SecurityContext: &corev1.PodSecurityContext{RunAsNonRoot: ptr(true), RunAsUser: ptr(int64(65532)),
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
			Containers: []corev1.Container{{Name: "app", Image: image, ImagePullPolicy: corev1.PullAlways,
				SecurityContext: &corev1.SecurityContext{AllowPrivilegeEscalation: ptr(false),
					Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}}}},
		},
	}
}

// kubectlApply applies obj as a person would and returns what kubectl printed.
func kubectlApply(obj client.Object) (string, error) {
	y, err := sigsyaml.Marshal(obj)
	if err != nil {
		return "", err
	}
	c := exec.Command("kubectl", "apply", "-f", "-")
	c.Stdin = bytes.NewReader(y)
	out, err := c.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

func expectPodSucceeded(ns, podName string) {
	GinkgoHelper()
	Eventually(func(g Gomega) {
		p := &corev1.Pod{}
		g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: podName}, p)).To(Succeed())
		g.Expect(p.Status.Phase).To(Equal(corev1.PodSucceeded), "pod status: %+v", p.Status.ContainerStatuses)
	}, longWait, poll).Should(Succeed())
}

// caPEM is the namespace's CA certificate (the Registry's issuer).
func caPEM(ns string) []byte {
	GinkgoHelper()
	s := &corev1.Secret{}
	Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "ca"}, s)).To(Succeed())
	return s.Data["tls.crt"]
}

// registryPodNames are the names of the registry pods of Registry main in ns.
func registryPodNames(ns string) []string {
	GinkgoHelper()
	pods := &corev1.PodList{}
	Expect(k8s.List(ctx, pods, client.InNamespace(ns), client.MatchingLabels(map[string]string{
		resources.LabelInstance: "main", resources.LabelComponent: resources.ComponentServer}))).To(Succeed())
	var names []string
	for _, p := range pods.Items {
		names = append(names, p.Name)
	}
	slices.Sort(names)
	return names
}
