package controller_test

import (
	"encoding/base64"
	"encoding/json"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dockyard-dev/dockyard/api/v1alpha1"
	"github.com/dockyard-dev/dockyard/internal/controller"
)

// withServiceAccounts turns on ServiceAccount logins (the only provider).
func withServiceAccounts() registryOption {
	return func(r *v1alpha1.Registry) {
		r.Spec.Auth = &v1alpha1.AuthSpec{ServiceAccounts: &v1alpha1.ServiceAccountAuthSpec{}}
	}
}

func labelledNamespace(labels map[string]string) string {
	GinkgoHelper()
	ns := newNamespace()
	n := &corev1.Namespace{}
	Expect(k8sClient.Get(ctx, client.ObjectKey{Name: ns}, n)).To(Succeed())
	n.Labels = labels
	Expect(k8sClient.Update(ctx, n)).To(Succeed())
	return ns
}

func setNamespaceLabels(ns string, labels map[string]string) {
	GinkgoHelper()
	Eventually(func() error {
		n := &corev1.Namespace{}
		if err := k8sClient.Get(ctx, client.ObjectKey{Name: ns}, n); err != nil {
			return err
		}
		n.Labels = labels
		return k8sClient.Update(ctx, n)
	}).Should(Succeed())
}

func createServiceAccount(ns, name string) {
	GinkgoHelper()
	Expect(k8sClient.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}})).To(Succeed())
}

func imagePullSecretsOf(g Gomega, ns, name string) []string {
	sa := &corev1.ServiceAccount{}
	g.Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, sa)).To(Succeed())
	var out []string
	for _, r := range sa.ImagePullSecrets {
		out = append(out, r.Name)
	}
	return out
}

// pullCredential returns the password of the pull Secret for host.
func pullCredential(g Gomega, sec *corev1.Secret, host string) string {
	var cfg struct {
		Auths map[string]struct{ Username, Password, Auth string } `json:"auths"`
	}
	g.Expect(json.Unmarshal(sec.Data[corev1.DockerConfigJsonKey], &cfg)).To(Succeed())
	a, ok := cfg.Auths[host]
	g.Expect(ok).To(BeTrue(), "the pull Secret names %s", host)
	raw, err := base64.StdEncoding.DecodeString(a.Auth)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(raw)).To(Equal(a.Username + ":" + a.Password))
	return a.Password
}

