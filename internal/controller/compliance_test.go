package controller_test

import (
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/dockyard-dev/dockyard/api/v1alpha1"
	"github.com/dockyard-dev/dockyard/internal/admission"
	"github.com/dockyard-dev/dockyard/internal/registryconfig"
	resources "github.com/dockyard-dev/dockyard/internal/resources/registry"
	"github.com/dockyard-dev/dockyard/internal/scan"
	"github.com/dockyard-dev/dockyard/internal/testfixture/cosign"
	trivyfix "github.com/dockyard-dev/dockyard/internal/testfixture/trivy"
)

// warnings collects the admission warnings the API server returns to a client.
type warnings struct {
	mu   sync.Mutex
	list []string
}

func (w *warnings) HandleWarningHeader(_ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.list = append(w.list, text)
}

func (w *warnings) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := w.list
	w.list = nil
	return out
}

// clientAs is an admin client that impersonates user (with full rights), collecting
// warnings into w when it is not nil.
func clientAs(user string, w *warnings) client.Client {
	GinkgoHelper()
	cfg := rest.CopyConfig(adminConfig)
	if user != "" {
		cfg.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: []string{"system:masters"}}
	}
	if w != nil {
		cfg.WarningHandler = w
	}
	c, err := client.New(cfg, client.Options{Scheme: k8sClient.Scheme()})
	Expect(err).NotTo(HaveOccurred())
	return c
}

func podWith(ns, podName, image string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: podName},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: image}}}}
}

// freshPod is podWith under a generated name, for creates retried until a policy change
// arrives (a retry never collides with an earlier attempt that was admitted).
func freshPod(ns, prefix, image string) *corev1.Pod {
	p := podWith(ns, "", image)
	p.GenerateName = prefix + "-"
	return p
}

// withOwner gives p a controlling owner, as a ReplicaSet's Pods have.
func withOwner(p *corev1.Pod) *corev1.Pod {
	p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "app-1", UID: "0a2b1c3d",
		Controller: ptrTo(true)}}
	return p
}

