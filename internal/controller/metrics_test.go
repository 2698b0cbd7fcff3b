package controller_test

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/dockyard-dev/dockyard/api/v1alpha1"
	"github.com/dockyard-dev/dockyard/internal/controller"
	"github.com/dockyard-dev/dockyard/internal/manager"
	resources "github.com/dockyard-dev/dockyard/internal/resources/registry"
)

// The manager's metrics are served as `make deploy` configures them: HTTPS, and only to a
// caller whose token the API server vouches for and who may GET /metrics. The manager here
// runs as a user holding exactly config/rbac/metrics_auth_role.yaml, and the scraper holds
// config/rbac/metrics_reader_role.yaml, so the shipped RBAC is what is tested.
var _ = Describe("manager metrics", func() {
	It("answer 401 without a token, 403 without the metrics-reader role, 200 with it", func() {
		metricsUser, err := testEnv.AddUser(envtest.User{Name: "dockyard-metrics-manager"}, adminConfig)
		Expect(err).NotTo(HaveOccurred())
		authRole := createRoleFromFile("metrics_auth_role.yaml", "dockyard-metrics-auth-under-test")
		bind(authRole, rbacv1.Subject{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "dockyard-metrics-manager"})

		ln, err := net.Listen("tcp", "127.0.0.1:0")
		Expect(err).NotTo(HaveOccurred())
		addr := ln.Addr().String()
		Expect(ln.Close()).To(Succeed())
		mgr, err := ctrl.NewManager(metricsUser.Config(), ctrl.Options{
			Scheme:                 manager.NewScheme(),
			Metrics:                manager.MetricsOptions(manager.Options{MetricsAddr: addr, MetricsSecure: true}),
			HealthProbeBindAddress: "0",
		})
		Expect(err).NotTo(HaveOccurred())
		mctx, stop := context.WithCancel(ctx)
		DeferCleanup(stop)
		go func() {
			defer GinkgoRecover()
			Expect(mgr.Start(mctx)).To(Succeed())
		}()

		ns := newNamespace()
		readerRole := createRoleFromFile("metrics_reader_role.yaml", "dockyard-metrics-reader-under-test")
		token := func(name string) string {
			sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}
			Expect(k8sClient.Create(ctx, sa)).To(Succeed())
			tr := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &tokenSeconds}}
			Expect(k8sClient.SubResource("token").Create(ctx, sa, tr)).To(Succeed())
			return tr.Status.Token
		}
		scraper, stranger := token("scraper"), token("stranger")
		bind(readerRole, rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Name: "scraper", Namespace: ns})

		client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // the manager's self-signed certificate
		}}
		get := func(bearer string) (int, string) {
			req, _ := http.NewRequest(http.MethodGet, "https://"+addr+"/metrics", nil)
			if bearer != "" {
				req.Header.Set("Authorization", "Bearer "+bearer)
			}
			resp, err := client.Do(req)
			if err != nil {
				return 0, err.Error()
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, string(b)
		}
		Eventually(func() int { code, _ := get(""); return code }, timeout, interval).Should(Equal(http.StatusUnauthorized))
		Eventually(func() int { code, _ := get(stranger); return code }, timeout, interval).Should(Equal(http.StatusForbidden))
		Eventually(func(g Gomega) {
			code, body := get(scraper)
			g.Expect(code).To(Equal(http.StatusOK))
			g.Expect(body).To(ContainSubstring("controller_runtime"))
		}, timeout, interval).Should(Succeed())
		// Plain HTTP is not served.
		resp, err := http.Get("http://" + addr + "/metrics")
		if err == nil {
			defer resp.Body.Close()
			Expect(resp.StatusCode).To(Equal(http.StatusBadRequest), "an HTTPS listener answers plain HTTP with 400")
		}
	})
})

// gauge returns the value of a gauge the manager serves, with these label values.
func gauge(g Gomega, name string, labels map[string]string) (float64, bool) {
	families, err := metrics.Registry.Gather()
	g.Expect(err).NotTo(HaveOccurred())
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	next:
		for _, m := range f.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue next
				}
			}
			return m.GetGauge().GetValue(), true
		}
	}
	return 0, false
}

var _ = Describe("the manager's Registry metrics", func() {
	It("report each Registry's readiness and replicas, and how many Registries are Ready", func() {
		ns := newNamespace()
		Expect(k8sClient.Create(ctx, newRegistry(ns, "pending"))).To(Succeed())
		readyRegistry(ns, "serving")
		Eventually(func(g Gomega) {
			v, ok := gauge(g, controller.MetricRegistryReady, map[string]string{"namespace": ns, "registry": "serving"})
			g.Expect(ok).To(BeTrue())
			g.Expect(v).To(Equal(1.0))
			v, ok = gauge(g, controller.MetricRegistryReadyReplicas, map[string]string{"namespace": ns, "registry": "serving"})
			g.Expect(ok).To(BeTrue())
			g.Expect(v).To(Equal(1.0))
			v, ok = gauge(g, controller.MetricRegistryReady, map[string]string{"namespace": ns, "registry": "pending"})
			g.Expect(ok).To(BeTrue())
			g.Expect(v).To(Equal(0.0))
			var list v1alpha1.RegistryList
			g.Expect(k8sClient.List(ctx, &list)).To(Succeed())
			total := 0.0
			for _, s := range []string{"True", "False", "Unknown"} {
				n, ok := gauge(g, controller.MetricRegistries, map[string]string{"ready": s})
				g.Expect(ok).To(BeTrue())
				total += n
			}
			g.Expect(total).To(Equal(float64(len(list.Items))))
		}, timeout, interval).Should(Succeed())
	})
})

