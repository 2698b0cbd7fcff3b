package controller_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dockyard-dev/dockyard/api/v1alpha1"
	"github.com/dockyard-dev/dockyard/internal/registryconfig"
	resources "github.com/dockyard-dev/dockyard/internal/resources/registry"
)

func key(ns, name string) client.ObjectKey { return client.ObjectKey{Namespace: ns, Name: name} }

// condition returns the Registry's condition of type t (nil when absent).
func condition(g Gomega, ns, name, t string) *metav1.Condition {
	reg := &v1alpha1.Registry{}
	g.Expect(k8sClient.Get(ctx, key(ns, name), reg)).To(Succeed())
	return meta.FindStatusCondition(reg.Status.Conditions, t)
}

func expectCondition(ns, name, t string, status metav1.ConditionStatus, reason string) {
	GinkgoHelper()
	Eventually(func(g Gomega) {
		c := condition(g, ns, name, t)
		g.Expect(c).NotTo(BeNil(), "condition %s", t)
		g.Expect(c.Status).To(Equal(status), "condition %s: %s/%s", t, c.Reason, c.Message)
		g.Expect(c.Reason).To(Equal(reason), "condition %s: %s", t, c.Message)
	}, timeout, interval).Should(Succeed())
}

func get[T client.Object](ns, name string, obj T) T {
	GinkgoHelper()
	Eventually(func() error { return k8sClient.Get(ctx, key(ns, name), obj) }, timeout, interval).Should(Succeed())
	return obj
}

func inputsHash(ns, name string) string {
	d := &appsv1.Deployment{}
	if err := k8sClient.Get(ctx, key(ns, name), d); err != nil {
		return ""
	}
	return d.Spec.Template.Annotations[resources.AnnotationInputs]
}

// markDeploymentAvailable writes the status the Deployment controller would.
func markDeploymentAvailable(ns, name string) {
	GinkgoHelper()
	Eventually(func() error {
		d := &appsv1.Deployment{}
		if err := k8sClient.Get(ctx, key(ns, name), d); err != nil {
			return err
		}
		n := *d.Spec.Replicas
		d.Status = appsv1.DeploymentStatus{
			ObservedGeneration: d.Generation, Replicas: n, UpdatedReplicas: n, ReadyReplicas: n, AvailableReplicas: n,
			Conditions: []appsv1.DeploymentCondition{{Type: appsv1.DeploymentAvailable, Status: corev1.ConditionTrue, Reason: "MinimumReplicasAvailable", LastUpdateTime: metav1.Now(), LastTransitionTime: metav1.Now()}},
		}
		return k8sClient.Status().Update(ctx, d)
	}, timeout, interval).Should(Succeed())
}

func markPVCBound(ns, name string) {
	GinkgoHelper()
	Eventually(func() error {
		pvc := &corev1.PersistentVolumeClaim{}
		if err := k8sClient.Get(ctx, key(ns, name), pvc); err != nil {
			return err
		}
		pvc.Status.Phase = corev1.ClaimBound
		return k8sClient.Status().Update(ctx, pvc)
	}, timeout, interval).Should(Succeed())
}

