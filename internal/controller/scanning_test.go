package controller_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dockyard-dev/dockyard/api/v1alpha1"
	"github.com/dockyard-dev/dockyard/internal/registryconfig"
	resources "github.com/dockyard-dev/dockyard/internal/resources/registry"
	"github.com/dockyard-dev/dockyard/internal/scan"
	trivyfix "github.com/dockyard-dev/dockyard/internal/testfixture/trivy"
)

var scannerAddresses sync.Map

// scanRequests counts, per Registry, the scan requests its scanner (startScanner) received.
var scanRequests sync.Map

func scanRequestsOf(ns, regName string) int64 {
	if v, ok := scanRequests.Load(ns + "/" + regName); ok {
		return v.(*atomic.Int64).Load()
	}
	return 0
}

// scannerAddress is where the suite's manager reaches a Registry's scanner: the one a
// test started, or nothing.
func scannerAddress(reg *v1alpha1.Registry) string {
	if v, ok := scannerAddresses.Load(reg.Namespace + "/" + reg.Name); ok {
		return v.(string)
	}
	return "127.0.0.1:1"
}

// startScanner runs the scanner workload's service as the Deployment would, from what
// the operator wrote: its config's settings, the signing key and job token of the
// scanner Secret, the registry credential of the credentials Secret (as files, re-read at
// each use), and the real trivy with the fixture database built at dbUpdated.
func startScanner(ns, regName string, live *liveRegistry, dbUpdated time.Time) *scan.Service {
	GinkgoHelper()
	reg := get(ns, regName, &v1alpha1.Registry{})
	dir := GinkgoT().TempDir()
	secret := get(ns, reg.ScannerSecretName(), &corev1.Secret{})
	creds := get(ns, reg.ScannerCredentialsSecretName(), &corev1.Secret{})
	credDir := filepath.Join(dir, "credentials")
	Expect(os.MkdirAll(credDir, 0o700)).To(Succeed())
	for k, v := range creds.Data {
		Expect(os.WriteFile(filepath.Join(credDir, k), v, 0o600)).To(Succeed())
	}
	tokenFile := filepath.Join(dir, "token")
	Expect(os.WriteFile(tokenFile, secret.Data[resources.ScannerTokenKey], 0o600)).To(Succeed())
	key, err := scan.ParseSigningKey(secret.Data[resources.ScannerSigningKeyKey])
	Expect(err).NotTo(HaveOccurred())
	caFile := filepath.Join(dir, "ca.crt")
	Expect(os.WriteFile(caFile, live.caPEM, 0o600)).To(Succeed())
	cache := filepath.Join(dir, "cache")
	Expect(trivyfix.WriteDB(cache, dbUpdated, trivyfix.Fixtures)).To(Succeed())

	cred := &scan.Credentials{Dir: credDir}
	trivy := scan.Trivy{Binary: trivyfix.Binary(GinkgoT()), CacheDir: cache, Env: []string{"SSL_CERT_FILE=" + caFile, "HOME=" + dir},
		Timeout: 2 * time.Minute}
	svc := &scan.Service{Trivy: trivy, TokenFile: tokenFile,
		Queue: &scan.Queue{Registry: live.host, Scanner: trivy, Pull: cred, Key: key,
			Remote: []remote.Option{remote.WithTransport(&http.Transport{TLSClientConfig: &tls.Config{RootCAs: live.pool}}),
				remote.WithAuth(cred.Authenticator())}}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	// Counts the scan requests the operator sends (each value once).
	requests := &atomic.Int64{}
	scanRequests.Store(ns+"/"+regName, requests)
	handler := svc.Handler()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == scan.RequestPath {
			requests.Add(1)
		}
		handler.ServeHTTP(w, r)
	}), ReadHeaderTimeout: 5 * time.Second}
	sctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = srv.Serve(ln) })
	wg.Go(func() { svc.Run(sctx) })
	DeferCleanup(func() {
		stop()
		_ = srv.Close()
		wg.Wait()
	})
	scannerAddresses.Store(ns+"/"+regName, ln.Addr().String())
	return svc
}

