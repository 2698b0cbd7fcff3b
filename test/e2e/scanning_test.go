//go:build e2e

package e2e

import (
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dockyard-dev/dockyard/api/v1alpha1"
	resources "github.com/dockyard-dev/dockyard/internal/resources/registry"
	"github.com/dockyard-dev/dockyard/internal/scan"
	trivyfix "github.com/dockyard-dev/dockyard/internal/testfixture/trivy"
)

// Scanning on a real node: the operator runs the scanner in a Trivy image (the project's
// own, trivy:e2e) with the dockyard binary copied in; its vulnerability database is
// mirrored into the Registry itself, as an air-gapped site does; a pushed image gets a
// signed report as a referrer, and the Registry's status counts it.
var _ = Describe("vulnerability scanning on a real cluster", Ordered, Label("scanning"), func() {
	var ns string

	BeforeAll(func() {
		ns = namespaceWithCA("scan")
		aliceUsers(ns)
	})

	It("scans a pushed image with a database mirrored into the Registry and stores the report with it", func() {
		Expect(k8s.Create(ctx, aliceRegistry(ns, "main", func(r *v1alpha1.Registry) {
			r.Spec.Scanning = &v1alpha1.ScanningSpec{Image: "trivy:e2e",
				Database: &v1alpha1.ScanDatabaseSpec{Repository: "security/trivy-db:2"}}
		}))).To(Succeed())
		run("kubectl", "-n", ns, "wait", "--for=condition=Ready", "registry/main", "--timeout=300s")
		reg := registryClient(ns, "main")

		By("without a database the scanner says so")
		expectScannerReady(ns, "main", metav1.ConditionFalse, v1alpha1.ReasonDatabaseMissing)

		By("mirroring the (fixture) vulnerability database into the Registry")
		mirrorFixtureDB(reg)
		// The scanner retries every 30 s until it has a database, then turns ready.
		expectScannerReady(ns, "main", metav1.ConditionTrue, v1alpha1.ReasonScannerAvailable)

		By("pushing an image with a vulnerable musl: its report arrives as a signed referrer")
		img, err := trivyfix.AlpineImage("3.20.3", []trivyfix.Package{{Name: "musl", Version: "1.2.4-r2"}}, nil)
		Expect(err).NotTo(HaveOccurred())
		Expect(remote.Write(reg.ref("team-a/app:v1"), img, reg.opts("alice", "alice-pw")...)).To(Succeed())
		cm := &corev1.ConfigMap{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "main-scanner"}, cm)).To(Succeed())
		keys, err := scan.ParsePublicKeys([]byte(cm.Data[resources.ScannerPublicKeyKey]))
		Expect(err).NotTo(HaveOccurred())
		subject, err := name.NewDigest(reg.host + "/team-a/app@" + must(img.Digest()).String())
		Expect(err).NotTo(HaveOccurred())
		var stored *scan.Stored
		Eventually(func() error {
			stored, err = scan.Latest(subject, keys, reg.opts("alice", "alice-pw")...)
			return err
		}, longWait, poll).Should(Succeed())
		Expect(stored.Report.Vulnerabilities).To(ContainElement(HaveField("ID", "CVE-2099-0001")))

		By("status.scanning counts it (refreshed every minute)")
		Eventually(func(g Gomega) {
			r := &v1alpha1.Registry{}
			g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "main"}, r)).To(Succeed())
			g.Expect(r.Status.Scanning).NotTo(BeNil())
			g.Expect(r.Status.Scanning.Scanned).To(BeNumerically(">=", 1))
			g.Expect(r.Status.Scanning.Vulnerable).To(HaveKey("CRITICAL"))
		}, 3*time.Minute, poll).Should(Succeed())

		By("a scan request by annotation reaches the scanner pod through its Service: the image is scanned again")
		before, err := scan.Reports(subject, keys, reg.opts("alice", "alice-pw")...)
		Expect(err).NotTo(HaveOccurred())
		request := "team-a/app:v1 #e2e"
		r := &v1alpha1.Registry{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "main"}, r)).To(Succeed())
		patch := client.MergeFrom(r.DeepCopy())
		r.Annotations = map[string]string{v1alpha1.ScanRequestAnnotation: request}
		Expect(k8s.Patch(ctx, r, patch)).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "main"}, r)).To(Succeed())
			g.Expect(r.Status.Scanning.LastHandledScanRequest).To(Equal(request))
		}, longWait, poll).Should(Succeed())
		// The scanner's identity may not delete: the earlier report stays beside the new one.
		Eventually(func() (int, error) {
			list, err := scan.Reports(subject, keys, reg.opts("alice", "alice-pw")...)
			return len(list), err
		}, longWait, poll).Should(BeNumerically(">", len(before)))
	})
})

// mirrorFixtureDB writes the fixture vulnerability database, built now, into the Registry
// as Trivy's database artifact security/trivy-db:2 (as an air-gapped site mirrors it).
func mirrorFixtureDB(reg *regClient) {
	GinkgoHelper()
	dir := GinkgoT().TempDir()
	Expect(trivyfix.WriteDB(dir, time.Now(), trivyfix.Fixtures)).To(Succeed())
	db, err := trivyfix.DBArtifact(dir)
	Expect(err).NotTo(HaveOccurred())
	Expect(remote.Write(reg.ref("security/trivy-db:2"), db, reg.opts("alice", "alice-pw")...)).To(Succeed())
}

// expectScannerReady waits for the Registry's ScannerReady condition to have status and reason.
func expectScannerReady(ns, name string, status metav1.ConditionStatus, reason string) {
	GinkgoHelper()
	Eventually(func(g Gomega) {
		r := &v1alpha1.Registry{}
		g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, r)).To(Succeed())
		c := conditionOf(r, v1alpha1.ConditionScannerReady)
		g.Expect(c).NotTo(BeNil())
		g.Expect(c.Status).To(Equal(status), "%s: %s", c.Reason, c.Message)
		g.Expect(c.Reason).To(Equal(reason), c.Message)
	}, longWait, poll).Should(Succeed())
}

func conditionOf(r *v1alpha1.Registry, t string) *metav1.Condition {
	for i := range r.Status.Conditions {
		if r.Status.Conditions[i].Type == t {
			return &r.Status.Conditions[i]
		}
	}
	return nil
}