var _ = Describe("Compliance admission", func() {
	It("refuses Pods and templates whose image breaks the Registry's policy, with a message a person can act on", func() {
		ns := newNamespace()
		live := localRegistry(ns, "main", true)
		updateRegistry(ns, "main", func(reg *v1alpha1.Registry) {
			reg.Spec.Scanning = &v1alpha1.ScanningSpec{Policy: &v1alpha1.CompliancePolicy{Severity: "High"}}
		})
		startScanner(ns, "main", live, time.Now())
		markDeploymentAvailable(ns, "main-scanner")

		By("pushing a vulnerable and a clean image; the scanner reports on both")
		vulnImg, err := trivyfix.AlpineImage("3.20.3", []trivyfix.Package{{Name: "musl", Version: "1.2.4-r2"}}, nil)
		Expect(err).NotTo(HaveOccurred())
		cleanImg, err := trivyfix.AlpineImage("3.20.3", []trivyfix.Package{{Name: "musl", Version: "1.2.5-r0"}}, nil)
		Expect(err).NotTo(HaveOccurred())
		vulnDigest, cleanDigest := live.push("team-a/app:vulnerable", vulnImg), live.push("team-a/app:clean", cleanImg)
		pub := []byte(get(ns, "main-scanner", &corev1.ConfigMap{}).Data[resources.ScannerPublicKeyKey])
		keys, err := scan.ParsePublicKeys(pub)
		Expect(err).NotTo(HaveOccurred())
		for _, d := range []string{vulnDigest, cleanDigest} {
			ref, err := name.NewDigest(live.host + "/team-a/app@" + d)
			Expect(err).NotTo(HaveOccurred())
			Eventually(func() error {
				_, err := scan.Latest(ref, keys, live.opts("admin", "admin-pw")...)
				return err
			}, 2*time.Minute, 250*time.Millisecond).Should(Succeed(), "report of %s", d)
		}

		By("the webhook's configuration appears, called only for this Registry's images")
		host := "main." + ns + ".svc:5000"
		Eventually(func(g Gomega) {
			vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{}
			g.Expect(k8sClient.Get(ctx, key("", admission.ConfigName), vwc)).To(Succeed())
			g.Expect(vwc.Webhooks).To(HaveLen(3))
			g.Expect(*vwc.Webhooks[0].FailurePolicy).To(Equal(admissionregistrationv1.Fail))
			g.Expect(vwc.Webhooks[0].ClientConfig.CABundle).NotTo(BeEmpty())
			g.Expect(vwc.Webhooks[0].MatchConditions[2].Expression).To(ContainSubstring("'main." + ns + ".svc/'"))
			g.Expect(vwc.Webhooks[0].NamespaceSelector.MatchExpressions[0].Values).To(ContainElements("kube-system", operatorNamespace))
		}, timeout, interval).Should(Succeed())

		var w warnings
		people := clientAs("", &w)
		By("a clean image is admitted")
		Eventually(func() error {
			return people.Create(ctx, podWith(ns, "clean", host+"/team-a/app:clean"))
		}, timeout, interval).Should(Succeed())

		By("a vulnerable image is refused at apply, naming the image, its digest, the CVE and the way out")
		err = people.Create(ctx, podWith(ns, "vulnerable", host+"/team-a/app:vulnerable"))
		Expect(apierrors.IsForbidden(err)).To(BeTrue(), "%v", err)
		Expect(err.Error()).To(SatisfyAll(
			ContainSubstring("image "+host+"/team-a/app:vulnerable ("+vulnDigest+") has 1 vulnerabilities at or above HIGH"),
			ContainSubstring("CVE-2099-0001 (CRITICAL, musl 1.2.4-r2, fixed in 1.2.5-r0)"),
			ContainSubstring("add an exemption (id, reason, expires) to spec.scanning.policy.exemptions of Registry "+ns+"/main")))
		GinkgoWriter.Println("refusal:", err)

		By("so is a Deployment whose template names it, and a CronJob's")
		dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "app"}, Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "x"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "x"}},
				Spec: podWith(ns, "", host+"/team-a/app@"+vulnDigest).Spec}}}
		Expect(people.Create(ctx, dep)).To(MatchError(ContainSubstring("CVE-2099-0001")))
		cron := &batchv1.CronJob{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "nightly"}, Spec: batchv1.CronJobSpec{
			Schedule: "0 1 * * *", JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{
				Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, InitContainers: []corev1.Container{
					{Name: "init", Image: host + "/team-a/app:vulnerable"}}, Containers: []corev1.Container{{Name: "ok", Image: "busybox"}}}}}}}}
		Expect(people.Create(ctx, cron)).To(MatchError(ContainSubstring("CVE-2099-0001")))

		By("images of other registries and Pods that Kubernetes' controllers create are not checked")
		Expect(people.Create(ctx, podWith(ns, "elsewhere", "registry.example.com/team-a/app:vulnerable"))).To(Succeed())
		Expect(clientAs("system:serviceaccount:kube-system:replicaset-controller", nil).
			Create(ctx, withOwner(podWith(ns, "from-a-replicaset", host+"/team-a/app:vulnerable")))).To(Succeed())

		By("a namespace labelled dockyard.dev/compliance=ignore is not checked")
		free := newNamespace()
		nsObj := &corev1.Namespace{}
		Expect(k8sClient.Get(ctx, key("", free), nsObj)).To(Succeed())
		nsObj.Labels[admission.IgnoreLabel] = "ignore"
		Expect(k8sClient.Update(ctx, nsObj)).To(Succeed())
		Eventually(func() error {
			return people.Create(ctx, podWith(free, "vulnerable", host+"/team-a/app:vulnerable"))
		}, timeout, interval).Should(Succeed())

		By("an exemption admits the vulnerable image, with a warning that names it and its reason")
		updateRegistry(ns, "main", func(reg *v1alpha1.Registry) {
			reg.Spec.Scanning.Policy.Exemptions = []v1alpha1.VulnerabilityExemption{{ID: "CVE-2099-0001",
				Reason: "musl is not reachable in this service, ticket SEC-42", Expires: metav1.NewTime(time.Now().Add(30 * 24 * time.Hour))}}
		})
		w.take()
		Eventually(func() error {
			return people.Create(ctx, podWith(ns, "vulnerable", host+"/team-a/app:vulnerable"))
		}, timeout, interval).Should(Succeed())
		Expect(w.take()).To(ContainElement(SatisfyAll(ContainSubstring("CVE-2099-0001"), ContainSubstring("ticket SEC-42"))))

		By("an exemption for another repository does not")
		updateRegistry(ns, "main", func(reg *v1alpha1.Registry) {
			reg.Spec.Scanning.Policy.Exemptions[0].Repositories = []string{"team-b/**"}
		})
		Eventually(func() error {
			return people.Create(ctx, freshPod(ns, "vulnerable-2", host+"/team-a/app:vulnerable"))
		}, timeout, interval).Should(MatchError(ContainSubstring("CVE-2099-0001")))

		By("an update that brings no new image is not checked; one that adds a debug container is")
		admitted := get(ns, "vulnerable", &corev1.Pod{})
		admitted.Labels = map[string]string{"touched": "yes"}
		Expect(people.Update(ctx, admitted)).To(Succeed())
		admitted.Spec.EphemeralContainers = []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{
			Name: "debug", Image: "MAIN." + strings.ToUpper(ns) + ".SVC:5000/team-a/app@" + vulnDigest}}}
		Expect(people.SubResource("ephemeralcontainers").Update(ctx, admitted)).To(MatchError(ContainSubstring("CVE-2099-0001")))

		By("a ReplicationController's template is checked, and so is a controller identity's Pod without a controlling owner")
		rc := &corev1.ReplicationController{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "legacy"}, Spec: corev1.ReplicationControllerSpec{
			Selector: map[string]string{"app": "legacy"}, Template: &corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "legacy"}},
				Spec: podWith(ns, "", host+"/team-a/app:vulnerable").Spec}}}
		Expect(people.Create(ctx, rc)).To(MatchError(ContainSubstring("CVE-2099-0001")))
		Expect(clientAs("system:serviceaccount:kube-system:replicaset-controller", nil).
			Create(ctx, podWith(ns, "no-owner", host+"/team-a/app:vulnerable"))).To(MatchError(ContainSubstring("CVE-2099-0001")))
		Expect(clientAs("system:serviceaccount:kube-system:some-addon", nil).
			Create(ctx, withOwner(podWith(ns, "addon", host+"/team-a/app:vulnerable")))).To(MatchError(ContainSubstring("CVE-2099-0001")))

		By("action Warn admits it and says what Deny would refuse")
		updateRegistry(ns, "main", func(reg *v1alpha1.Registry) { reg.Spec.Scanning.Policy.Action = v1alpha1.ComplianceWarn })
		Eventually(func() error {
			return people.Create(ctx, freshPod(ns, "vulnerable-3", host+"/team-a/app:vulnerable"))
		}, timeout, interval).Should(Succeed())
		Expect(w.take()).To(ContainElement(SatisfyAll(ContainSubstring("CVE-2099-0001"), ContainSubstring("action is Warn"))))

		By("signatures required: an unsigned image is refused, one the real cosign signed is admitted")
		signer := cosign.New(GinkgoT(), live.caPEM)
		signer.Login(GinkgoT(), live.host, "admin", "admin-pw")
		Expect(signer.Sign(live.host + "/team-a/app@" + cleanDigest)).To(Succeed())
		updateRegistry(ns, "main", func(reg *v1alpha1.Registry) {
			reg.Spec.Scanning.Policy = &v1alpha1.CompliancePolicy{Severity: "High",
				Signatures: &v1alpha1.SignaturePolicy{PublicKeys: []string{signer.PublicKeyPEM(GinkgoT())}}}
		})
		unsigned := live.push("team-a/other:v1", cleanImg) // the same content, in a repository without its signature
		Expect(unsigned).To(Equal(cleanDigest))
		Eventually(func() error {
			return people.Create(ctx, freshPod(ns, "unsigned", host+"/team-a/other:v1"))
		}, timeout, interval).Should(MatchError(ContainSubstring("is not signed by any of the 1 keys the policy trusts")))
		Expect(people.Create(ctx, podWith(ns, "signed", host+"/team-a/app:clean"))).To(Succeed())

		By("a policy whose key cannot be used refuses with a message that says so")
		updateRegistry(ns, "main", func(reg *v1alpha1.Registry) {
			reg.Spec.Scanning.Policy.Signatures.PublicKeys = []string{"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"}
		})
		Eventually(func() error {
			return people.Create(ctx, freshPod(ns, "bad-key", host+"/team-a/app:clean"))
		}, timeout, interval).Should(MatchError(ContainSubstring("signatures.publicKeys")))

		By("without a policy, the configuration is gone")
		updateRegistry(ns, "main", func(reg *v1alpha1.Registry) { reg.Spec.Scanning.Policy = nil })
		Eventually(func() bool {
			return apierrors.IsNotFound(k8sClient.Get(ctx, key("", admission.ConfigName), &admissionregistrationv1.ValidatingWebhookConfiguration{}))
		}, timeout, interval).Should(BeTrue())
		Expect(people.Create(ctx, podWith(ns, "vulnerable-4", host+"/team-a/app:vulnerable"))).To(Succeed())
	})
})