var tokenSeconds = int64(600)

func createRoleFromFile(file, name string) *rbacv1.ClusterRole {
	data, err := os.ReadFile(filepath.Join("..", "..", "config", "rbac", file))
	Expect(err).NotTo(HaveOccurred())
	role := &rbacv1.ClusterRole{}
	Expect(sigsyaml.Unmarshal(data, role)).To(Succeed())
	role.Name = name
	role.ResourceVersion = ""
	Expect(k8sClient.Create(ctx, role)).To(Succeed())
	return role
}

func bind(role *rbacv1.ClusterRole, subject rbacv1.Subject) {
	Expect(k8sClient.Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{GenerateName: role.Name + "-"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{subject},
	})).To(Succeed())
}

var _ = Describe("a Registry's PodMonitor and PrometheusRule", func() {
	It("are written when the Prometheus Operator is installed, with the user's labels; alerts.disabled removes the rule, disabled both", func() {
		ns := newNamespace()
		Expect(k8sClient.Create(ctx, newRegistry(ns, "mon", func(r *v1alpha1.Registry) {
			r.Spec.Monitoring = &v1alpha1.MonitoringSpec{Labels: map[string]string{"release": "kube-prometheus-stack"},
				Alerts: &v1alpha1.AlertsSpec{Labels: map[string]string{"team": "platform"}}}
		}))).To(Succeed())
		pm := &monitoringv1.PodMonitor{}
		Eventually(func() error { return k8sClient.Get(ctx, key(ns, "mon"), pm) }, timeout, interval).Should(Succeed())
		Expect(pm.Labels).To(HaveKeyWithValue("release", "kube-prometheus-stack"))
		Expect(pm.Spec.PodMetricsEndpoints).To(HaveLen(1))
		Expect(pm.Spec.PodMetricsEndpoints[0].RelabelConfigs).To(HaveLen(1))
		pr := &monitoringv1.PrometheusRule{}
		Eventually(func() error { return k8sClient.Get(ctx, key(ns, "mon"), pr) }, timeout, interval).Should(Succeed())
		Expect(pr.Labels).To(HaveKeyWithValue("release", "kube-prometheus-stack"))
		Expect(pr.OwnerReferences).To(HaveLen(1))
		Expect(pr.Spec.Groups).To(HaveLen(1))
		var alerts []string
		for _, rule := range pr.Spec.Groups[0].Rules {
			alerts = append(alerts, rule.Alert)
			Expect(rule.Labels).To(HaveKeyWithValue("team", "platform"))
			Expect(rule.Expr.String()).To(ContainSubstring(ns))
		}
		Expect(alerts).To(ContainElements("DockyardRegistryDown", "DockyardRegistryHighErrorRate"))
		c := expectConditionMessage(ns, "mon", v1alpha1.ConditionMonitoringReady, metav1.ConditionTrue, v1alpha1.ReasonPodMonitorApplied)
		Expect(c).To(ContainSubstring("every 30s"))
		Expect(c).To(ContainSubstring("PrometheusRule mon holds the Registry's alerts"))

		dep := &appsv1.Deployment{}
		Eventually(func() error { return k8sClient.Get(ctx, key(ns, "mon"), dep) }, timeout, interval).Should(Succeed())
		hash := dep.Spec.Template.Annotations[resources.AnnotationInputs]

		r := get(ns, "mon", &v1alpha1.Registry{})
		patched := r.DeepCopy()
		patched.Spec.Monitoring.Alerts.Disabled = true
		Expect(k8sClient.Patch(ctx, patched, client.MergeFrom(r))).To(Succeed())
		Eventually(func() bool {
			return apierrors.IsNotFound(k8sClient.Get(ctx, key(ns, "mon"), &monitoringv1.PrometheusRule{}))
		}, timeout, interval).Should(BeTrue())
		Expect(k8sClient.Get(ctx, key(ns, "mon"), &monitoringv1.PodMonitor{})).To(Succeed())
		Eventually(func() string {
			return expectConditionMessage(ns, "mon", v1alpha1.ConditionMonitoringReady, metav1.ConditionTrue, v1alpha1.ReasonPodMonitorApplied)
		}, timeout, interval).Should(ContainSubstring("alerts.disabled is set"))

		r = get(ns, "mon", &v1alpha1.Registry{})
		patched = r.DeepCopy()
		patched.Spec.Monitoring.Disabled = true
		Expect(k8sClient.Patch(ctx, patched, client.MergeFrom(r))).To(Succeed())
		Eventually(func() bool {
			return apierrors.IsNotFound(k8sClient.Get(ctx, key(ns, "mon"), &monitoringv1.PodMonitor{}))
		},
			timeout, interval).Should(BeTrue())
		expectCondition(ns, "mon", v1alpha1.ConditionMonitoringReady, metav1.ConditionFalse, v1alpha1.ReasonMonitoringDisabled)
		Expect(k8sClient.Get(ctx, key(ns, "mon"), dep)).To(Succeed())
		Expect(dep.Spec.Template.Annotations[resources.AnnotationInputs]).To(Equal(hash), "monitoring changes restart no registry pod")
	})
})

// expectConditionMessage waits for a Registry condition and returns its message.
func expectConditionMessage(ns, name, t string, status metav1.ConditionStatus, reason string) string {
	GinkgoHelper()
	expectCondition(ns, name, t, status, reason)
	r := get(ns, name, &v1alpha1.Registry{})
	for _, c := range r.Status.Conditions {
		if c.Type == t {
			return c.Message
		}
	}
	return ""
}
