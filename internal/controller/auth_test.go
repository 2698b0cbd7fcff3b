package controller_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dockyard-dev/dockyard/api/v1alpha1"
	"github.com/dockyard-dev/dockyard/internal/registryconfig"
	"github.com/dockyard-dev/dockyard/internal/testfixture/dex"
	"github.com/dockyard-dev/dockyard/internal/testfixture/slapd"
)

func withLDAP(url, bindSecret string, ca *v1alpha1.CABundleSource) registryOption {
	return func(r *v1alpha1.Registry) {
		if r.Spec.Auth == nil {
			r.Spec.Auth = &v1alpha1.AuthSpec{}
		}
		r.Spec.Auth.LDAP = &v1alpha1.LDAPSpec{
			URLs:                  []string{url},
			CA:                    ca,
			BindDN:                slapd.BindDN,
			BindPasswordSecretRef: v1alpha1.SecretKeyReference{Name: bindSecret, Key: "password"},
			UserSearch:            v1alpha1.LDAPUserSearch{BaseDN: slapd.PeopleDN},
			GroupSearch:           &v1alpha1.LDAPGroupSearch{BaseDN: slapd.GroupsDN},
		}
	}
}

func tokenKeys(g Gomega, ns, name string) registryconfig.TokenKeys {
	sec := &corev1.Secret{}
	g.Expect(k8sClient.Get(ctx, key(ns, name+"-token-keys"), sec)).To(Succeed())
	var keys registryconfig.TokenKeys
	g.Expect(json.Unmarshal(sec.Data[registryconfig.TokenKeysKey], &keys)).To(Succeed())
	return keys
}