var _ = Describe("Registry-side compliance (pullAction: Deny)", func() {
	It("hands the registry pods the policy and the scanner's key, and an exemption reaches them without a restart", func() {
		ns := newNamespace()
		Expect(k8sClient.Create(ctx, usersSecret(ns, "users", map[string]string{"htpasswd": htpasswdLine("alice", "pw")}))).To(Succeed())
		reg := newRegistry(ns, "gate", withUsers("users"), func(r *v1alpha1.Registry) {
			r.Spec.Scanning = &v1alpha1.ScanningSpec{Policy: &v1alpha1.CompliancePolicy{Severity: "High", PullAction: v1alpha1.PullDeny}}
		})
		Expect(k8sClient.Create(ctx, reg)).To(Succeed())
		// A Registry with a policy keeps the webhook configured: gone before the next spec.
		DeferCleanup(func() {
			Expect(client.IgnoreNotFound(k8sClient.Delete(ctx, reg))).To(Succeed())
			Eventually(func() bool {
				return apierrors.IsNotFound(k8sClient.Get(ctx, key(ns, "gate"), &v1alpha1.Registry{}))
			}, timeout, interval).Should(BeTrue())
		})
		cm := &corev1.ConfigMap{}
		Eventually(func(g Gomega) {
			g.Expect(k8sClient.Get(ctx, key(ns, reg.ConfigMapName()), cm)).To(Succeed())
			g.Expect(cm.Data).To(HaveKey(registryconfig.ComplianceFileName))
		}, timeout, interval).Should(Succeed())
		var cfg registryconfig.Config
		Expect(yaml.Unmarshal([]byte(cm.Data[registryconfig.ConfigFileName]), &cfg)).To(Succeed())
		Expect(cfg.Compliance).To(Equal(&registryconfig.Compliance{PolicyFile: registryconfig.ConfigDir + "/" + registryconfig.ComplianceFileName}))
		p, err := registryconfig.ParseCompliancePolicy([]byte(cm.Data[registryconfig.ComplianceFileName]))
		Expect(err).NotTo(HaveOccurred())
		Expect(p.Severity).To(Equal("High"))
		Expect(p.ExemptionHint).To(Equal("spec.scanning.policy.exemptions of Registry " + ns + "/gate"))
		// The key the registry trusts is the scanner's own.
		sec := get(ns, reg.ScannerSecretName(), &corev1.Secret{})
		Expect(p.ScannerKeys).To(Equal(string(sec.Data[resources.ScannerPublicKeyKey])))
		Expect(p.ScannerKeys).To(HavePrefix("-----BEGIN PUBLIC KEY-----"))
		Expect(p.ScannerKeys).NotTo(ContainSubstring("PRIVATE"))

		dep := &appsv1.Deployment{}
		Eventually(func() error { return k8sClient.Get(ctx, key(ns, "gate"), dep) }, timeout, interval).Should(Succeed())
		hash := dep.Spec.Template.Annotations[resources.AnnotationInputs]
		Expect(hash).NotTo(BeEmpty())

		// An exemption changes the policy file, not the pods.
		r := get(ns, "gate", &v1alpha1.Registry{})
		patched := r.DeepCopy()
		patched.Spec.Scanning.Policy.Exemptions = []v1alpha1.VulnerabilityExemption{{ID: "CVE-2099-0001", Reason: "SEC-1",
			Expires: metav1.NewTime(time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC))}}
		Expect(k8sClient.Patch(ctx, patched, client.MergeFrom(r))).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(k8sClient.Get(ctx, key(ns, reg.ConfigMapName()), cm)).To(Succeed())
			p, err := registryconfig.ParseCompliancePolicy([]byte(cm.Data[registryconfig.ComplianceFileName]))
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(p.Exemptions).To(HaveLen(1))
			g.Expect(p.Exemptions[0].Expires).To(BeTemporally("==", time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC)))
		}, timeout, interval).Should(Succeed())
		Consistently(func() string {
			Expect(k8sClient.Get(ctx, key(ns, "gate"), dep)).To(Succeed())
			return dep.Spec.Template.Annotations[resources.AnnotationInputs]
		}, "2s", interval).Should(Equal(hash))

		// pullAction: Allow takes the file and the config section away.
		r = get(ns, "gate", &v1alpha1.Registry{})
		patched = r.DeepCopy()
		patched.Spec.Scanning.Policy.PullAction = v1alpha1.PullAllow
		Expect(k8sClient.Patch(ctx, patched, client.MergeFrom(r))).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(k8sClient.Get(ctx, key(ns, reg.ConfigMapName()), cm)).To(Succeed())
			g.Expect(cm.Data).NotTo(HaveKey(registryconfig.ComplianceFileName))
			g.Expect(cm.Data[registryconfig.ConfigFileName]).NotTo(ContainSubstring("compliance"))
		}, timeout, interval).Should(Succeed())
	})
})
