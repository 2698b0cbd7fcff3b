//go:build e2e

package e2e

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"golang.org/x/crypto/bcrypt"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dockyard-dev/dockyard/api/v1alpha1"
)

// restricted is the security context the "restricted" Pod Security Standard asks for.
func restricted() (*corev1.PodSecurityContext, *corev1.SecurityContext) {
	return &corev1.PodSecurityContext{RunAsNonRoot: ptr(true), RunAsUser: ptr(int64(65532)),
			SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
		&corev1.SecurityContext{AllowPrivilegeEscalation: ptr(false), ReadOnlyRootFilesystem: ptr(true),
			Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}}
}

var _ = Describe("a Registry trusting an OIDC provider in the cluster", Ordered, Label("oidc"), func() {
	var ns, issuer string

	BeforeAll(func() {
		ns = namespaceWithCA("e2e-oidc")
		issuer = fmt.Sprintf("https://dex.%s.svc:5556/dex", ns)

		By("running dex (image dex:e2e) with a static user in group ci, TLS from the namespace's CA")
		Expect(k8s.Create(ctx, &cmapi.Certificate{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "dex-tls"},
			Spec: cmapi.CertificateSpec{SecretName: "dex-tls", DNSNames: []string{"dex." + ns + ".svc"},
				PrivateKey: &cmapi.CertificatePrivateKey{Algorithm: cmapi.ECDSAKeyAlgorithm, Size: 256},
				IssuerRef:  cmmeta.IssuerReference{Name: "ca", Kind: "Issuer"}}})).To(Succeed())
		hash, err := bcrypt.GenerateFromPassword([]byte("ci-password"), bcrypt.DefaultCost)
		Expect(err).NotTo(HaveOccurred())
		cfg, _ := json.Marshal(map[string]any{
			"issuer":           issuer,
			"storage":          map[string]any{"type": "memory"},
			"web":              map[string]any{"https": "0.0.0.0:5556", "tlsCert": "/etc/dex/tls/tls.crt", "tlsKey": "/etc/dex/tls/tls.key"},
			"oauth2":           map[string]any{"passwordConnector": "local", "skipApprovalScreen": true, "grantTypes": []string{"password"}},
			"enablePasswordDB": true,
			"staticPasswords": []map[string]any{{"email": "ci@example.com", "username": "ci", "userID": "ci-1",
				"hash": string(hash), "groups": []string{"ci"}}},
			"staticClients": []map[string]any{{"id": "dockyard", "secret": "dockyard-secret", "name": "Dockyard",
				"redirectURIs": []string{"http://127.0.0.1/callback"}}},
		})
		Expect(k8s.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "dex"},
			Data: map[string]string{"config.json": string(cfg)}})).To(Succeed())
		podSC, sc := restricted()
		labels := map[string]string{"app": "dex"}
		Expect(k8s.Create(ctx, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "dex"},
			Spec: appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{
					SecurityContext:              podSC,
					AutomountServiceAccountToken: ptr(false),
					Containers: []corev1.Container{{Name: "dex", Image: "dex:e2e", ImagePullPolicy: corev1.PullNever,
						Args:            []string{"serve", "/etc/dex/config/config.json"},
						SecurityContext: sc,
						Ports:           []corev1.ContainerPort{{ContainerPort: 5556}},
						ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
							Path: "/dex/.well-known/openid-configuration", Port: intstr.FromInt32(5556), Scheme: corev1.URISchemeHTTPS}}},
						VolumeMounts: []corev1.VolumeMount{{Name: "config", MountPath: "/etc/dex/config"}, {Name: "tls", MountPath: "/etc/dex/tls"}},
					}},
					Volumes: []corev1.Volume{
						{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "dex"}}}},
						{Name: "tls", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "dex-tls"}}},
					},
				}}}})).To(Succeed())
		Expect(k8s.Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "dex"},
			Spec: corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{{Port: 5556, TargetPort: intstr.FromInt32(5556)}}}})).To(Succeed())

		By("creating a Registry whose only identity provider is that dex")
		Expect(k8s.Create(ctx, &v1alpha1.Registry{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "oidc"},
			Spec: v1alpha1.RegistrySpec{
				Storage: v1alpha1.RegistryStorage{EmptyDir: &v1alpha1.EmptyDirStorage{}},
				TLS:     &v1alpha1.TLSSpec{IssuerRef: &v1alpha1.IssuerReference{Kind: "Issuer", Name: "ca"}},
				Auth: &v1alpha1.AuthSpec{
					OIDC: &v1alpha1.OIDCSpec{IssuerURL: issuer, Audiences: []string{"dockyard"}, UsernameClaim: "email",
						CA: &v1alpha1.CABundleSource{SecretKeyRef: &v1alpha1.SecretKeyReference{Name: "ca", Key: "tls.crt"}}},
					Access: []v1alpha1.AccessRule{{Subjects: []v1alpha1.Subject{{Kind: "Group", Name: "ci"}},
						Repositories: []string{"ci/**"}, Role: v1alpha1.RoleManager}},
				},
			}})).To(Succeed())
	})

	It("becomes Ready once the operator reads the provider's discovery document and keys", func() {
		run("kubectl", "-n", ns, "wait", "--for=condition=Ready", "registry/oidc", "--timeout=300s")
		r := &v1alpha1.Registry{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "oidc"}, r)).To(Succeed())
		var auth *metav1.Condition
		for i := range r.Status.Conditions {
			if r.Status.Conditions[i].Type == v1alpha1.ConditionAuthReady {
				auth = &r.Status.Conditions[i]
			}
		}
		Expect(auth).NotTo(BeNil())
		Expect(auth.Reason).To(Equal(v1alpha1.ReasonProvidersReady), auth.Message)
	})

	It("takes a push from a Job that logs in with an OIDC ID token", func() {
		ca := caPool(ns)
		dexSvc := &corev1.Service{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "dex"}, dexSvc)).To(Succeed())
		By("getting an ID token from dex (what a CI system's OIDC integration hands a job)")
		d := &net.Dialer{Timeout: 10 * time.Second}
		dexClient := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: ca, MinVersion: tls.VersionTLS12},
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return d.DialContext(ctx, network, dexSvc.Spec.ClusterIP+":5556")
			}}}
		form := url.Values{"grant_type": {"password"}, "username": {"ci@example.com"}, "password": {"ci-password"},
			"scope": {"openid email groups"}}
		req, _ := http.NewRequest(http.MethodPost, issuer+"/token", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth("dockyard", "dockyard-secret")
		resp, err := dexClient.Do(req)
		Expect(err).NotTo(HaveOccurred())
		var tok struct {
			IDToken string `json:"id_token"`
		}
		Expect(json.NewDecoder(resp.Body).Decode(&tok)).To(Succeed())
		_ = resp.Body.Close()
		Expect(resp.StatusCode).To(Equal(http.StatusOK))
		Expect(tok.IDToken).NotTo(BeEmpty())
		Expect(k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ci-token"},
			Data: map[string][]byte{"token": []byte(tok.IDToken)}})).To(Succeed())

		By("running a Job: crane logs in with the ID token as the password and pushes a one-layer image")
		var layer bytes.Buffer
		tw := tar.NewWriter(&layer)
		body := []byte("pushed by a Job with an OIDC token\n")
		Expect(tw.WriteHeader(&tar.Header{Name: "hello.txt", Mode: 0o644, Size: int64(len(body)), ModTime: time.Unix(0, 0)})).To(Succeed())
		_, _ = tw.Write(body)
		Expect(tw.Close()).To(Succeed())
		Expect(k8s.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "layer"},
			BinaryData: map[string][]byte{"layer.tar": layer.Bytes()}})).To(Succeed())
		host := "oidc." + ns + ".svc:5000"
		podSC, sc := restricted()
		env := []corev1.EnvVar{
			{Name: "DOCKER_CONFIG", Value: "/work/docker"},
			{Name: "SSL_CERT_FILE", Value: "/ca/tls.crt"},
			{Name: "ID_TOKEN", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
				LocalObjectReference: corev1.LocalObjectReference{Name: "ci-token"}, Key: "token"}}},
		}
		mounts := []corev1.VolumeMount{{Name: "work", MountPath: "/work"}, {Name: "ca", MountPath: "/ca"}, {Name: "layer", MountPath: "/layer"}}
		job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "push"}, Spec: batchv1.JobSpec{
			BackoffLimit: ptr(int32(0)),
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
				RestartPolicy:                corev1.RestartPolicyNever,
				SecurityContext:              podSC,
				AutomountServiceAccountToken: ptr(false),
				InitContainers: []corev1.Container{{Name: "login", Image: "crane:e2e", ImagePullPolicy: corev1.PullNever,
					Args: []string{"auth", "login", host, "-u", "ci", "-p", "$(ID_TOKEN)"}, Env: env, VolumeMounts: mounts, SecurityContext: sc}},
				Containers: []corev1.Container{{Name: "push", Image: "crane:e2e", ImagePullPolicy: corev1.PullNever,
					Args: []string{"append", "--oci-empty-base", "-f", "/layer/layer.tar", "-t", host + "/ci/job:v1"},
					Env:  env, VolumeMounts: mounts, SecurityContext: sc}},
				Volumes: []corev1.Volume{
					{Name: "work", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
					{Name: "ca", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "ca",
						Items: []corev1.KeyToPath{{Key: "tls.crt", Path: "tls.crt"}}}}},
					{Name: "layer", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
						LocalObjectReference: corev1.LocalObjectReference{Name: "layer"}}}},
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

		By("reading the pushed image back with the same token")
		svc := &corev1.Service{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "oidc"}, svc)).To(Succeed())
		reg := newRegClient(host, svc.Spec.ClusterIP+":5000", ca)
		img, err := remote.Image(reg.ref("ci/job:v1"), reg.opts("ci", tok.IDToken)...)
		Expect(err).NotTo(HaveOccurred())
		layers, err := img.Layers()
		Expect(err).NotTo(HaveOccurred())
		Expect(layers).To(HaveLen(1))
		By("refusing a token that is not an ID token of the provider")
		_, err = remote.Image(reg.ref("ci/job:v1"), reg.opts("ci", tok.IDToken[:len(tok.IDToken)-4]+"AAAA")...)
		Expect(statusCode(err)).To(Equal(http.StatusUnauthorized), "%v", err)
	})
})