var _ = Describe("Registry scanning", func() {
	var ns string
	BeforeEach(func() { ns = newNamespace() })

	It("deploys a scanner with its own identity, hands it every push, and reports what it found", func() {
		live := localRegistry(ns, "main", true)
		updateRegistry(ns, "main", func(reg *v1alpha1.Registry) {
			reg.Spec.Scanning = &v1alpha1.ScanningSpec{Database: &v1alpha1.ScanDatabaseSpec{Repository: "security/trivy-db:2"}}
		})

		By("the scanner's children: a restricted pod in the Trivy image, its config, Service and Secrets")
		dep := get(ns, "main-scanner", &appsv1.Deployment{})
		pod := dep.Spec.Template.Spec
		Expect(pod.Containers).To(HaveLen(1))
		Expect(pod.Containers[0].Image).To(Equal(v1alpha1.DefaultScannerImage))
		Expect(pod.Containers[0].Command).To(Equal([]string{"/opt/dockyard/dockyard"}))
		Expect(pod.InitContainers).To(HaveLen(1))
		Expect(pod.InitContainers[0].Image).To(Equal(testImage))
		Expect(pod.InitContainers[0].Args).To(Equal([]string{"registry", "copy-binary", "/opt/dockyard/dockyard"}))
		Expect(*pod.AutomountServiceAccountToken).To(BeFalse())
		Expect(pod.ServiceAccountName).To(Equal("main-scanner"))
		get(ns, "main-scanner", &corev1.ServiceAccount{})
		Expect(*pod.SecurityContext.RunAsNonRoot).To(BeTrue())
		for _, c := range append(pod.InitContainers, pod.Containers...) {
			Expect(*c.SecurityContext.ReadOnlyRootFilesystem).To(BeTrue(), c.Name)
			Expect(c.SecurityContext.Capabilities.Drop).To(ContainElement(corev1.Capability("ALL")), c.Name)
		}
		Expect(dep.OwnerReferences).To(HaveLen(1))
		svc := get(ns, "main-scanner", &corev1.Service{})
		Expect(svc.Spec.PublishNotReadyAddresses).To(BeTrue())
		cm := get(ns, "main-scanner", &corev1.ConfigMap{})
		var cfg registryconfig.Scanner
		Expect(json.Unmarshal([]byte(cm.Data[resources.ScannerConfigKey]), &cfg)).To(Succeed())
		// The database comes from the Registry itself; no secret is in the config.
		Expect(cfg.Trivy.DBRepository).To(Equal("main." + ns + ".svc:5000/security/trivy-db:2"))
		Expect(cfg.CredentialsDir).NotTo(BeEmpty())
		Expect(cm.Data[resources.ScannerConfigKey]).NotTo(ContainSubstring("eyJ"), "no credential in the config")
		Expect(cm.Data[resources.ScannerPublicKeyKey]).To(ContainSubstring("PUBLIC KEY"))
		Expect(cm.Data).NotTo(HaveKey(resources.ScannerSigningKeyKey))
		creds := get(ns, "main-scanner-credentials", &corev1.Secret{})
		Expect(string(creds.Data["username"])).To(Equal(resources.ScannerUsername))
		Expect(creds.Annotations).To(HaveKey(resources.AnnotationExpiresAt))

		By("without a running scanner, ScannerReady is False and says why")
		expectCondition(ns, "main", v1alpha1.ConditionScannerReady, metav1.ConditionFalse, v1alpha1.ReasonScannerUnavailable)
		// The registry itself is not held back by its scanner.
		expectCondition(ns, "main", v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonAvailable)

		By("a running scanner with a database four days old: DatabaseStale")
		svcScanner := startScanner(ns, "main", live, time.Now().Add(-96*time.Hour))
		markDeploymentAvailable(ns, "main-scanner")
		Eventually(func() *time.Time { return svcScanner.Status().DBUpdatedAt }, 2*time.Minute, interval).ShouldNot(BeNil())
		touch(ns, "main")
		expectCondition(ns, "main", v1alpha1.ConditionScannerReady, metav1.ConditionFalse, v1alpha1.ReasonDatabaseStale)

		By("maxAge raised above the database's age: ScannerAvailable")
		updateRegistry(ns, "main", func(reg *v1alpha1.Registry) {
			reg.Spec.Scanning.Database.MaxAge = &metav1.Duration{Duration: 168 * time.Hour}
		})
		expectCondition(ns, "main", v1alpha1.ConditionScannerReady, metav1.ConditionTrue, v1alpha1.ReasonScannerAvailable)

		By("a push reaches the scanner through the operator, as the scanner's own identity pulls and stores the report")
		img, err := trivyfix.AlpineImage("3.20.3", []trivyfix.Package{{Name: "musl", Version: "1.2.4-r2"}}, nil)
		Expect(err).NotTo(HaveOccurred())
		d := live.push("team-a/app:v1", img)
		// Readers verify with the public key the ConfigMap publishes (no Secret access).
		pub := get(ns, "main-scanner", &corev1.ConfigMap{}).Data[resources.ScannerPublicKeyKey]
		keys, err := scan.ParsePublicKeys([]byte(pub))
		Expect(err).NotTo(HaveOccurred())
		ref, err := name.NewDigest(live.host + "/team-a/app@" + d)
		Expect(err).NotTo(HaveOccurred())
		var stored *scan.Stored
		Eventually(func() error {
			stored, err = scan.Latest(ref, keys, live.opts("admin", "admin-pw")...)
			return err
		}, 2*time.Minute, 250*time.Millisecond).Should(Succeed())
		Expect(stored.Report.Vulnerabilities).To(ContainElement(HaveField("ID", "CVE-2099-0001")))

		By("status.scanning counts it")
		Eventually(func(g Gomega) {
			touch(ns, "main")
			reg := &v1alpha1.Registry{}
			g.Expect(k8sClient.Get(ctx, key(ns, "main"), reg)).To(Succeed())
			g.Expect(reg.Status.Scanning).NotTo(BeNil())
			g.Expect(reg.Status.Scanning.Scanned).To(BeNumerically(">=", 1))
			g.Expect(reg.Status.Scanning.Vulnerable).To(HaveKeyWithValue("CRITICAL", BeNumerically(">=", 1)))
			g.Expect(reg.Status.Scanning.DatabaseUpdatedAt).NotTo(BeNil())
			g.Expect(reg.Status.Scanning.Scanner).To(HavePrefix("trivy "))
		}, timeout, time.Second).Should(Succeed())

		By("a scan request by annotation: handed to the scanner once, recorded in status, its outcome in events")
		before := svcScanner.Status().Scanned
		request := "team-a/app:v1, team-a/missing:v9 #1"
		updateRegistry(ns, "main", func(reg *v1alpha1.Registry) {
			reg.Annotations = map[string]string{v1alpha1.ScanRequestAnnotation: request}
		})
		Eventually(func(g Gomega) {
			reg := get(ns, "main", &v1alpha1.Registry{})
			g.Expect(reg.Status.Scanning).NotTo(BeNil())
			g.Expect(reg.Status.Scanning.LastHandledScanRequest).To(Equal(request))
		}, timeout, interval).Should(Succeed())
		// The image is scanned again although it has a report; the missing tag is named.
		Eventually(func() int64 { return svcScanner.Status().Scanned }, 2*time.Minute, 250*time.Millisecond).Should(Equal(before + 1))
		scanEvents := func(g Gomega) map[string]string {
			var evs eventsv1.EventList
			g.Expect(k8sClient.List(ctx, &evs, client.InNamespace(ns))).To(Succeed())
			out := map[string]string{}
			for _, e := range evs.Items {
				if e.Regarding.Name == "main" && strings.HasPrefix(e.Reason, "ScanRequest") {
					out[e.Reason] = e.Note
				}
			}
			return out
		}
		Eventually(func(g Gomega) {
			evs := scanEvents(g)
			g.Expect(evs).To(HaveKeyWithValue("ScanRequested", ContainSubstring("1 images queued")))
			g.Expect(evs).To(HaveKeyWithValue("ScanRequestIncomplete", ContainSubstring("team-a/missing:v9")))
		}, timeout, interval).Should(Succeed())
		// Handled once: further reconciles do not ask again.
		Expect(scanRequestsOf(ns, "main")).To(Equal(int64(1)))
		touch(ns, "main")
		Consistently(func() int64 { return scanRequestsOf(ns, "main") }, 3*time.Second, interval).Should(Equal(int64(1)))
		Expect(svcScanner.Status().Scanned).To(Equal(before + 1))

		By("a request the scanner cannot take is refused with a Warning, never retried")
		bad := "team-a/app:v1 ../etc/passwd"
		updateRegistry(ns, "main", func(reg *v1alpha1.Registry) { reg.Annotations[v1alpha1.ScanRequestAnnotation] = bad })
		Eventually(func(g Gomega) {
			g.Expect(get(ns, "main", &v1alpha1.Registry{}).Status.Scanning.LastHandledScanRequest).To(Equal(bad))
			g.Expect(scanEvents(g)).To(HaveKeyWithValue("ScanRequestInvalid", ContainSubstring("../etc/passwd is not a repository")))
		}, timeout, interval).Should(Succeed())
		Expect(svcScanner.Status().Scanned+int64(svcScanner.Status().Queue)).To(Equal(before+1), "nothing of an invalid request is queued")

		By("scanning switched off: the scanner's children and credential are gone, its signing key stays")
		updateRegistry(ns, "main", func(reg *v1alpha1.Registry) { reg.Spec.Scanning = nil })
		for _, obj := range []client.Object{&appsv1.Deployment{}, &corev1.Service{}, &corev1.ConfigMap{}, &corev1.ServiceAccount{}} {
			Eventually(func() bool {
				return apierrors.IsNotFound(k8sClient.Get(ctx, key(ns, "main-scanner"), obj))
			}, timeout, interval).Should(BeTrue(), "%T main-scanner deleted", obj)
		}
		Eventually(func() bool {
			return apierrors.IsNotFound(k8sClient.Get(ctx, key(ns, "main-scanner-credentials"), &corev1.Secret{}))
		}, timeout, interval).Should(BeTrue(), "the scanner's credential deleted")
		Consistently(func() error {
			return k8sClient.Get(ctx, key(ns, "main-scanner"), &corev1.Secret{})
		}, 2*time.Second, interval).Should(Succeed(), "the signing key is kept: reports it signed stay trusted")
		Eventually(func() *metav1.Condition {
			return condition(Default, ns, "main", v1alpha1.ConditionScannerReady)
		}, timeout, interval).Should(BeNil())
	})
})