var _ = Describe("Registry controller", func() {
	var ns string
	BeforeEach(func() { ns = newNamespace() })

	Describe("a fully featured Registry", func() {
		const name = "main"
		BeforeEach(func() {
			Expect(k8sClient.Create(ctx, usersSecret(ns, "users", map[string]string{
				"htpasswd": htpasswdLine("alice", "s3cret-alice"),
				"groups":   "team-a: alice\n",
			}))).To(Succeed())
			Expect(k8sClient.Create(ctx, tlsSecret(ns, "main-tls"))).To(Succeed())
			Expect(k8sClient.Create(ctx, &cmapi.Issuer{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ca"},
				Spec:       cmapi.IssuerSpec{IssuerConfig: cmapi.IssuerConfig{SelfSigned: &cmapi.SelfSignedIssuer{}}},
			})).To(Succeed())
			reg := newRegistry(ns, name,
				withIssuer("Issuer", "ca"),
				withUsers("users", rule(v1alpha1.RoleManager, "group:team-a", "team-a/**"), rule(v1alpha1.RoleViewer, "alice", "**")),
				withGC("0 3 * * *"),
				func(r *v1alpha1.Registry) {
					r.Spec.Ingress = &v1alpha1.IngressSpec{Host: "registry.example.com", Annotations: map[string]string{"nginx.ingress.kubernetes.io/proxy-body-size": "0"}}
					r.Spec.NetworkPolicy = &v1alpha1.NetworkPolicySpec{From: []networkingv1.NetworkPolicyPeer{{
						NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "ci"}},
					}}}
				})
			Expect(k8sClient.Create(ctx, reg)).To(Succeed())
		})

		It("creates every child, owned by the Registry, with the fields users rely on", func() {
			reg := get(ns, name, &v1alpha1.Registry{})

			dep := get(ns, name, &appsv1.Deployment{})
			Expect(metav1.IsControlledBy(dep, reg)).To(BeTrue())
			pod := dep.Spec.Template.Spec
			Expect(pod.Containers).To(HaveLen(1))
			c := pod.Containers[0]
			Expect(c.Image).To(Equal(testImage))
			Expect(c.Args).To(Equal(registryconfig.ServeArgs(registryconfig.ConfigPath)))
			Expect(*pod.SecurityContext.RunAsNonRoot).To(BeTrue())
			Expect(pod.SecurityContext.SeccompProfile.Type).To(Equal(corev1.SeccompProfileTypeRuntimeDefault))
			Expect(*c.SecurityContext.ReadOnlyRootFilesystem).To(BeTrue())
			Expect(*c.SecurityContext.AllowPrivilegeEscalation).To(BeFalse())
			Expect(c.SecurityContext.Capabilities.Drop).To(ConsistOf(corev1.Capability("ALL")))
			Expect(c.ReadinessProbe.HTTPGet.Path).To(Equal(registryconfig.HealthPath))
			Expect(c.ReadinessProbe.HTTPGet.Scheme).To(Equal(corev1.URISchemeHTTPS))
			Expect(c.LivenessProbe.HTTPGet.Path).To(Equal(registryconfig.LivenessPath), "liveness must not follow storage")
			Expect(dep.Spec.Strategy.Type).To(Equal(appsv1.RecreateDeploymentStrategyType), "a ReadWriteOnce volume must be released before the new pod starts")
			Expect(dep.Spec.Template.Annotations).To(HaveKeyWithValue(resources.AnnotationInputs, Not(BeEmpty())))
			var vols []string
			for _, v := range pod.Volumes {
				vols = append(vols, v.Name)
			}
			Expect(vols).To(ContainElements("config", "data", "tls", "users", "tmp"))

			cm := get(ns, reg.ConfigMapName(), &corev1.ConfigMap{})
			Expect(metav1.IsControlledBy(cm, reg)).To(BeTrue())
			cfg, err := registryconfig.Parse([]byte(cm.Data[registryconfig.ConfigFileName]))
			Expect(err).NotTo(HaveOccurred(), "the rendered config must be valid for the workload")
			Expect(cfg.HTTP.TLS).NotTo(BeNil())
			Expect(cfg.Auth.GroupsFile).To(Equal(registryconfig.UsersDir+"/groups"), "the Secret has a groups key")
			Expect(cfg.Auth.Access).To(HaveLen(2))
			Expect(cfg.GC.DeleteUntagged).To(BeTrue())

			httpSecret := &corev1.Secret{}
			Expect(k8sClient.Get(ctx, key(ns, reg.HTTPSecretName()), httpSecret)).To(Succeed())
			Expect(httpSecret.Data[registryconfig.HTTPSecretKey]).To(HaveLen(64))
			users := &corev1.Secret{}
			Expect(k8sClient.Get(ctx, key(ns, "users"), users)).To(Succeed())
			for _, secretValue := range [][]byte{httpSecret.Data[registryconfig.HTTPSecretKey], users.Data["htpasswd"]} {
				Expect(cm.Data[registryconfig.ConfigFileName]).NotTo(ContainSubstring(strings.TrimSpace(string(secretValue))), "no secret value in the ConfigMap")
			}

			pvc := get(ns, reg.PVCName(), &corev1.PersistentVolumeClaim{})
			Expect(pvc.OwnerReferences).To(BeEmpty(), "deletionPolicy Retain: the volume must outlive the Registry")
			Expect(pvc.Spec.Resources.Requests.Storage().String()).To(Equal("1Gi"))

			svc := get(ns, name, &corev1.Service{})
			Expect(metav1.IsControlledBy(svc, reg)).To(BeTrue())
			Expect(svc.Spec.Ports).To(HaveLen(1))
			Expect(svc.Spec.Ports[0].Port).To(Equal(int32(5000)))
			Expect(svc.Spec.Selector).To(Equal(resources.SelectorLabels(reg)))

			sa := get(ns, name, &corev1.ServiceAccount{})
			Expect(*sa.AutomountServiceAccountToken).To(BeFalse())

			cert := get(ns, reg.CertificateName(), &cmapi.Certificate{})
			Expect(metav1.IsControlledBy(cert, reg)).To(BeTrue())
			Expect(cert.Spec.SecretName).To(Equal("main-tls"))
			Expect(cert.Spec.DNSNames).To(ContainElements("main", "main."+ns+".svc", "main."+ns+".svc.cluster.local", "registry.example.com"))
			Expect(cert.Spec.IssuerRef).To(Equal(cmmeta.IssuerReference{Name: "ca", Kind: "Issuer", Group: "cert-manager.io"}))

			cj := get(ns, reg.CronJobName(), &batchv1.CronJob{})
			Expect(metav1.IsControlledBy(cj, reg)).To(BeTrue())
			Expect(cj.Spec.Schedule).To(Equal("0 3 * * *"))
			Expect(cj.Spec.ConcurrencyPolicy).To(Equal(batchv1.ForbidConcurrent))
			Expect(cj.Spec.StartingDeadlineSeconds).NotTo(BeNil())
			gcPod := cj.Spec.JobTemplate.Spec.Template.Spec
			Expect(gcPod.Containers[0].Image).To(Equal(testImage))
			Expect(gcPod.Containers[0].Args).To(Equal(registryconfig.GCArgs(registryconfig.ConfigPath, registryconfig.TerminationMessagePath)))
			Expect(gcPod.Affinity.PodAffinity.RequiredDuringSchedulingIgnoredDuringExecution).To(HaveLen(1),
				"on a ReadWriteOnce volume the job must run on the serving pod's node")

			np := get(ns, name, &networkingv1.NetworkPolicy{})
			Expect(np.Spec.Ingress).To(HaveLen(1))
			Expect(np.Spec.Ingress[0].From).To(HaveLen(1))
			ing := get(ns, name, &networkingv1.Ingress{})
			Expect(ing.Spec.Rules[0].Host).To(Equal("registry.example.com"))
			Expect(ing.Spec.TLS[0].SecretName).To(Equal("main-tls"))

			Expect(k8sClient.Get(ctx, key(ns, name), &policyv1.PodDisruptionBudget{})).To(Satisfy(apierrors.IsNotFound), "no PDB for one replica")
		})

		It("reports Ready once the certificate is issued, the volume bound and the pods available", func() {
			expectCondition(ns, name, v1alpha1.ConditionCertificateReady, metav1.ConditionFalse, v1alpha1.ReasonIssuerNotReady)
			iss := get(ns, "ca", &cmapi.Issuer{})
			iss.Status.Conditions = []cmapi.IssuerCondition{{Type: cmapi.IssuerConditionReady, Status: cmmeta.ConditionTrue, Reason: "IsReady", Message: "ok"}}
			Expect(k8sClient.Status().Update(ctx, iss)).To(Succeed())
			// The issuer is not watched; the Registry looks again within 30s. Nudge it.
			touch(ns, name)
			expectCondition(ns, name, v1alpha1.ConditionCertificateReady, metav1.ConditionTrue, v1alpha1.ReasonCertificateIssued)
			expectCondition(ns, name, v1alpha1.ConditionAuthReady, metav1.ConditionTrue, v1alpha1.ReasonSecretFound)
			expectCondition(ns, name, v1alpha1.ConditionStorageReady, metav1.ConditionFalse, v1alpha1.ReasonVolumePending)
			expectCondition(ns, name, v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonRollingOut)
			expectCondition(ns, name, v1alpha1.ConditionProgressing, metav1.ConditionTrue, v1alpha1.ReasonRollingOut)

			markPVCBound(ns, name+"-data")
			expectCondition(ns, name, v1alpha1.ConditionStorageReady, metav1.ConditionTrue, v1alpha1.ReasonVolumeBound)
			markDeploymentAvailable(ns, name)
			expectCondition(ns, name, v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonAvailable)
			expectCondition(ns, name, v1alpha1.ConditionProgressing, metav1.ConditionFalse, v1alpha1.ReasonAsExpected)
			expectCondition(ns, name, v1alpha1.ConditionDegraded, metav1.ConditionFalse, v1alpha1.ReasonAsExpected)
			reg := get(ns, name, &v1alpha1.Registry{})
			Expect(reg.Status.ObservedGeneration).To(Equal(reg.Generation))
			Expect(reg.Status.URL).To(Equal(fmt.Sprintf("https://main.%s.svc:5000", ns)))
			Expect(reg.Status.ReadyReplicas).To(Equal(int32(1)))

			By("a Deployment past its progress deadline makes the Registry Degraded")
			d := get(ns, name, &appsv1.Deployment{})
			d.Status.Conditions = append(d.Status.Conditions, appsv1.DeploymentCondition{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionFalse, Reason: "ProgressDeadlineExceeded", Message: "ReplicaSet main-x has timed out progressing.", LastUpdateTime: metav1.Now(), LastTransitionTime: metav1.Now()})
			Expect(k8sClient.Status().Update(ctx, d)).To(Succeed())
			expectCondition(ns, name, v1alpha1.ConditionDegraded, metav1.ConditionTrue, v1alpha1.ReasonDeploymentUnavailable)
			expectCondition(ns, name, v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonDeploymentUnavailable)
		})

		It("rolls the pods when the config changes, but not for live-reloaded users or certificates", func() {
			var h0 string
			Eventually(func() string { h0 = inputsHash(ns, name); return h0 }, timeout, interval).ShouldNot(BeEmpty())

			By("the spec changes the rendered config: the pods roll")
			updateRegistry(ns, name, func(r *v1alpha1.Registry) { r.Spec.Auth.AnonymousPull = true })
			Eventually(func() string { return inputsHash(ns, name) }, timeout, interval).ShouldNot(Equal(h0))
			cm := get(ns, name+"-config", &corev1.ConfigMap{})
			Expect(cm.Data[registryconfig.ConfigFileName]).To(ContainSubstring("anonymousPull: true"))
			h1 := inputsHash(ns, name)

			By("users and the certificate change: the workload reloads them, nothing rolls")
			users := get(ns, "users", &corev1.Secret{})
			users.StringData = map[string]string{"htpasswd": htpasswdLine("alice", "new-password")}
			Expect(k8sClient.Update(ctx, users)).To(Succeed())
			tls := get(ns, "main-tls", &corev1.Secret{})
			tls.Data[corev1.TLSCertKey] = []byte("cert-v2")
			Expect(k8sClient.Update(ctx, tls)).To(Succeed())
			Consistently(func() string { return inputsHash(ns, name) }, 2*time.Second, interval).Should(Equal(h1))

			By("a groups key appears: the config names the groups file, the pods roll")
			users = get(ns, "users", &corev1.Secret{})
			delete(users.Data, "groups")
			Expect(k8sClient.Update(ctx, users)).To(Succeed())
			Eventually(func() string { return inputsHash(ns, name) }, timeout, interval).ShouldNot(Equal(h1))
		})

		It("rolls the pods when storage credentials change (they reach the pods as environment variables)", func() {
			Expect(k8sClient.Create(ctx, usersSecret(ns, "s3", map[string]string{"accessKeyID": "AKIA1", "secretAccessKey": "one"}))).To(Succeed())
			Expect(k8sClient.Create(ctx, newRegistry(ns, "obj", withStorage(s3Storage("s3"))))).To(Succeed())
			var h0 string
			Eventually(func() string { h0 = inputsHash(ns, "obj"); return h0 }, timeout, interval).ShouldNot(BeEmpty())
			s := get(ns, "s3", &corev1.Secret{})
			s.StringData = map[string]string{"secretAccessKey": "two"}
			Expect(k8sClient.Update(ctx, s)).To(Succeed())
			Eventually(func() string { return inputsHash(ns, "obj") }, timeout, interval).ShouldNot(Equal(h0))

			By("an unrelated Secret changes: nothing rolls")
			h1 := inputsHash(ns, "obj")
			Expect(k8sClient.Create(ctx, usersSecret(ns, "unrelated", map[string]string{"a": "b"}))).To(Succeed())
			Consistently(func() string { return inputsHash(ns, "obj") }, 2*time.Second, interval).Should(Equal(h1))
		})

		It("writes nothing when a reconcile finds nothing to change", func() {
			markPVCBound(ns, name+"-data")
			markDeploymentAvailable(ns, name)
			get(ns, name+"-tls", &cmapi.Certificate{})
			// Wait for a steady state: no write from the manager for 3 seconds.
			Eventually(func() int64 {
				before := writes.total.Load()
				time.Sleep(3 * time.Second)
				return writes.total.Load() - before
			}, 60*time.Second, 0).Should(BeZero())

			before := writes.snapshot()
			reconcilesBefore := reconcileCount()
			touch(ns, name) // an annotation change triggers a reconcile but changes nothing
			Eventually(reconcileCount, timeout, interval).Should(BeNumerically(">", reconcilesBefore))
			time.Sleep(time.Second)
			Expect(diffCounts(ns, before, writes.snapshot())).To(BeEmpty(), "a no-op reconcile must not write")
		})
	})

	Describe("embedded core types the API server validates only on the child", func() {
		// Tolerations, node selectors and resources are Kubernetes' own types; the CRD
		// cannot repeat all of their rules, so the Deployment's apply is where they fail.
		// The Registry then says so in Ready and Degraded with the API server's own words,
		// and keeps reporting what it did observe.
		It("reports the child's validation error as ReconcileFailed and recovers when fixed", func() {
			r := newRegistry(ns, "r")
			r.Spec.Tolerations = []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpExists, Value: "registry"}}
			Expect(k8sClient.Create(ctx, r)).To(Succeed())
			markPVCBound(ns, "r-data")
			expectCondition(ns, "r", v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonReconcileFailed)
			expectCondition(ns, "r", v1alpha1.ConditionDegraded, metav1.ConditionTrue, v1alpha1.ReasonReconcileFailed)
			msg := condition(Default, ns, "r", v1alpha1.ConditionReady).Message
			Expect(msg).To(ContainSubstring("Deployment"))
			Expect(msg).To(ContainSubstring("tolerations"))
			// The volume was still observed: the failed apply does not turn it into "pending".
			expectCondition(ns, "r", v1alpha1.ConditionStorageReady, metav1.ConditionTrue, v1alpha1.ReasonVolumeBound)

			updateRegistry(ns, "r", func(r *v1alpha1.Registry) { r.Spec.Tolerations[0].Value = "" })
			Eventually(func(g Gomega) {
				c := condition(g, ns, "r", v1alpha1.ConditionDegraded)
				g.Expect(c).NotTo(BeNil())
				g.Expect(c.Reason).NotTo(Equal(v1alpha1.ReasonReconcileFailed))
			}, timeout, interval).Should(Succeed())
			get(ns, "r", &appsv1.Deployment{})
		})
	})

	Describe("broken references", func() {
		It("reports a missing users Secret and holds back the Deployment until it appears", func() {
			Expect(k8sClient.Create(ctx, newRegistry(ns, "r", withUsers("missing")))).To(Succeed())
			expectCondition(ns, "r", v1alpha1.ConditionAuthReady, metav1.ConditionFalse, v1alpha1.ReasonSecretNotFound)
			expectCondition(ns, "r", v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonDependenciesNotReady)
			c := func() *metav1.Condition { return condition(Default, ns, "r", v1alpha1.ConditionReady) }
			Expect(c().Message).To(ContainSubstring(`users Secret "missing" not found`))
			Consistently(func() error { return k8sClient.Get(ctx, key(ns, "r"), &appsv1.Deployment{}) }, 2*time.Second, interval).
				Should(Satisfy(apierrors.IsNotFound), "pods that cannot mount their Secret must not be created")
			get(ns, "r", &corev1.Service{}) // the rest is in place

			By("a Secret without the htpasswd key")
			Expect(k8sClient.Create(ctx, usersSecret(ns, "missing", map[string]string{"users": "x"}))).To(Succeed())
			expectCondition(ns, "r", v1alpha1.ConditionAuthReady, metav1.ConditionFalse, v1alpha1.ReasonSecretKeyMissing)
			Expect(condition(Default, ns, "r", v1alpha1.ConditionAuthReady).Message).To(ContainSubstring("lacks key(s) htpasswd"))

			By("the fixed Secret")
			s := get(ns, "missing", &corev1.Secret{})
			s.StringData = map[string]string{"htpasswd": htpasswdLine("bob", "pw")}
			Expect(k8sClient.Update(ctx, s)).To(Succeed())
			expectCondition(ns, "r", v1alpha1.ConditionAuthReady, metav1.ConditionTrue, v1alpha1.ReasonSecretFound)
			get(ns, "r", &appsv1.Deployment{})
		})

		It("reports object-storage credentials that lack keys, and wires them as secretKeyRefs", func() {
			Expect(k8sClient.Create(ctx, usersSecret(ns, "s3", map[string]string{"accessKeyID": "AKIA"}))).To(Succeed())
			Expect(k8sClient.Create(ctx, newRegistry(ns, "r", withStorage(s3Storage("s3")), withReplicas(2)))).To(Succeed())
			expectCondition(ns, "r", v1alpha1.ConditionStorageReady, metav1.ConditionFalse, v1alpha1.ReasonSecretKeyMissing)
			Expect(condition(Default, ns, "r", v1alpha1.ConditionStorageReady).Message).To(ContainSubstring("secretAccessKey"))

			s := get(ns, "s3", &corev1.Secret{})
			s.StringData = map[string]string{"secretAccessKey": "shh"}
			Expect(k8sClient.Update(ctx, s)).To(Succeed())
			expectCondition(ns, "r", v1alpha1.ConditionStorageReady, metav1.ConditionTrue, v1alpha1.ReasonSecretFound)
			dep := get(ns, "r", &appsv1.Deployment{})
			Expect(dep.Spec.Strategy.Type).To(Equal(appsv1.RollingUpdateDeploymentStrategyType))
			Expect(dep.Spec.Template.Spec.TopologySpreadConstraints).NotTo(BeEmpty())
			var refs []string
			for _, e := range dep.Spec.Template.Spec.Containers[0].Env {
				Expect(e.Value).To(BeEmpty(), "credentials must come from secretKeyRef, not literal values")
				refs = append(refs, e.ValueFrom.SecretKeyRef.Name+"/"+e.ValueFrom.SecretKeyRef.Key)
			}
			Expect(refs).To(ContainElements("s3/accessKeyID", "s3/secretAccessKey"))
			pdb := get(ns, "r", &policyv1.PodDisruptionBudget{})
			Expect(pdb.Spec.MaxUnavailable.IntValue()).To(Equal(1))

			By("scaling to one replica removes the PodDisruptionBudget")
			updateRegistry(ns, "r", func(r *v1alpha1.Registry) { r.Spec.Replicas = ptr(int32(1)) })
			Eventually(func() error { return k8sClient.Get(ctx, key(ns, "r"), &policyv1.PodDisruptionBudget{}) }, timeout, interval).Should(Satisfy(apierrors.IsNotFound))
		})

		It("reports a missing issuer and a TLS Secret without a key", func() {
			Expect(k8sClient.Create(ctx, newRegistry(ns, "a", withIssuer("ClusterIssuer", "nope")))).To(Succeed())
			expectCondition(ns, "a", v1alpha1.ConditionCertificateReady, metav1.ConditionFalse, v1alpha1.ReasonIssuerNotFound)
			Expect(condition(Default, ns, "a", v1alpha1.ConditionCertificateReady).Message).To(ContainSubstring(`ClusterIssuer "nope" not found`))

			bad := tlsSecret(ns, "cert")
			bad.Type = corev1.SecretTypeOpaque
			delete(bad.Data, corev1.TLSPrivateKeyKey)
			Expect(k8sClient.Create(ctx, bad)).To(Succeed())
			Expect(k8sClient.Create(ctx, newRegistry(ns, "b", withTLSSecret("cert")))).To(Succeed())
			expectCondition(ns, "b", v1alpha1.ConditionCertificateReady, metav1.ConditionFalse, v1alpha1.ReasonSecretKeyMissing)
		})

		It("reports a Certificate cert-manager has not issued yet", func() {
			Expect(k8sClient.Create(ctx, &cmapi.ClusterIssuer{
				ObjectMeta: metav1.ObjectMeta{Name: "ready-" + ns},
				Spec:       cmapi.IssuerSpec{IssuerConfig: cmapi.IssuerConfig{SelfSigned: &cmapi.SelfSignedIssuer{}}},
			})).To(Succeed())
			ci := get("", "ready-"+ns, &cmapi.ClusterIssuer{})
			ci.Status.Conditions = []cmapi.IssuerCondition{{Type: cmapi.IssuerConditionReady, Status: cmmeta.ConditionTrue, Reason: "IsReady"}}
			Expect(k8sClient.Status().Update(ctx, ci)).To(Succeed())
			Expect(k8sClient.Create(ctx, newRegistry(ns, "r", withIssuer("ClusterIssuer", "ready-"+ns)))).To(Succeed())
			expectCondition(ns, "r", v1alpha1.ConditionCertificateReady, metav1.ConditionFalse, v1alpha1.ReasonCertificateNotReady)

			By("cert-manager issues it")
			cert := get(ns, "r-tls", &cmapi.Certificate{})
			cert.Status.Conditions = []cmapi.CertificateCondition{{Type: cmapi.CertificateConditionReady, Status: cmmeta.ConditionTrue, Reason: "Ready", Message: "Certificate is up to date and has not expired", ObservedGeneration: cert.Generation}}
			Expect(k8sClient.Status().Update(ctx, cert)).To(Succeed())
			Expect(k8sClient.Create(ctx, tlsSecret(ns, "r-tls"))).To(Succeed())
			expectCondition(ns, "r", v1alpha1.ConditionCertificateReady, metav1.ConditionTrue, v1alpha1.ReasonCertificateIssued)
			get(ns, "r", &appsv1.Deployment{})
		})
	})

	Describe("garbage-collection results", func() {
		It("records the newest finished job's summary, and a failure as Degraded", func() {
			Expect(k8sClient.Create(ctx, newRegistry(ns, "r", withGC("@daily")))).To(Succeed())
			get(ns, "r-gc", &batchv1.CronJob{})

			finishGCJob(ns, "r", "r-gc-1", true, registryconfig.GCSummary{Result: "Succeeded", BlobsDeleted: 7, ManifestsDeleted: 2, BytesFreed: 3 << 20})
			Eventually(func(g Gomega) {
				reg := &v1alpha1.Registry{}
				g.Expect(k8sClient.Get(ctx, key(ns, "r"), reg)).To(Succeed())
				gc := reg.Status.LastGarbageCollection
				g.Expect(gc).NotTo(BeNil())
				g.Expect(gc.JobName).To(Equal("r-gc-1"))
				g.Expect(gc.Result).To(Equal("Succeeded"))
				g.Expect(gc.BlobsDeleted).To(Equal(int64(7)))
				g.Expect(gc.ManifestsDeleted).To(Equal(int64(2)))
				g.Expect(gc.BytesFreed).To(Equal(int64(3 << 20)))
				g.Expect(gc.StartTime).NotTo(BeNil())
				g.Expect(gc.CompletionTime).NotTo(BeNil())
			}, timeout, interval).Should(Succeed())
			expectCondition(ns, "r", v1alpha1.ConditionDegraded, metav1.ConditionFalse, v1alpha1.ReasonAsExpected)

			time.Sleep(1100 * time.Millisecond) // condition times have one-second resolution
			finishGCJob(ns, "r", "r-gc-2", false, registryconfig.GCSummary{Result: "Failed", Message: "storage: access denied"})
			expectCondition(ns, "r", v1alpha1.ConditionDegraded, metav1.ConditionTrue, v1alpha1.ReasonGarbageCollectionFailed)
			Expect(condition(Default, ns, "r", v1alpha1.ConditionDegraded).Message).To(ContainSubstring("storage: access denied"))
		})
	})

	Describe("deletion", func() {
		It("keeps the volume with Retain, hands it to the Registry with Delete, and leaves only owned children", func() {
			Expect(k8sClient.Create(ctx, newRegistry(ns, "r"))).To(Succeed())
			reg := get(ns, "r", &v1alpha1.Registry{})
			pvc := get(ns, "r-data", &corev1.PersistentVolumeClaim{})
			Expect(pvc.OwnerReferences).To(BeEmpty())

			By("switching to deletionPolicy Delete")
			updateRegistry(ns, "r", func(r *v1alpha1.Registry) { r.Spec.DeletionPolicy = v1alpha1.DeletionPolicyDelete })
			Eventually(func(g Gomega) {
				p := &corev1.PersistentVolumeClaim{}
				g.Expect(k8sClient.Get(ctx, key(ns, "r-data"), p)).To(Succeed())
				g.Expect(metav1.IsControlledBy(p, reg)).To(BeTrue())
			}, timeout, interval).Should(Succeed())

			By("and back to Retain")
			updateRegistry(ns, "r", func(r *v1alpha1.Registry) { r.Spec.DeletionPolicy = v1alpha1.DeletionPolicyRetain })
			Eventually(func(g Gomega) {
				p := &corev1.PersistentVolumeClaim{}
				g.Expect(k8sClient.Get(ctx, key(ns, "r-data"), p)).To(Succeed())
				g.Expect(p.OwnerReferences).To(BeEmpty())
			}, timeout, interval).Should(Succeed())

			By("deleting the Registry")
			// envtest runs no garbage collector: check that every child but the retained
			// volume carries the controller reference the cluster's collector follows.
			for _, obj := range []client.Object{&appsv1.Deployment{}, &corev1.Service{}, &corev1.ServiceAccount{}} {
				Expect(k8sClient.Get(ctx, key(ns, "r"), obj)).To(Succeed())
				Expect(metav1.IsControlledBy(obj, reg)).To(BeTrue(), "%T", obj)
			}
			Expect(metav1.IsControlledBy(get(ns, "r-config", &corev1.ConfigMap{}), reg)).To(BeTrue())
			Expect(metav1.IsControlledBy(get(ns, "r-http-secret", &corev1.Secret{}), reg)).To(BeTrue())
			Expect(k8sClient.Delete(ctx, reg)).To(Succeed())
			Eventually(func() error { return k8sClient.Get(ctx, key(ns, "r"), &v1alpha1.Registry{}) }, timeout, interval).Should(Satisfy(apierrors.IsNotFound))
			// That the volume outlives its Registry needs a garbage collector, which envtest
			// lacks: test/e2e asserts it on a real cluster.
		})
	})
})

