//go:build e2e

package e2e

import (
	"archive/tar"
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	authnv1 "k8s.io/api/authentication/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dockyard-dev/dockyard/api/v1alpha1"
)

// busyboxImage is the local cluster's static busybox (hack/cluster/lib.sh).
const busyboxImage = "dockyard.local/cluster/busybox:stable"

var _ = Describe("a Registry using the cluster's identities", Ordered, Label("kubernetes"), func() {
	const name = "kube"
	var (
		regNS, teamNS string
		certsDir      string
		host, fqdn    string
		reg           *regClient
	)
	// saToken asks the API server for a token of the builder ServiceAccount for the
	// Registry's audience, as a projected volume gets one.
	saToken := func() string {
		GinkgoHelper()
		tr := &authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{Audiences: []string{host[:len(host)-len(":5000")]},
			ExpirationSeconds: ptr(int64(600))}}
		sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: teamNS, Name: "builder"}}
		Expect(k8s.SubResource("token").Create(ctx, sa, tr)).To(Succeed())
		return tr.Status.Token
	}

	BeforeAll(func() {
		certsDir = os.Getenv("E2E_CONTAINERD_CERTS_DIR")
		Expect(certsDir).NotTo(BeEmpty(), "E2E_CONTAINERD_CERTS_DIR names the node's containerd certs.d (make test-e2e sets it)")
		// The node-trust DaemonSet mounts host directories: its namespace admits privileged pods.
		regNS = namespaceWithCALevel("e2e-kube", "privileged")
		// A cluster administrator allows the Registry's pods to review tokens and access.
		Eventually(func() error {
			n := &corev1.Namespace{}
			if err := k8s.Get(ctx, client.ObjectKey{Name: regNS}, n); err != nil {
				return err
			}
			n.Labels[v1alpha1.LabelAllowAuthDelegation] = "true"
			return k8s.Update(ctx, n)
		}, shortWait, poll).Should(Succeed())
		teamNS = fmt.Sprintf("e2e-team-%d", time.Now().Unix()%100000)
		Expect(k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: teamNS, Labels: map[string]string{
			"pod-security.kubernetes.io/enforce": "restricted", "e2e.dockyard.dev/pull-from": regNS,
			v1alpha1.PullFromLabelPrefix + regNS: "true", // the team namespace asks for the pull Secrets
		}}})).To(Succeed())
		DeferCleanup(func() {
			if !CurrentSpecReport().Failed() {
				_ = k8s.Delete(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: teamNS}})
			}
		})
		Expect(k8s.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: teamNS, Name: "builder"}})).To(Succeed())
		// The one RoleBinding that lets the team's CI push to <team-namespace>/**.
		Expect(k8s.Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: teamNS, Name: "builder-pushes"},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "dockyard-repository-manager"},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "builder", Namespace: teamNS}},
		})).To(Succeed())
		host = fmt.Sprintf("%s.%s.svc:5000", name, regNS)
		fqdn = fmt.Sprintf("%s.%s.svc.cluster.local:5000", name, regNS)
		r := &v1alpha1.Registry{
			ObjectMeta: metav1.ObjectMeta{Namespace: regNS, Name: name},
			Spec: v1alpha1.RegistrySpec{
				Storage: v1alpha1.RegistryStorage{Filesystem: &v1alpha1.FilesystemStorage{Size: resource.MustParse("1Gi")}},
				TLS:     &v1alpha1.TLSSpec{IssuerRef: &v1alpha1.IssuerReference{Kind: "Issuer", Name: "ca"}},
				Auth: &v1alpha1.AuthSpec{
					ServiceAccounts: &v1alpha1.ServiceAccountAuthSpec{},
					KubernetesRBAC:  &v1alpha1.KubernetesRBACSpec{CacheTTL: &metav1.Duration{Duration: 2 * time.Second}},
				},
				PullSecrets: &v1alpha1.PullSecretsSpec{NamespaceSelector: metav1.LabelSelector{
					MatchLabels: map[string]string{"e2e.dockyard.dev/pull-from": regNS}}},
				NodeTrust: &v1alpha1.NodeTrustSpec{ContainerdConfigPath: certsDir},
			},
		}
		Expect(k8s.Create(ctx, r)).To(Succeed())
	})

	It("becomes Ready and installs its CA for the node's containerd", func() {
		run("kubectl", "-n", regNS, "wait", "--for=condition=Ready", "registry/"+name, "--timeout=300s")
		run("kubectl", "-n", regNS, "wait", "--for=condition=NodeTrustReady", "registry/"+name, "--timeout=180s")
		for _, h := range []string{host, fqdn} {
			Eventually(filepath.Join(certsDir, h, "hosts.toml"), shortWait, poll).Should(BeAnExistingFile())
			Expect(filepath.Join(certsDir, h, "dockyard-ca.crt")).To(BeAnExistingFile())
		}
		svc := &corev1.Service{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: regNS, Name: name}, svc)).To(Succeed())
		reg = newRegClient(host, svc.Spec.ClusterIP+":5000", caPool(regNS))
		Eventually(func() (int, error) {
			resp, err := (&http.Client{Transport: reg.transport, Timeout: 5 * time.Second}).Get("https://" + host + "/v2/")
			if err != nil {
				return 0, err
			}
			resp.Body.Close()
			return resp.StatusCode, nil
		}, shortWait, poll).Should(Equal(http.StatusUnauthorized))
	})

	It("takes a push from a Job that logs in with its projected ServiceAccount token", func() {
		ca := &corev1.Secret{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: regNS, Name: "ca"}, ca)).To(Succeed())
		Expect(k8s.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: teamNS, Name: "registry-ca"},
			Data: map[string]string{"ca.crt": string(ca.Data["tls.crt"])}})).To(Succeed())
		var layer bytes.Buffer
		tw := tar.NewWriter(&layer)
		body := []byte("pushed by a Job with its ServiceAccount token\n")
		Expect(tw.WriteHeader(&tar.Header{Name: "hello.txt", Mode: 0o644, Size: int64(len(body)), ModTime: time.Unix(0, 0)})).To(Succeed())
		_, _ = tw.Write(body)
		Expect(tw.Close()).To(Succeed())
		Expect(k8s.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: teamNS, Name: "layer"},
			BinaryData: map[string][]byte{"layer.tar": layer.Bytes()}})).To(Succeed())
		podSC, sc := restricted()
		env := []corev1.EnvVar{{Name: "DOCKER_CONFIG", Value: "/work/docker"}, {Name: "SSL_CERT_FILE", Value: "/ca/ca.crt"},
			{Name: "REGISTRY", Value: host}}
		mounts := []corev1.VolumeMount{{Name: "work", MountPath: "/work"}, {Name: "ca", MountPath: "/ca"},
			{Name: "layer", MountPath: "/layer"}, {Name: "token", MountPath: "/token"}}
		// The token is the password; the user name is not used.
		login := `mkdir -p /work/docker && printf '{"auths":{"%s":{"username":"ci","password":"%s"}}}' "$REGISTRY" "$(cat /token/token)" > /work/docker/config.json`
		job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: teamNS, Name: "push"}, Spec: batchv1.JobSpec{
			BackoffLimit: ptr(int32(0)),
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
				RestartPolicy:                corev1.RestartPolicyNever,
				ServiceAccountName:           "builder",
				AutomountServiceAccountToken: ptr(false),
				SecurityContext:              podSC,
				InitContainers: []corev1.Container{{Name: "login", Image: busyboxImage, ImagePullPolicy: corev1.PullNever,
					Command: []string{"/bin/busybox", "sh", "-c", login}, Env: env, VolumeMounts: mounts, SecurityContext: sc}},
				Containers: []corev1.Container{{Name: "push", Image: "crane:e2e", ImagePullPolicy: corev1.PullNever,
					Args: []string{"append", "--oci-empty-base", "-f", "/layer/layer.tar", "-t", host + "/" + teamNS + "/job:v1"},
					Env:  env, VolumeMounts: mounts, SecurityContext: sc}},
				Volumes: []corev1.Volume{
					{Name: "work", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
					{Name: "ca", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
						LocalObjectReference: corev1.LocalObjectReference{Name: "registry-ca"}}}},
					{Name: "layer", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
						LocalObjectReference: corev1.LocalObjectReference{Name: "layer"}}}},
					{Name: "token", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{{
						ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Audience: name + "." + regNS + ".svc",
							ExpirationSeconds: ptr(int64(600)), Path: "token"}}}}}},
				},
			}},
		}}
		Expect(k8s.Create(ctx, job)).To(Succeed())
		Eventually(func(g Gomega) {
			j := &batchv1.Job{}
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(job), j)).To(Succeed())
			g.Expect(j.Status.Failed).To(BeZero(), "the push Job failed (see the pod's log in the artifacts)")
			g.Expect(j.Status.Succeeded).To(Equal(int32(1)))
		}, longWait, poll).Should(Succeed())
		_, err := remote.Image(reg.ref(teamNS+"/job:v1"), reg.opts("ci", saToken())...)
		Expect(err).NotTo(HaveOccurred())
	})

	It("lets a pod of the team's namespace run an image with no hand-made Secret and no hand-made node config", func() {
		By("pushing a runnable image with the ServiceAccount's token")
		base, err := tarball.ImageFromPath(filepath.Join(repoRoot, "bin", "images", "dockyard.tar"), nil)
		Expect(err).NotTo(HaveOccurred())
		cfg, err := base.ConfigFile()
		Expect(err).NotTo(HaveOccurred())
		cfg = cfg.DeepCopy()
		cfg.Config.Labels = map[string]string{"dev.dockyard.e2e": teamNS} // a distinct image ID (see the robot spec)
		img, err := mutate.ConfigFile(base, cfg)
		Expect(err).NotTo(HaveOccurred())
		Expect(remote.Write(reg.ref(teamNS+"/dockyard:e2e"), img, reg.opts("ci", saToken())...)).To(Succeed())

		By("waiting for the operator's pull Secret on the namespace's default ServiceAccount")
		secretName := "dockyard-pull." + regNS + "." + name
		Eventually(func(g Gomega) {
			sa := &corev1.ServiceAccount{}
			g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: teamNS, Name: "default"}, sa)).To(Succeed())
			g.Expect(sa.ImagePullSecrets).To(ContainElement(corev1.LocalObjectReference{Name: secretName}))
		}, shortWait, poll).Should(Succeed())

		podSC, sc := restricted()
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: teamNS, Name: "pulled"}, Spec: corev1.PodSpec{
			RestartPolicy:   corev1.RestartPolicyNever,
			SecurityContext: podSC,
			Containers: []corev1.Container{{Name: "c", Image: fqdn + "/" + teamNS + "/dockyard:e2e",
				ImagePullPolicy: corev1.PullAlways, Args: []string{"version"}, SecurityContext: sc}},
		}}
		Expect(k8s.Create(ctx, pod)).To(Succeed())
		Expect(pod.Spec.ImagePullSecrets).To(ContainElement(corev1.LocalObjectReference{Name: secretName}),
			"the ServiceAccount admission copies the pull Secret into the pod")
		Eventually(func(g Gomega) {
			p := &corev1.Pod{}
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(pod), p)).To(Succeed())
			g.Expect(p.Status.Phase).To(Equal(corev1.PodSucceeded), "pod status: %+v", p.Status.ContainerStatuses)
		}, longWait, poll).Should(Succeed())
	})

	It("refuses the next push once the RoleBinding is removed", func() {
		tok := saToken()
		img, _ := random.Image(1024, 1)
		// The registry remembers this decision (kubernetesRBAC.cacheTTL, 2s here).
		Expect(remote.Write(reg.ref(teamNS+"/app:before"), img, reg.opts("ci", tok)...)).To(Succeed())
		Expect(k8s.Delete(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: teamNS, Name: "builder-pushes"}})).To(Succeed())
		Eventually(func() int {
			img, _ := random.Image(1024, 1)
			return statusCode(remote.Write(reg.ref(teamNS+"/app:after"), img, reg.opts("ci", tok)...))
		}, shortWait, poll).Should(Equal(http.StatusForbidden))
	})

	It("removes its pull Secrets, ServiceAccount entries, binding and node files with the Registry", func() {
		Expect(k8s.Delete(ctx, &v1alpha1.Registry{ObjectMeta: metav1.ObjectMeta{Namespace: regNS, Name: name}})).To(Succeed())
		secretName := "dockyard-pull." + regNS + "." + name
		Eventually(func(g Gomega) {
			err := k8s.Get(ctx, client.ObjectKey{Namespace: teamNS, Name: secretName}, &corev1.Secret{})
			g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "pull Secret: %v", err)
			sa := &corev1.ServiceAccount{}
			g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: teamNS, Name: "default"}, sa)).To(Succeed())
			g.Expect(sa.ImagePullSecrets).NotTo(ContainElement(corev1.LocalObjectReference{Name: secretName}))
			err = k8s.Get(ctx, client.ObjectKey{Name: "dockyard-registry:" + regNS + ":" + name}, &rbacv1.ClusterRoleBinding{})
			g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "ClusterRoleBinding: %v", err)
			g.Expect(filepath.Join(certsDir, host)).NotTo(BeAnExistingFile())
			g.Expect(filepath.Join(certsDir, fqdn)).NotTo(BeAnExistingFile())
		}, longWait, poll).Should(Succeed())
	})
})