var _ = Describe("Kubernetes-native access", func() {
	It("binds the registry pods to system:auth-delegator once the namespace allows it, and mounts their API token only then", func() {
		ns := newNamespace()
		reg := newRegistry(ns, "r", withServiceAccounts())
		reg.Spec.Auth.KubernetesRBAC = &v1alpha1.KubernetesRBACSpec{}
		Expect(k8sClient.Create(ctx, reg)).To(Succeed())
		// Editing a Registry is not enough for cluster-wide reviews: an administrator
		// labels the namespace.
		Eventually(func(g Gomega) {
			c := condition(g, ns, "r", v1alpha1.ConditionAuthReady)
			g.Expect(c).NotTo(BeNil())
			g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
			g.Expect(c.Reason).To(Equal(v1alpha1.ReasonAuthDelegationNotAllowed))
			g.Expect(c.Message).To(ContainSubstring("kubectl label namespace %s registry.dockyard.dev/allow-auth-delegation=true", ns))
		}).Should(Succeed())
		Consistently(func() bool {
			err := k8sClient.Get(ctx, client.ObjectKey{Name: reg.AuthDelegatorBindingName()}, &rbacv1.ClusterRoleBinding{})
			return apierrors.IsNotFound(err)
		}, "2s").Should(BeTrue(), "no binding without the namespace's consent")
		setNamespaceLabels(ns, map[string]string{v1alpha1.LabelAllowAuthDelegation: "true"})
		crb := &rbacv1.ClusterRoleBinding{}
		Eventually(func(g Gomega) {
			g.Expect(k8sClient.Get(ctx, client.ObjectKey{Name: reg.AuthDelegatorBindingName()}, crb)).To(Succeed())
		}).Should(Succeed())
		Expect(crb.RoleRef.Name).To(Equal("system:auth-delegator"))
		Expect(crb.Subjects).To(Equal([]rbacv1.Subject{{Kind: "ServiceAccount", Name: reg.ServiceName(), Namespace: ns}}))
		Eventually(func(g Gomega) {
			d := &appsv1.Deployment{}
			g.Expect(k8sClient.Get(ctx, key(ns, "r"), d)).To(Succeed())
			g.Expect(*d.Spec.Template.Spec.AutomountServiceAccountToken).To(BeTrue())
			r := &v1alpha1.Registry{}
			g.Expect(k8sClient.Get(ctx, key(ns, "r"), r)).To(Succeed())
			g.Expect(r.Finalizers).To(ContainElement(controller.FinalizerClusterAccess))
			c := condition(g, ns, "r", v1alpha1.ConditionAuthReady)
			g.Expect(c).NotTo(BeNil())
			g.Expect(c.Status).To(Equal(metav1.ConditionTrue), "ServiceAccounts alone are a provider: %+v", c)
			g.Expect(c.Message).To(ContainSubstring("r.%s.svc are reviewed by the API server", ns))
		}).Should(Succeed())

		// Deleting the Registry removes the cluster-scoped binding it cannot own.
		Expect(k8sClient.Delete(ctx, reg)).To(Succeed())
		Eventually(func(g Gomega) {
			err := k8sClient.Get(ctx, client.ObjectKey{Name: reg.AuthDelegatorBindingName()}, &rbacv1.ClusterRoleBinding{})
			g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "binding still there: %v", err)
			err = k8sClient.Get(ctx, key(ns, "r"), &v1alpha1.Registry{})
			g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "Registry still there: %v", err)
		}).Should(Succeed())
	})

	It("writes pull Secrets into selected namespaces, attaches them to ServiceAccounts, and removes them", func() {
		regNS := newNamespace()
		// Selected by the Registry, and asking for its pull Secrets.
		team := map[string]string{"dockyard.dev/pull-" + regNS: "yes", v1alpha1.PullFromLabelPrefix + regNS: "true"}
		a := labelledNamespace(team)
		b := labelledNamespace(team)
		other := newNamespace()
		// Selected, but not asking: left alone.
		unasked := labelledNamespace(map[string]string{"dockyard.dev/pull-" + regNS: "yes"})
		for _, ns := range []string{a, b, other, unasked} {
			createServiceAccount(ns, "default")
			createServiceAccount(ns, "unrelated")
		}
		reg := newRegistry(regNS, "r", withServiceAccounts())
		reg.Spec.PullSecrets = &v1alpha1.PullSecretsSpec{NamespaceSelector: metav1.LabelSelector{MatchLabels: team},
			ServiceAccounts: []string{"default", "builder"}}
		Expect(k8sClient.Create(ctx, reg)).To(Succeed())
		name := reg.PullSecretName()
		host := reg.RegistryHosts("cluster.local")[0]

		creds := map[string]string{}
		Eventually(func(g Gomega) {
			for _, ns := range []string{a, b} {
				sec := &corev1.Secret{}
				g.Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, sec)).To(Succeed())
				g.Expect(sec.Type).To(Equal(corev1.SecretTypeDockerConfigJson))
				g.Expect(sec.OwnerReferences).To(BeEmpty())
				creds[ns] = pullCredential(g, sec, host)
				g.Expect(imagePullSecretsOf(g, ns, "default")).To(ContainElement(name))
				g.Expect(imagePullSecretsOf(g, ns, "unrelated")).NotTo(ContainElement(name))
			}
			for _, ns := range []string{other, unasked} {
				err := k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &corev1.Secret{})
				g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "namespace %s", ns)
				g.Expect(imagePullSecretsOf(g, ns, "default")).NotTo(ContainElement(name))
			}
			r := &v1alpha1.Registry{}
			g.Expect(k8sClient.Get(ctx, key(regNS, "r"), r)).To(Succeed())
			g.Expect(r.Status.PullSecrets).NotTo(BeNil())
			g.Expect(r.Status.PullSecrets.Namespaces).To(Equal(int32(2)))
			g.Expect(r.Status.PullSecrets.ServiceAccounts).To(Equal(int32(2)))
			g.Expect(r.Status.PullSecrets.NextRenewalTime).NotTo(BeNil())
		}).Should(Succeed())
		// Each namespace has its own credential, scoped to its own repositories.
		Expect(creds[a]).NotTo(Equal(creds[b]))
		Expect(claimsOf(creds[a])).To(And(ContainSubstring(`"repos":["`+a+`/*/**"]`), ContainSubstring(`"sub":"pull-secret:`+a+`"`)))

		// A ServiceAccount created later gets it; a Secret deleted by hand comes back.
		createServiceAccount(a, "builder")
		Expect(k8sClient.Delete(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: b, Name: name}})).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(imagePullSecretsOf(g, a, "builder")).To(ContainElement(name))
			g.Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: b, Name: name}, &corev1.Secret{})).To(Succeed())
		}).Should(Succeed())

		// A namespace that leaves the selector loses the Secret and the entries.
		setNamespaceLabels(b, nil)
		Eventually(func(g Gomega) {
			err := k8sClient.Get(ctx, client.ObjectKey{Namespace: b, Name: name}, &corev1.Secret{})
			g.Expect(apierrors.IsNotFound(err)).To(BeTrue())
			g.Expect(imagePullSecretsOf(g, b, "default")).NotTo(ContainElement(name))
		}).Should(Succeed())
		// A new namespace is served.
		c := labelledNamespace(team)
		createServiceAccount(c, "default")
		Eventually(func(g Gomega) {
			g.Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: c, Name: name}, &corev1.Secret{})).To(Succeed())
			g.Expect(imagePullSecretsOf(g, c, "default")).To(ContainElement(name))
		}).Should(Succeed())

		// Deleting the Registry removes every Secret and entry.
		Expect(k8sClient.Delete(ctx, reg)).To(Succeed())
		Eventually(func(g Gomega) {
			for _, ns := range []string{a, c} {
				err := k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &corev1.Secret{})
				g.Expect(apierrors.IsNotFound(err)).To(BeTrue())
				g.Expect(imagePullSecretsOf(g, ns, "default")).NotTo(ContainElement(name))
			}
			g.Expect(imagePullSecretsOf(g, a, "builder")).NotTo(ContainElement(name))
			err := k8sClient.Get(ctx, key(regNS, "r"), &v1alpha1.Registry{})
			g.Expect(apierrors.IsNotFound(err)).To(BeTrue())
		}).Should(Succeed())
	})
})

