package registry

import (
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dockyard-dev/dockyard/api/v1alpha1"
	"github.com/dockyard-dev/dockyard/internal/registryconfig"
)

// Backup and restore jobs.
const (
	ComponentBackup        = "backup"
	ComponentRestore       = "restore"
	BackupContainerName    = "backup"
	RestoreContainerName   = "restore"
	DefaultBackupKeep      = 7
	BackupActiveDeadline   = 12 * 3600
	BackupHistoryLimit     = 3
	volBackupStore         = "backup-store"
	backupStartingDeadline = 3600
)

// BackupConfigName is the ConfigMap the backup and restore jobs read: the registry's config
// plus the backup store. The serving pods never mount it, so changing spec.backup never
// restarts them. (Not <name>-backup-config: that is the config of a Registry named
// <name>-backup.)
func BackupConfigName(reg *v1alpha1.Registry) string { return reg.Name + "-config-backup" }

// BackupCronJobName and RestoreJobName name the jobs.
func BackupCronJobName(reg *v1alpha1.Registry) string { return reg.Name + "-backup" }

// RestoreJobName is the one restore Job of spec.restore.
func RestoreJobName(reg *v1alpha1.Registry) string { return reg.Name + "-restore" }

// BackupConfig is the config of the backup and restore jobs; nil without spec.backup and
// spec.restore.
func BackupConfig(reg *v1alpha1.Registry, in Inputs) *registryconfig.Config {
	if reg.Spec.Backup == nil && reg.Spec.Restore == nil {
		return nil
	}
	c := Config(reg, in)
	c.Events = nil     // the jobs push nothing
	c.Compliance = nil // nor serve anyone
	if b := reg.Spec.Backup; b != nil {
		keep := DefaultBackupKeep
		if b.Keep != nil {
			keep = int(*b.Keep)
		}
		c.Backup = &registryconfig.Backup{Store: storeConfig(b.Destination), Keep: keep, Name: reg.Name,
			Registry: reg.Namespace + "/" + reg.Name}
	}
	if r := reg.Spec.Restore; r != nil {
		c.Restore = &registryconfig.Restore{Store: storeConfig(r.From), Backup: r.Backup}
	}
	return c
}

func storeConfig(l v1alpha1.BackupLocation) registryconfig.Storage {
	if l.Volume != nil {
		return registryconfig.Storage{Filesystem: &registryconfig.FilesystemStorage{RootDirectory: registryconfig.BackupVolumeDir}}
	}
	s3 := &registryconfig.S3Storage{Bucket: l.S3.Bucket, Region: l.S3.Region, Endpoint: l.S3.Endpoint,
		ForcePathStyle: l.S3.ForcePathStyle, Encrypt: l.S3.Encrypt, RootDirectory: l.S3.RootDirectory}
	if s3.Region == "" {
		s3.Region = v1alpha1.DefaultS3Region
	}
	if l.S3.CredentialsSecretRef != nil {
		s3.AccessKeyIDEnv, s3.SecretAccessKeyEnv = registryconfig.EnvBackupS3AccessKeyID, registryconfig.EnvBackupS3SecretAccessKey
	}
	return registryconfig.Storage{S3: s3}
}

// BackupConfigMap holds the rendered backup config (no secret values).
func BackupConfigMap(reg *v1alpha1.Registry, rendered []byte) *corev1.ConfigMap {
	return &corev1.ConfigMap{
		TypeMeta:   typeMeta("v1", "ConfigMap"),
		ObjectMeta: objectMeta(reg, BackupConfigName(reg), ComponentBackup),
		Data:       map[string]string{registryconfig.ConfigFileName: string(rendered)},
	}
}

// backupPod is a maintenance pod that reads the backup config and reaches the store.
func backupPod(reg *v1alpha1.Registry, in Inputs, container string, args []string, loc v1alpha1.BackupLocation) corev1.PodSpec {
	pod := maintenancePod(reg, in, container, args)
	for i := range pod.Volumes {
		if pod.Volumes[i].Name == volConfig {
			pod.Volumes[i].ConfigMap.Name = BackupConfigName(reg)
		}
	}
	c := &pod.Containers[0]
	switch {
	case loc.Volume != nil:
		pod.Volumes = append(pod.Volumes, corev1.Volume{Name: volBackupStore, VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: loc.Volume.ClaimName}}})
		c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: volBackupStore, MountPath: registryconfig.BackupVolumeDir})
	case loc.S3 != nil && loc.S3.CredentialsSecretRef != nil:
		c.Env = append(c.Env,
			secretEnv(registryconfig.EnvBackupS3AccessKeyID, loc.S3.CredentialsSecretRef.Name, registryconfig.S3AccessKeyIDKey),
			secretEnv(registryconfig.EnvBackupS3SecretAccessKey, loc.S3.CredentialsSecretRef.Name, registryconfig.S3SecretAccessKeyKey))
	}
	return pod
}

// BackupCronJob runs `dockyard registry backup` on spec.backup.schedule; nil without it.
// Like garbage collection it runs beside the serving pods (on their node for a
// ReadWriteOnce volume) and reports its summary in its termination message.
func BackupCronJob(reg *v1alpha1.Registry, in Inputs) *batchv1.CronJob {
	b := reg.Spec.Backup
	if b == nil {
		return nil
	}
	labels := Labels(reg, ComponentBackup)
	pod := backupPod(reg, in, BackupContainerName, registryconfig.BackupArgs(registryconfig.ConfigPath, registryconfig.TerminationMessagePath), b.Destination)
	return &batchv1.CronJob{
		TypeMeta:   typeMeta("batch/v1", "CronJob"),
		ObjectMeta: objectMeta(reg, BackupCronJobName(reg), ComponentBackup),
		Spec: batchv1.CronJobSpec{
			Schedule:                   b.Schedule,
			Suspend:                    ptr(b.Suspend),
			ConcurrencyPolicy:          batchv1.ForbidConcurrent,
			StartingDeadlineSeconds:    ptr(int64(backupStartingDeadline)),
			SuccessfulJobsHistoryLimit: ptr(int32(BackupHistoryLimit)),
			FailedJobsHistoryLimit:     ptr(int32(BackupHistoryLimit)),
			JobTemplate: batchv1.JobTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: batchv1.JobSpec{
					BackoffLimit:          ptr(int32(1)),
					ActiveDeadlineSeconds: ptr(int64(BackupActiveDeadline)),
					Template:              corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: pod},
				},
			},
		},
	}
}

// RestoreJob writes spec.restore's backup into the Registry's storage; nil without it. It
// runs before the Registry's Deployment exists, so it is not tied to a serving pod's node.
func RestoreJob(reg *v1alpha1.Registry, in Inputs) *batchv1.Job {
	r := reg.Spec.Restore
	if r == nil {
		return nil
	}
	labels := Labels(reg, ComponentRestore)
	pod := backupPod(reg, in, RestoreContainerName, registryconfig.RestoreArgs(registryconfig.ConfigPath, registryconfig.TerminationMessagePath), r.From)
	pod.Affinity = nil
	return &batchv1.Job{
		TypeMeta:   typeMeta("batch/v1", "Job"),
		ObjectMeta: objectMeta(reg, RestoreJobName(reg), ComponentRestore),
		Spec: batchv1.JobSpec{
			BackoffLimit:          ptr(int32(2)),
			ActiveDeadlineSeconds: ptr(int64(BackupActiveDeadline)),
			Template:              corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: pod},
		},
	}
}