var _ = Describe("Registry identity providers", func() {
	var ns string
	BeforeEach(func() { ns = newNamespace() })

	It("generates the token signing keys, mounts them without hashing them, and removes them with auth", func() {
		Expect(k8sClient.Create(ctx, usersSecret(ns, "users", map[string]string{"htpasswd": htpasswdLine("alice", "pw")}))).To(Succeed())
		Expect(k8sClient.Create(ctx, newRegistry(ns, "r", withUsers("users")))).To(Succeed())

		var first registryconfig.TokenKeys
		Eventually(func(g Gomega) {
			first = tokenKeys(g, ns, "r")
			g.Expect(first.Keys).To(HaveLen(1))
			g.Expect(first.Keys[0].SignFrom).To(BeTemporally("<=", time.Now().Add(time.Second)))
			g.Expect(first.Keys[0].PrivateKey).To(HavePrefix("-----BEGIN PRIVATE KEY-----"))
		}, timeout, interval).Should(Succeed())
		sec := get(ns, "r-token-keys", &corev1.Secret{})
		Expect(sec.OwnerReferences).To(ContainElement(HaveField("Name", "r")))

		d := get(ns, "r", &appsv1.Deployment{})
		Expect(d.Spec.Template.Spec.Volumes).To(ContainElement(And(
			HaveField("Name", "token-keys"), HaveField("VolumeSource.Secret.SecretName", "r-token-keys"))))
		cm := get(ns, "r-config", &corev1.ConfigMap{})
		cfg, err := registryconfig.Parse([]byte(cm.Data[registryconfig.ConfigFileName]))
		Expect(err).NotTo(HaveOccurred())
		Expect(cfg.Auth.Token).To(Equal(&registryconfig.Token{
			KeysFile: registryconfig.TokenDir + "/keys.json", Issuer: "dockyard/" + ns + "/r", Service: "r." + ns + ".svc",
			TTL: registryconfig.Duration{Duration: 5 * time.Minute}, Challenge: "Bearer",
			SessionTTL: registryconfig.Duration{Duration: 12 * time.Hour}}))

		// A reconcile that is not due to rotate leaves the keys alone.
		hash := inputsHash(ns, "r")
		Expect(k8sClient.Create(ctx, usersSecret(ns, "unrelated", map[string]string{"x": "y"}))).To(Succeed())
		Consistently(func(g Gomega) {
			g.Expect(tokenKeys(g, ns, "r")).To(Equal(first))
		}, 2*time.Second, 200*time.Millisecond).Should(Succeed())
		Expect(inputsHash(ns, "r")).To(Equal(hash))

		reg := get(ns, "r", &v1alpha1.Registry{})
		reg.Spec.Auth = nil
		Expect(k8sClient.Update(ctx, reg)).To(Succeed())
		Eventually(func() bool {
			return apierrors.IsNotFound(k8sClient.Get(ctx, key(ns, "r-token-keys"), &corev1.Secret{}))
		}, timeout, interval).Should(BeTrue())
	})

	It("reports the directory's health in AuthReady and never holds the pods back for LDAP", func() {
		dir := slapd.Start(GinkgoT())
		Expect(k8sClient.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ldap-ca"},
			Data: map[string]string{"ca.crt": string(dir.CAPEM)}})).To(Succeed())
		bind := usersSecret(ns, "ldap-bind", map[string]string{"password": slapd.BindPassword})
		Expect(k8sClient.Create(ctx, bind)).To(Succeed())
		ca := &v1alpha1.CABundleSource{ConfigMapKeyRef: &v1alpha1.ConfigMapKeyReference{Name: "ldap-ca", Key: "ca.crt"}}

		Expect(k8sClient.Create(ctx, newRegistry(ns, "ok", withLDAP(dir.LDAPSURL, "ldap-bind", ca)))).To(Succeed())
		expectCondition(ns, "ok", v1alpha1.ConditionAuthReady, metav1.ConditionTrue, v1alpha1.ReasonProvidersReady)
		d := get(ns, "ok", &appsv1.Deployment{})
		Expect(d.Spec.Template.Spec.Volumes).To(ContainElement(HaveField("Name", "ldap")))

		By("a wrong bind password: the directory refuses the account")
		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(bind), bind)).To(Succeed())
		bind.Data = map[string][]byte{"password": []byte("wrong")}
		Expect(k8sClient.Update(ctx, bind)).To(Succeed())
		expectCondition(ns, "ok", v1alpha1.ConditionAuthReady, metav1.ConditionFalse, v1alpha1.ReasonLDAPBindFailed)
		expectCondition(ns, "ok", v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonDependenciesNotReady)

		By("a directory nobody answers at")
		Expect(k8sClient.Create(ctx, newRegistry(ns, "down", withLDAP("ldaps://127.0.0.1:1", "ldap-bind", ca)))).To(Succeed())
		expectCondition(ns, "down", v1alpha1.ConditionAuthReady, metav1.ConditionFalse, v1alpha1.ReasonLDAPUnreachable)
		Expect(condition(Default, ns, "down", v1alpha1.ConditionAuthReady).Message).To(ContainSubstring("cannot reach ldaps://127.0.0.1:1"))

		By("a CA that did not sign the directory's certificate")
		other := slapd.Start(GinkgoT())
		Expect(k8sClient.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "other-ca"},
			Data: map[string]string{"ca.crt": string(other.CAPEM)}})).To(Succeed())
		Expect(k8sClient.Create(ctx, newRegistry(ns, "untrusted", withLDAP(dir.LDAPSURL, "ldap-bind",
			&v1alpha1.CABundleSource{ConfigMapKeyRef: &v1alpha1.ConfigMapKeyReference{Name: "other-ca", Key: "ca.crt"}})))).To(Succeed())
		expectCondition(ns, "untrusted", v1alpha1.ConditionAuthReady, metav1.ConditionFalse, v1alpha1.ReasonLDAPUnreachable)

		By("a missing bind Secret, next to htpasswd users: the pods still start")
		Expect(k8sClient.Create(ctx, usersSecret(ns, "users", map[string]string{"htpasswd": htpasswdLine("alice", "pw")}))).To(Succeed())
		Expect(k8sClient.Create(ctx, newRegistry(ns, "nobind", withUsers("users"), withLDAP(dir.LDAPSURL, "absent", ca)))).To(Succeed())
		expectCondition(ns, "nobind", v1alpha1.ConditionAuthReady, metav1.ConditionFalse, v1alpha1.ReasonSecretNotFound)
		c := condition(Default, ns, "nobind", v1alpha1.ConditionAuthReady)
		Expect(c.Message).To(And(ContainSubstring(`htpasswd: users Secret "users" has the expected keys`),
			ContainSubstring(`ldap: bind password Secret "absent" not found`)))
		get(ns, "nobind", &appsv1.Deployment{})

		By("a missing CA ConfigMap")
		Expect(k8sClient.Create(ctx, newRegistry(ns, "noca", withLDAP(dir.LDAPSURL, "ldap-bind",
			&v1alpha1.CABundleSource{ConfigMapKeyRef: &v1alpha1.ConfigMapKeyReference{Name: "nope", Key: "ca.crt"}})))).To(Succeed())
		expectCondition(ns, "noca", v1alpha1.ConditionAuthReady, metav1.ConditionFalse, v1alpha1.ReasonConfigMapNotFound)
	})

	It("reports the OIDC provider's health in AuthReady", func() {
		idp := dex.Start(GinkgoT(), nil, dex.Options{})
		Expect(k8sClient.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "idp-ca"},
			Data: map[string][]byte{"ca.crt": idp.CAPEM}})).To(Succeed())
		withOIDC := func(issuer string) registryOption {
			return func(r *v1alpha1.Registry) {
				r.Spec.Auth = &v1alpha1.AuthSpec{OIDC: &v1alpha1.OIDCSpec{IssuerURL: issuer, Audiences: []string{"dockyard"},
					CA: &v1alpha1.CABundleSource{SecretKeyRef: &v1alpha1.SecretKeyReference{Name: "idp-ca", Key: "ca.crt"}}}}
			}
		}
		Expect(k8sClient.Create(ctx, newRegistry(ns, "ok", withOIDC(idp.Issuer)))).To(Succeed())
		expectCondition(ns, "ok", v1alpha1.ConditionAuthReady, metav1.ConditionTrue, v1alpha1.ReasonProvidersReady)
		d := get(ns, "ok", &appsv1.Deployment{})
		Expect(d.Spec.Template.Spec.Volumes).To(ContainElement(HaveField("Name", "oidc")))
		cm := get(ns, "ok-config", &corev1.ConfigMap{})
		cfg, err := registryconfig.Parse([]byte(cm.Data[registryconfig.ConfigFileName]))
		Expect(err).NotTo(HaveOccurred())
		Expect(cfg.Auth.OIDC.CAFile).To(Equal(registryconfig.OIDCDir + "/ca.crt"))

		Expect(k8sClient.Create(ctx, newRegistry(ns, "wrong-issuer", withOIDC(idp.Issuer+"/elsewhere")))).To(Succeed())
		expectCondition(ns, "wrong-issuer", v1alpha1.ConditionAuthReady, metav1.ConditionFalse, v1alpha1.ReasonOIDCDiscoveryFailed)
		Expect(k8sClient.Create(ctx, newRegistry(ns, "down", withOIDC("https://127.0.0.1:1/dex")))).To(Succeed())
		expectCondition(ns, "down", v1alpha1.ConditionAuthReady, metav1.ConditionFalse, v1alpha1.ReasonOIDCDiscoveryFailed)
	})

	It("writes robot credentials, hashes only for the pods, and revokes them", func() {
		Expect(k8sClient.Create(ctx, newRegistry(ns, "r", func(r *v1alpha1.Registry) {
			r.Spec.Auth = &v1alpha1.AuthSpec{Robots: []v1alpha1.RobotAccount{
				{Name: "ci", Repositories: []string{"team-a/**"}, Role: v1alpha1.RoleManager},
				{Name: "puller", Repositories: []string{"**"}, Role: v1alpha1.RoleViewer},
			}}
		}))).To(Succeed())
		robots := func(g Gomega) map[string]registryconfig.Robot {
			sec := &corev1.Secret{}
			g.Expect(k8sClient.Get(ctx, key(ns, "r-robots"), sec)).To(Succeed())
			var rs registryconfig.Robots
			g.Expect(json.Unmarshal(sec.Data[registryconfig.RobotsKey], &rs)).To(Succeed())
			out := map[string]registryconfig.Robot{}
			for _, r := range rs.Robots {
				out[r.User] = r
			}
			return out
		}
		hashOf := func(p []byte) string { sum := sha256.Sum256(p); return hex.EncodeToString(sum[:]) }
		var first []byte
		Eventually(func(g Gomega) {
			sec := &corev1.Secret{}
			g.Expect(k8sClient.Get(ctx, key(ns, "r-robot-ci"), sec)).To(Succeed())
			g.Expect(sec.Type).To(Equal(corev1.SecretTypeDockerConfigJson))
			g.Expect(string(sec.Data["username"])).To(Equal("robot+ci"))
			first = sec.Data["password"]
			g.Expect(string(first)).To(HavePrefix("dyr_"))
			g.Expect(string(sec.Data[corev1.DockerConfigJsonKey])).To(ContainSubstring(`"r.` + ns + `.svc.cluster.local:5000"`))
			rb := robots(g)["robot+ci"]
			g.Expect(rb.Role).To(Equal(registryconfig.RoleManager))
			g.Expect(rb.Credentials).To(HaveLen(1))
			g.Expect(rb.Credentials[0].SHA256).To(Equal(hashOf(first)))
			g.Expect(rb.Credentials[0].ExpiresAt).To(BeTemporally("~", time.Now().Add(30*24*time.Hour), time.Minute))
		}, timeout, interval).Should(Succeed())
		d := get(ns, "r", &appsv1.Deployment{})
		Expect(d.Spec.Template.Spec.Volumes).To(ContainElement(And(HaveField("Name", "robots"),
			HaveField("VolumeSource.Secret.SecretName", "r-robots"))))

		By("deleting a robot's Secret revokes its password and issues a new one")
		Expect(k8sClient.Delete(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "r-robot-ci"}})).To(Succeed())
		Eventually(func(g Gomega) {
			sec := &corev1.Secret{}
			g.Expect(k8sClient.Get(ctx, key(ns, "r-robot-ci"), sec)).To(Succeed())
			g.Expect(sec.Data["password"]).NotTo(Equal(first))
			creds := robots(g)["robot+ci"].Credentials
			g.Expect(creds).To(HaveLen(1))
			g.Expect(creds[0].SHA256).To(Equal(hashOf(sec.Data["password"])))
		}, timeout, interval).Should(Succeed())

		By("removing a robot from the spec revokes it")
		reg := get(ns, "r", &v1alpha1.Registry{})
		reg.Spec.Auth.Robots = reg.Spec.Auth.Robots[1:]
		Expect(k8sClient.Update(ctx, reg)).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(apierrors.IsNotFound(k8sClient.Get(ctx, key(ns, "r-robot-ci"), &corev1.Secret{}))).To(BeTrue())
			g.Expect(robots(g)).To(HaveKey("robot+puller"))
			g.Expect(robots(g)).NotTo(HaveKey("robot+ci"))
		}, timeout, interval).Should(Succeed())
		get(ns, "r-robot-puller", &corev1.Secret{})
	})
})
