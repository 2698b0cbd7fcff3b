package controller_test

import (
	"encoding/json"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/dockyard-dev/dockyard/api/v1alpha1"
	"github.com/dockyard-dev/dockyard/internal/registryconfig"
	resources "github.com/dockyard-dev/dockyard/internal/resources/registry"
)

func toVolume(claim string) v1alpha1.BackupLocation {
	return v1alpha1.BackupLocation{Volume: &v1alpha1.BackupVolume{ClaimName: claim}}
}

var _ = Describe("backups", func() {
	It("schedules a backup CronJob that reads its own config, without restarting the registry", func() {
		ns := newNamespace()
		Expect(k8sClient.Create(ctx, newRegistry(ns, "bk"))).To(Succeed())
		dep := &appsv1.Deployment{}
		Eventually(func() error { return k8sClient.Get(ctx, key(ns, "bk"), dep) }, timeout, interval).Should(Succeed())
		hash := dep.Spec.Template.Annotations[resources.AnnotationInputs]

		r := get(ns, "bk", &v1alpha1.Registry{})
		patched := r.DeepCopy()
		keep := int32(3)
		patched.Spec.Backup = &v1alpha1.BackupSpec{Schedule: "0 2 * * *", Keep: &keep, Destination: v1alpha1.BackupLocation{S3: &v1alpha1.S3Storage{
			Bucket: "backups", Endpoint: "https://s3.example.com", RootDirectory: "bk", CredentialsSecretRef: &v1alpha1.SecretReference{Name: "backup-creds"}}}}
		Expect(k8sClient.Patch(ctx, patched, client.MergeFrom(r))).To(Succeed())

		cj := &batchv1.CronJob{}
		Eventually(func() error { return k8sClient.Get(ctx, key(ns, "bk-backup"), cj) }, timeout, interval).Should(Succeed())
		Expect(cj.Spec.Schedule).To(Equal("0 2 * * *"))
		Expect(cj.Spec.ConcurrencyPolicy).To(Equal(batchv1.ForbidConcurrent))
		pod := cj.Spec.JobTemplate.Spec.Template.Spec
		Expect(pod.Containers[0].Args).To(Equal(registryconfig.BackupArgs(registryconfig.ConfigPath, registryconfig.TerminationMessagePath)))
		var configMap string
		for _, v := range pod.Volumes {
			if v.ConfigMap != nil {
				configMap = v.ConfigMap.Name
			}
		}
		Expect(configMap).To(Equal("bk-config-backup"))
		envs := map[string]*corev1.EnvVarSource{}
		for _, e := range pod.Containers[0].Env {
			envs[e.Name] = e.ValueFrom
		}
		Expect(envs).To(HaveKey(registryconfig.EnvBackupS3SecretAccessKey))
		Expect(envs[registryconfig.EnvBackupS3SecretAccessKey].SecretKeyRef.Name).To(Equal("backup-creds"))

		cm := &corev1.ConfigMap{}
		Expect(k8sClient.Get(ctx, key(ns, "bk-config-backup"), cm)).To(Succeed())
		var cfg registryconfig.Config
		Expect(yaml.Unmarshal([]byte(cm.Data[registryconfig.ConfigFileName]), &cfg)).To(Succeed())
		Expect(cfg.Backup).NotTo(BeNil())
		Expect(cfg.Backup.Keep).To(Equal(3))
		Expect(cfg.Backup.Store.S3.Bucket).To(Equal("backups"))
		Expect(cfg.Backup.Store.S3.SecretAccessKeyEnv).To(Equal(registryconfig.EnvBackupS3SecretAccessKey))
		Expect(cfg.Validate()).To(Succeed())
		Expect(cm.Data[registryconfig.ConfigFileName]).NotTo(ContainSubstring("secretAccessKey:"))

		// The serving config and the pods are untouched.
		Consistently(func() string {
			Expect(k8sClient.Get(ctx, key(ns, "bk"), dep)).To(Succeed())
			return dep.Spec.Template.Annotations[resources.AnnotationInputs]
		}, "2s", interval).Should(Equal(hash))
		serving := &corev1.ConfigMap{}
		Expect(k8sClient.Get(ctx, key(ns, "bk-config"), serving)).To(Succeed())
		Expect(serving.Data[registryconfig.ConfigFileName]).NotTo(ContainSubstring("backup"))

		By("a finished backup Job shows in status.lastBackup")
		job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "bk-backup-29000000", Labels: resources.Labels(r, resources.ComponentBackup)},
			Spec: *cj.Spec.JobTemplate.Spec.DeepCopy()}
		Expect(k8sClient.Create(ctx, job)).To(Succeed())
		sum, _ := json.Marshal(registryconfig.BackupSummary{Result: registryconfig.GCResultSucceeded, Backup: "bk-20261202T020000Z",
			Repositories: 2, Tags: 3, Manifests: 5, Blobs: 9, Bytes: 12345, BytesCopied: 2345, DurationSeconds: 4})
		finishJob(job, resources.BackupContainerName, testImage, true, string(sum), 4*time.Second)
		Eventually(func(g Gomega) {
			st := get(ns, "bk", &v1alpha1.Registry{}).Status.LastBackup
			g.Expect(st).NotTo(BeNil())
			g.Expect(st.Backup).To(Equal("bk-20261202T020000Z"))
			g.Expect(st.Result).To(Equal("Succeeded"))
			g.Expect(st.Bytes).To(Equal(int64(12345)))
			g.Expect(st.BytesCopied).To(Equal(int64(2345)))
		}, timeout, interval).Should(Succeed())

		By("a failed run does not hide the last good backup")
		failed := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "bk-backup-29000100", Labels: resources.Labels(r, resources.ComponentBackup)},
			Spec: *cj.Spec.JobTemplate.Spec.DeepCopy()}
		Expect(k8sClient.Create(ctx, failed)).To(Succeed())
		finishJob(failed, resources.BackupContainerName, testImage, false, `{"result":"Failed","message":"the backup store is unreachable"}`, time.Second)
		Eventually(func(g Gomega) {
			st := get(ns, "bk", &v1alpha1.Registry{}).Status
			g.Expect(st.LastBackup).NotTo(BeNil())
			g.Expect(st.LastBackup.Result).To(Equal("Failed"))
			g.Expect(st.LastBackup.Message).To(ContainSubstring("unreachable"))
			g.Expect(st.LastSuccessfulBackup).NotTo(BeNil())
			g.Expect(st.LastSuccessfulBackup.Backup).To(Equal("bk-20261202T020000Z"))
		}, timeout, interval).Should(Succeed())

		By("removing spec.backup removes the CronJob and its config")
		r = get(ns, "bk", &v1alpha1.Registry{})
		patched = r.DeepCopy()
		patched.Spec.Backup = nil
		Expect(k8sClient.Patch(ctx, patched, client.MergeFrom(r))).To(Succeed())
		Eventually(func() bool { return apierrors.IsNotFound(k8sClient.Get(ctx, key(ns, "bk-backup"), &batchv1.CronJob{})) }, timeout, interval).Should(BeTrue())
		Eventually(func() bool {
			return apierrors.IsNotFound(k8sClient.Get(ctx, key(ns, "bk-config-backup"), &corev1.ConfigMap{}))
		}, timeout, interval).Should(BeTrue())
	})

	It("refuses a restore added to a Registry that exists, and lets it be removed", func() {
		ns := newNamespace()
		Expect(k8sClient.Create(ctx, newRegistry(ns, "late"))).To(Succeed())
		r := get(ns, "late", &v1alpha1.Registry{})
		patched := r.DeepCopy()
		patched.Spec.Restore = &v1alpha1.RestoreSpec{From: toVolume("backups")}
		err := k8sClient.Patch(ctx, patched, client.MergeFrom(r))
		Expect(err).To(HaveOccurred())
		Expect(err.Error()).To(ContainSubstring("restore can be set only when the Registry is created"))

		Expect(k8sClient.Create(ctx, newRegistry(ns, "early", func(r *v1alpha1.Registry) {
			r.Spec.Restore = &v1alpha1.RestoreSpec{From: toVolume("backups")}
		}))).To(Succeed())
		r = get(ns, "early", &v1alpha1.Registry{})
		patched = r.DeepCopy()
		patched.Spec.Restore.Backup = "other"
		Expect(k8sClient.Patch(ctx, patched, client.MergeFrom(r))).NotTo(Succeed())
		patched.Spec.Restore = nil
		Expect(k8sClient.Update(ctx, patched)).To(Succeed(), "spec.restore may be removed")
		By("the registry does not start under a restore Job that still runs")
		job := &batchv1.Job{}
		Eventually(func() error { return k8sClient.Get(ctx, key(ns, "early-restore"), job) }, timeout, interval).Should(Succeed())
		Consistently(func() bool { return apierrors.IsNotFound(k8sClient.Get(ctx, key(ns, "early"), &appsv1.Deployment{})) }, "2s", interval).Should(BeTrue())
		finishJob(job, resources.RestoreContainerName, testImage, false, `{"result":"Failed","message":"the backup store holds no backup"}`, time.Second)
		Eventually(func() error { return k8sClient.Get(ctx, key(ns, "early"), &appsv1.Deployment{}) }, timeout, interval).Should(Succeed())
	})

	It("waits for the restore store's Secret before starting the restore Job", func() {
		ns := newNamespace()
		Expect(k8sClient.Create(ctx, newRegistry(ns, "wait", func(r *v1alpha1.Registry) {
			r.Spec.Restore = &v1alpha1.RestoreSpec{From: v1alpha1.BackupLocation{S3: &v1alpha1.S3Storage{Bucket: "backups",
				CredentialsSecretRef: &v1alpha1.SecretReference{Name: "backup-creds"}}}}
		}))).To(Succeed())
		c := expectConditionMessage(ns, "wait", v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonRestoring)
		Expect(c).To(ContainSubstring("Secret backup-creds (spec.restore.from.s3.credentialsSecretRef) not found"))
		Consistently(func() bool { return apierrors.IsNotFound(k8sClient.Get(ctx, key(ns, "wait-restore"), &batchv1.Job{})) }, "2s", interval).Should(BeTrue())
		Expect(k8sClient.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "backup-creds"},
			StringData: map[string]string{registryconfig.S3AccessKeyIDKey: "a", registryconfig.S3SecretAccessKeyKey: "b"}})).To(Succeed())
		Eventually(func() error { return k8sClient.Get(ctx, key(ns, "wait-restore"), &batchv1.Job{}) }, timeout, interval).Should(Succeed())
	})

	It("restores before the registry starts, and does not start it on a failed restore", func() {
		ns := newNamespace()
		Expect(k8sClient.Create(ctx, newRegistry(ns, "rs", func(r *v1alpha1.Registry) {
			r.Spec.Restore = &v1alpha1.RestoreSpec{From: toVolume("backups"), Backup: "main-20261202T020000Z"}
		}))).To(Succeed())
		job := &batchv1.Job{}
		Eventually(func() error { return k8sClient.Get(ctx, key(ns, "rs-restore"), job) }, timeout, interval).Should(Succeed())
		pod := job.Spec.Template.Spec
		Expect(pod.Containers[0].Args).To(Equal(registryconfig.RestoreArgs(registryconfig.ConfigPath, registryconfig.TerminationMessagePath)))
		claims := []string{}
		for _, v := range pod.Volumes {
			if v.PersistentVolumeClaim != nil {
				claims = append(claims, v.PersistentVolumeClaim.ClaimName)
			}
		}
		Expect(claims).To(ConsistOf("rs-data", "backups"))
		c := expectConditionMessage(ns, "rs", v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonRestoring)
		Expect(c).To(ContainSubstring("main-20261202T020000Z"))
		Consistently(func() bool { return apierrors.IsNotFound(k8sClient.Get(ctx, key(ns, "rs"), &appsv1.Deployment{})) }, "2s", interval).Should(BeTrue())

		By("the restore fails: the registry still does not start")
		finishJob(job, resources.RestoreContainerName, testImage, false, `{"result":"Failed","message":"backup main-20261202T020000Z not found in the store"}`, time.Second)
		c = expectConditionMessage(ns, "rs", v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonRestoreFailed)
		Expect(c).To(ContainSubstring("not found in the store"))
		Expect(apierrors.IsNotFound(k8sClient.Get(ctx, key(ns, "rs"), &appsv1.Deployment{}))).To(BeTrue())

		By("deleting the failed Job retries; a successful restore starts the registry")
		Expect(k8sClient.Delete(ctx, job, client.PropagationPolicy(metav1.DeletePropagationBackground))).To(Succeed())
		// envtest runs no garbage collector: remove the failed Job's pod as it would.
		Expect(k8sClient.Delete(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "rs-restore-abcde"}})).To(Succeed())
		Eventually(func() bool {
			j := &batchv1.Job{}
			return k8sClient.Get(ctx, key(ns, "rs-restore"), j) == nil && j.UID != job.UID
		}, timeout, interval).Should(BeTrue())
		Expect(k8sClient.Get(ctx, key(ns, "rs-restore"), job)).To(Succeed())
		sum, _ := json.Marshal(registryconfig.BackupSummary{Result: "Succeeded", Backup: "main-20261202T020000Z", Repositories: 2, Tags: 3, Manifests: 4})
		finishJob(job, resources.RestoreContainerName, testImage, true, string(sum), time.Second)
		Eventually(func() error { return k8sClient.Get(ctx, key(ns, "rs"), &appsv1.Deployment{}) }, timeout, interval).Should(Succeed())
		Eventually(func(g Gomega) {
			st := get(ns, "rs", &v1alpha1.Registry{}).Status.Restore
			g.Expect(st).NotTo(BeNil())
			g.Expect(st.Result).To(Equal("Succeeded"))
			g.Expect(st.Tags).To(Equal(int32(3)))
		}, timeout, interval).Should(Succeed())
	})
})