// updateRegistry applies mutate to the latest Registry, retrying on conflicts (the
// controller writes status concurrently).
func updateRegistry(ns, name string, mutate func(*v1alpha1.Registry)) {
	GinkgoHelper()
	Eventually(func() error {
		reg := &v1alpha1.Registry{}
		if err := k8sClient.Get(ctx, key(ns, name), reg); err != nil {
			return err
		}
		mutate(reg)
		return k8sClient.Update(ctx, reg)
	}, timeout, interval).Should(Succeed())
}

// touch changes an annotation of the Registry, which triggers a reconcile.
func touch(ns, name string) {
	GinkgoHelper()
	Eventually(func() error {
		reg := &v1alpha1.Registry{}
		if err := k8sClient.Get(ctx, key(ns, name), reg); err != nil {
			return err
		}
		if reg.Annotations == nil {
			reg.Annotations = map[string]string{}
		}
		reg.Annotations["test/touched"] = time.Now().Format(time.RFC3339Nano)
		return k8sClient.Update(ctx, reg)
	}, timeout, interval).Should(Succeed())
}

// finishGCJob creates the Job the CronJob would, with its pod, and writes the finished
// statuses the Job controller and kubelet would (including the termination message).
func finishGCJob(ns, reg, name string, succeeded bool, summary registryconfig.GCSummary) {
	GinkgoHelper()
	cj := get(ns, reg+"-gc", &batchv1.CronJob{})
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: cj.Spec.JobTemplate.Labels},
		Spec:       *cj.Spec.JobTemplate.Spec.DeepCopy(),
	}
	Expect(k8sClient.Create(ctx, job)).To(Succeed())
	msg, err := json.Marshal(summary)
	Expect(err).NotTo(HaveOccurred())
	finishJob(job, "gc", testImage, succeeded, string(msg), time.Minute)
}

