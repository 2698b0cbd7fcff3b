//go:build e2e

package e2e

import (
	"io"

	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dockyard-dev/dockyard/api/v1alpha1"
)

// Backup and restore on a real node: a Registry backs up into a volume while it serves; a
// new Registry created from that backup serves the same images with the same digests.
var _ = Describe("backup and restore on a real cluster", Ordered, Label("backup"), func() {
	var ns string

	BeforeAll(func() {
		ns = namespaceWithCA("backup")
		aliceUsers(ns)
		Expect(k8s.Create(ctx, &corev1.PersistentVolumeClaim{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "backups"},
			Spec: corev1.PersistentVolumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}}},
		})).To(Succeed())
	})

	It("backs up while serving, and a new Registry restored from the backup serves the same digests", func() {
		Expect(k8s.Create(ctx, aliceRegistry(ns, "src", func(r *v1alpha1.Registry) {
			r.Spec.Backup = &v1alpha1.BackupSpec{Schedule: "0 3 * * *", Destination: v1alpha1.BackupLocation{Volume: &v1alpha1.BackupVolume{ClaimName: "backups"}}}
		}))).To(Succeed())
		run("kubectl", "-n", ns, "wait", "--for=condition=Ready", "registry/src", "--timeout=300s")
		src := registryClient(ns, "src")

		By("pushing an image and a multi-arch index")
		img, err := random.Image(256<<10, 2)
		Expect(err).NotTo(HaveOccurred())
		Expect(remote.Write(src.ref("team-a/app:v1"), img, src.opts("alice", "alice-pw")...)).To(Succeed())
		idx, err := random.Index(64<<10, 1, 2)
		Expect(err).NotTo(HaveOccurred())
		Expect(remote.WriteIndex(src.ref("team-a/multi:latest"), idx, src.opts("alice", "alice-pw")...)).To(Succeed())

		By("running the backup CronJob now")
		run("kubectl", "-n", ns, "create", "job", "--from=cronjob/src-backup", "src-backup-now")
		r := &v1alpha1.Registry{}
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "src"}, r)).To(Succeed())
			g.Expect(r.Status.LastBackup).NotTo(BeNil())
			g.Expect(r.Status.LastBackup.Result).To(Equal("Succeeded"), "%+v", r.Status.LastBackup)
		}, longWait, poll).Should(Succeed())
		b := r.Status.LastBackup
		Expect(b.JobName).To(Equal("src-backup-now"))
		Expect(b.Backup).To(HavePrefix("src-"))
		Expect(b.Repositories).To(Equal(int32(2)))
		Expect(b.Tags).To(Equal(int32(2)))
		Expect(b.BytesCopied).To(Equal(b.Bytes))
		Expect(run("kubectl", "-n", ns, "get", "events", "--field-selector", "involvedObject.name=src,reason=BackupSucceeded", "-o", "name")).NotTo(BeEmpty())

		By("creating a new Registry from that backup")
		Expect(k8s.Create(ctx, aliceRegistry(ns, "dst", func(r *v1alpha1.Registry) {
			r.Spec.Restore = &v1alpha1.RestoreSpec{From: v1alpha1.BackupLocation{Volume: &v1alpha1.BackupVolume{ClaimName: "backups"}}, Backup: b.Backup}
		}))).To(Succeed())
		run("kubectl", "-n", ns, "wait", "--for=condition=Ready", "registry/dst", "--timeout=300s")
		dstReg := &v1alpha1.Registry{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "dst"}, dstReg)).To(Succeed())
		Expect(dstReg.Status.Restore).NotTo(BeNil())
		Expect(dstReg.Status.Restore.Result).To(Equal("Succeeded"))
		Expect(dstReg.Status.Restore.Backup).To(Equal(b.Backup))

		By("pulling from the restored Registry: the same digests")
		dst := registryClient(ns, "dst")
		got, err := remote.Get(dst.ref("team-a/app:v1"), dst.opts("alice", "alice-pw")...)
		Expect(err).NotTo(HaveOccurred())
		Expect(got.Digest).To(Equal(must(img.Digest())))
		pulled, err := got.Image()
		Expect(err).NotTo(HaveOccurred())
		layers, err := pulled.Layers()
		Expect(err).NotTo(HaveOccurred())
		for _, l := range layers {
			rc, err := l.Compressed()
			Expect(err).NotTo(HaveOccurred())
			_, err = io.Copy(io.Discard, rc) // verified against the layer's digest at EOF
			Expect(err).NotTo(HaveOccurred())
			Expect(rc.Close()).To(Succeed())
		}
		gotIdx, err := remote.Get(dst.ref("team-a/multi:latest"), dst.opts("alice", "alice-pw")...)
		Expect(err).NotTo(HaveOccurred())
		Expect(gotIdx.Digest).To(Equal(must(idx.Digest())))
	})
})

func must[T any](v T, err error) T {
	Expect(err).NotTo(HaveOccurred())
	return v
}
