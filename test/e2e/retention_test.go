//go:build e2e

package e2e

import (
	"fmt"
	"io/fs"
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
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dockyard-dev/dockyard/api/v1alpha1"
)

// A RetentionPolicy on a real node: its DryRun plan shows in status, the enforced run
// deletes exactly what the plan said, a kept image still runs in a pod, and garbage
// collection frees the bytes the plan predicted.
var _ = Describe("a RetentionPolicy on a real cluster", Ordered, Label("retention"), func() {
	const name = "ret"
	var (
		ns  string
		reg *regClient
	)

	BeforeAll(func() {
		ns = namespaceWithCA("retention")
		Expect(k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "users"}, StringData: map[string]string{
			"htpasswd": htpasswd("alice", "alice-pw"),
		}})).To(Succeed())
		Expect(k8s.Create(ctx, &v1alpha1.Registry{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec: v1alpha1.RegistrySpec{
				Storage: v1alpha1.RegistryStorage{Filesystem: &v1alpha1.FilesystemStorage{Size: resource.MustParse("1Gi")}},
				TLS:     &v1alpha1.TLSSpec{IssuerRef: &v1alpha1.IssuerReference{Kind: "Issuer", Name: "ca"}},
				Auth: &v1alpha1.AuthSpec{UsersSecretRef: &v1alpha1.SecretReference{Name: "users"}, Access: []v1alpha1.AccessRule{
					{Subjects: []v1alpha1.Subject{{Kind: "User", Name: "alice"}}, Repositories: []string{"**"}, Role: v1alpha1.RoleManager},
				}, Robots: []v1alpha1.RobotAccount{{Name: "puller", Repositories: []string{"team-a/**"}, Role: v1alpha1.RoleViewer}}},
				GarbageCollection: &v1alpha1.GarbageCollectionSpec{Schedule: "0 3 * * *", GracePeriod: &metav1.Duration{Duration: 10 * time.Minute}},
			},
		})).To(Succeed())
		run("kubectl", "-n", ns, "wait", "--for=condition=Ready", "registry/"+name, "--timeout=300s")
		svc := &corev1.Service{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, svc)).To(Succeed())
		reg = newRegClient(fmt.Sprintf("%s.%s.svc:5000", name, ns), svc.Spec.ClusterIP+":5000", caPool(ns))
		waitForAPI(reg)
	})

	It("plans in DryRun, deletes what the plan said when enforced, keeps what runs, and GC frees the predicted bytes", func() {
		By("pushing two old CI builds, a release and the image a pod will run")
		for _, tag := range []string{"main-1", "main-2", "v1.0.0"} {
			img, err := random.Image(256<<10, 2)
			Expect(err).NotTo(HaveOccurred())
			Expect(remote.Write(reg.ref("team-a/app:"+tag), img, reg.opts("alice", "alice-pw")...)).To(Succeed())
		}
		base, err := tarball.ImageFromPath(filepath.Join(repoRoot, "bin", "images", "dockyard.tar"), nil)
		Expect(err).NotTo(HaveOccurred())
		cfg, err := base.ConfigFile()
		Expect(err).NotTo(HaveOccurred())
		cfg = cfg.DeepCopy()
		cfg.Config.Labels = map[string]string{"dev.dockyard.e2e": ns}
		keep, err := mutate.ConfigFile(base, cfg)
		Expect(err).NotTo(HaveOccurred())
		Expect(remote.Write(reg.ref("team-a/app:stable"), keep, reg.opts("alice", "alice-pw")...)).To(Succeed())

		By("making everything two days old on the node's volume (retention keeps the last hour's pushes, GC its grace period)")
		pvc := &corev1.PersistentVolumeClaim{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name + "-data"}, pvc)).To(Succeed())
		pv := &corev1.PersistentVolume{}
		Expect(k8s.Get(ctx, client.ObjectKey{Name: pvc.Spec.VolumeName}, pv)).To(Succeed())
		Expect(pv.Spec.HostPath).NotTo(BeNil(), "the local cluster's provisioner makes hostPath volumes")
		old := time.Now().Add(-48 * time.Hour)
		Expect(filepath.WalkDir(pv.Spec.HostPath.Path, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			return os.Chtimes(p, old, old)
		})).To(Succeed())

		By("a DryRun policy shows its plan and deletes nothing")
		Expect(k8s.Create(ctx, &v1alpha1.RetentionPolicy{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "builds"},
			Spec: v1alpha1.RetentionPolicySpec{
				RegistryRef:  v1alpha1.LocalRegistryReference{Name: name},
				Repositories: []string{"team-a/**"},
				Rules: []v1alpha1.RetentionRule{
					{Name: "stable", Tags: &v1alpha1.TagSelector{Glob: "stable"}},
					{Name: "releases", Tags: &v1alpha1.TagSelector{Semver: ">=1.0.0"}},
				},
				CollectGarbage: true,
			},
		})).To(Succeed())
		run("kubectl", "-n", ns, "wait", "--for=condition=Ready", "retentionpolicy/builds", "--timeout=300s")
		p := &v1alpha1.RetentionPolicy{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "builds"}, p)).To(Succeed())
		plan := p.Status.Plan
		Expect(plan).NotTo(BeNil())
		Expect(plan.Artifacts).To(Equal(int64(4)))
		Expect(plan.ArtifactsToDelete).To(Equal(int64(2)))
		Expect(plan.ReclaimableBytes).To(BeNumerically(">", 2*2*256<<10))
		Expect(plan.Sample).To(HaveLen(2))
		printed := run("kubectl", "-n", ns, "get", "retentionpolicy", "builds")
		Expect(printed).To(ContainSubstring("DryRun"))
		Expect(printed).To(ContainSubstring(plan.Reclaimable))
		_, err = remote.Image(reg.ref("team-a/app:main-1"), reg.opts("alice", "alice-pw")...)
		Expect(err).NotTo(HaveOccurred(), "a DryRun deletes nothing")

		By("switched to Enforce and asked to run, it deletes what the plan said")
		run("kubectl", "-n", ns, "patch", "retentionpolicy", "builds", "--type=merge", "-p", `{"spec":{"mode":"Enforce"}}`)
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(p), p)).To(Succeed())
			g.Expect(p.Status.ObservedGeneration).To(Equal(p.Generation))
			g.Expect(p.Status.ActiveJob).To(BeEmpty())
		}, longWait, poll).Should(Succeed())
		run("kubectl", "-n", ns, "annotate", "retentionpolicy", "builds", v1alpha1.RetentionRunAnnotation+"=e2e", "--overwrite")
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(p), p)).To(Succeed())
			g.Expect(p.Status.LastEnforcement).NotTo(BeNil())
			g.Expect(p.Status.LastEnforcement.Result).To(Equal("Succeeded"), "%+v", p.Status.LastEnforcement)
		}, longWait, poll).Should(Succeed())
		Expect(p.Status.LastEnforcement.ManifestsDeleted).To(Equal(int64(2)))
		Expect(p.Status.LastEnforcement.PlanHash).To(Equal(plan.PlanHash))
		for _, tag := range []string{"main-1", "main-2"} {
			_, err := remote.Image(reg.ref("team-a/app:"+tag), reg.opts("alice", "alice-pw")...)
			Expect(statusCode(err)).To(Equal(http.StatusNotFound), "%s: %v", tag, err)
		}

		By("the kept image runs in a pod on the node")
		if certsDir := os.Getenv("E2E_CONTAINERD_CERTS_DIR"); certsDir != "" {
			host := fmt.Sprintf("%s.%s.svc.cluster.local:5000", name, ns)
			trustCA(certsDir, host, ns)
			pod := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "kept"},
				Spec: corev1.PodSpec{
					RestartPolicy:    corev1.RestartPolicyNever,
					ImagePullSecrets: []corev1.LocalObjectReference{{Name: name + "-robot-puller"}},
					SecurityContext:  &corev1.PodSecurityContext{RunAsNonRoot: ptr(true), RunAsUser: ptr(int64(65532)), SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
					Containers: []corev1.Container{{
						Name: "c", Image: host + "/team-a/app:stable", ImagePullPolicy: corev1.PullAlways, Args: []string{"version"},
						SecurityContext: &corev1.SecurityContext{AllowPrivilegeEscalation: ptr(false), Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}},
					}},
				},
			}
			Expect(k8s.Create(ctx, pod)).To(Succeed())
			Eventually(func(g Gomega) {
				got := &corev1.Pod{}
				g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(pod), got)).To(Succeed())
				g.Expect(got.Status.Phase).To(Equal(corev1.PodSucceeded), "pod status: %+v", got.Status.ContainerStatuses)
			}, longWait, poll).Should(Succeed())
		} else {
			_, err := remote.Image(reg.ref("team-a/app:stable"), reg.opts("alice", "alice-pw")...)
			Expect(err).NotTo(HaveOccurred())
		}

		By("the garbage collection the run started frees the bytes the plan predicted")
		job := p.Status.LastEnforcement.GarbageCollectionJob
		Expect(job).To(HavePrefix(name + "-gc-retention-"))
		Eventually(func(g Gomega) {
			r := &v1alpha1.Registry{}
			g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, r)).To(Succeed())
			gc := r.Status.LastGarbageCollection
			g.Expect(gc).NotTo(BeNil())
			g.Expect(gc.JobName).To(Equal(job))
			g.Expect(gc.Result).To(Equal("Succeeded"), "message: %s", gc.Message)
			g.Expect(gc.BytesFreed).To(Equal(plan.ReclaimableBytes))
		}, longWait, poll).Should(Succeed())
		_, err = remote.Image(reg.ref("team-a/app:v1.0.0"), reg.opts("alice", "alice-pw")...)
		Expect(err).NotTo(HaveOccurred(), "kept images survive garbage collection")
	})
})