// finishJob plays the kubelet and the Job controller for a created Job: one pod whose
// container terminated (exit 0 or 1) with msg as its termination message, after running
// for took, and the Job's completion or failure.
func finishJob(job *batchv1.Job, container, image string, succeeded bool, msg string, took time.Duration) {
	GinkgoHelper()
	ns, name := job.Namespace, job.Name
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name + "-abcde", Labels: map[string]string{batchv1.JobNameLabel: name}},
		Spec:       *job.Spec.Template.Spec.DeepCopy(),
	}
	Expect(k8sClient.Create(ctx, pod)).To(Succeed())
	start, end := metav1.NewTime(time.Now().Add(-took).Truncate(time.Second)), metav1.NewTime(time.Now().Truncate(time.Second))
	exit := int32(0)
	if !succeeded {
		exit = 1
	}
	pod.Status.Phase = corev1.PodSucceeded
	if !succeeded {
		pod.Status.Phase = corev1.PodFailed
	}
	pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: container, Image: image, ImageID: "sha256:00", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: exit, StartedAt: start, FinishedAt: end, Message: msg, Reason: "Completed"}}}}
	Expect(k8sClient.Status().Update(ctx, pod)).To(Succeed())

	job.Status.StartTime = &start
	if succeeded {
		job.Status.Succeeded = 1
		job.Status.CompletionTime = &end
		job.Status.Conditions = []batchv1.JobCondition{
			{Type: batchv1.JobSuccessCriteriaMet, Status: corev1.ConditionTrue, LastTransitionTime: end, LastProbeTime: end},
			{Type: batchv1.JobComplete, Status: corev1.ConditionTrue, LastTransitionTime: end, LastProbeTime: end},
		}
	} else {
		job.Status.Failed = 1
		job.Status.Conditions = []batchv1.JobCondition{
			{Type: batchv1.JobFailureTarget, Status: corev1.ConditionTrue, Reason: "BackoffLimitExceeded", LastTransitionTime: end, LastProbeTime: end},
			{Type: batchv1.JobFailed, Status: corev1.ConditionTrue, Reason: "BackoffLimitExceeded", Message: "Job has reached the specified backoff limit", LastTransitionTime: end, LastProbeTime: end},
		}
	}
	Expect(k8sClient.Status().Update(ctx, job)).To(Succeed())
}