// claimsOf decodes a JWT's payload (unverified; the registry tests verify signatures).
func claimsOf(jwt string) string {
	parts := strings.Split(jwt, ".")
	ExpectWithOffset(1, parts).To(HaveLen(3))
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
	return string(raw)
}

var _ = Describe("Node trust", func() {
	It("runs the node-trust DaemonSet, reports NodeTrustReady, and removes it with nodeTrust", func() {
		ns := newNamespace()
		Expect(k8sClient.Create(ctx, tlsSecret(ns, "tls"))).To(Succeed())
		reg := newRegistry(ns, "r", withTLSSecret("tls"))
		reg.Spec.NodeTrust = &v1alpha1.NodeTrustSpec{ContainerdConfigPath: "/var/lib/containerd/certs.d"}
		Expect(k8sClient.Create(ctx, reg)).To(Succeed())
		ds := &appsv1.DaemonSet{}
		Eventually(func(g Gomega) {
			g.Expect(k8sClient.Get(ctx, key(ns, reg.NodeTrustName()), ds)).To(Succeed())
			c := condition(g, ns, "r", v1alpha1.ConditionNodeTrustReady)
			g.Expect(c).NotTo(BeNil())
			g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
			g.Expect(c.Reason).To(Equal(v1alpha1.ReasonNodeTrustRollingOut))
		}, timeout, interval).Should(Succeed())
		Expect(ds.Spec.Template.Spec.Volumes).To(ContainElement(HaveField("HostPath.Path", "/var/lib/containerd/certs.d")))

		// The DaemonSet controller (not in envtest) reports every node done.
		Eventually(func() error {
			if err := k8sClient.Get(ctx, key(ns, reg.NodeTrustName()), ds); err != nil {
				return err
			}
			ds.Status = appsv1.DaemonSetStatus{ObservedGeneration: ds.Generation, DesiredNumberScheduled: 2,
				CurrentNumberScheduled: 2, UpdatedNumberScheduled: 2, NumberReady: 2, NumberAvailable: 2}
			return k8sClient.Status().Update(ctx, ds)
		}).Should(Succeed())
		Eventually(func(g Gomega) {
			c := condition(g, ns, "r", v1alpha1.ConditionNodeTrustReady)
			g.Expect(c).NotTo(BeNil())
			g.Expect(c.Status).To(Equal(metav1.ConditionTrue))
			g.Expect(c.Reason).To(Equal(v1alpha1.ReasonNodeTrustInstalled))
			g.Expect(c.Message).To(ContainSubstring("2 node(s)"))
		}).Should(Succeed())

		Eventually(func() error {
			r := &v1alpha1.Registry{}
			if err := k8sClient.Get(ctx, key(ns, "r"), r); err != nil {
				return err
			}
			r.Spec.NodeTrust = nil
			return k8sClient.Update(ctx, r)
		}).Should(Succeed())
		Eventually(func(g Gomega) {
			err := k8sClient.Get(ctx, key(ns, reg.NodeTrustName()), &appsv1.DaemonSet{})
			g.Expect(apierrors.IsNotFound(err)).To(BeTrue())
			r := &v1alpha1.Registry{}
			g.Expect(k8sClient.Get(ctx, key(ns, "r"), r)).To(Succeed())
			g.Expect(r.Status.Conditions).NotTo(ContainElement(HaveField("Type", v1alpha1.ConditionNodeTrustReady)))
		}).Should(Succeed())
	})
})
