package registry

import (
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dockyard-dev/dockyard/api/v1alpha1"
	"github.com/dockyard-dev/dockyard/internal/registryconfig"
)

// GC job limits.
const (
	GCStartingDeadlineSeconds int64 = 3600
	GCActiveDeadlineSeconds   int64 = 6 * 3600
	GCHistoryLimit            int32 = 3
)

// CronJob runs `dockyard registry gc` on spec.garbageCollection.schedule; nil without it.
//
// The job mounts the same storage as the registry and runs while it keeps serving: the
// workload's collector never deletes what was written within the grace period. A
// ReadWriteOnce volume can only be mounted on one node, so the job is then required to
// run on the node of a serving pod (pod affinity); with no replicas running it may run
// anywhere. The job writes its summary to the termination-message path, where the
// operator reads it into status.lastGarbageCollection.
func CronJob(reg *v1alpha1.Registry, in Inputs) *batchv1.CronJob {
	gc := reg.Spec.GarbageCollection
	if gc == nil {
		return nil
	}
	podLabels := Labels(reg, ComponentGC)
	pod := maintenancePod(reg, in, GCContainerName, registryconfig.GCArgs(registryconfig.ConfigPath, registryconfig.TerminationMessagePath))
	return &batchv1.CronJob{
		TypeMeta:   typeMeta("batch/v1", "CronJob"),
		ObjectMeta: objectMeta(reg, reg.CronJobName(), ComponentGC),
		Spec: batchv1.CronJobSpec{
			Schedule:                   gc.Schedule,
			Suspend:                    ptr(gc.Suspend),
			ConcurrencyPolicy:          batchv1.ForbidConcurrent,
			StartingDeadlineSeconds:    ptr(GCStartingDeadlineSeconds),
			SuccessfulJobsHistoryLimit: ptr(GCHistoryLimit),
			FailedJobsHistoryLimit:     ptr(GCHistoryLimit),
			JobTemplate: batchv1.JobTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: Labels(reg, ComponentGC)},
				Spec: batchv1.JobSpec{
					BackoffLimit:          ptr(int32(1)),
					ActiveDeadlineSeconds: ptr(GCActiveDeadlineSeconds),
					Template: corev1.PodTemplateSpec{
						ObjectMeta: metav1.ObjectMeta{Labels: podLabels},
						Spec:       pod,
					},
				},
			},
		},
	}
}

// maintenancePod is the pod of a job that works on the Registry's storage beside the
// serving pods (garbage collection, retention): the same image, config, storage mounts and
// credentials, restricted, writing its summary to the termination-message path. A
// ReadWriteOnce volume can only be mounted on one node, so the pod is then required to run
// on the node of a serving pod (pod affinity); with no replicas running it may run anywhere.
func maintenancePod(reg *v1alpha1.Registry, in Inputs, container string, args []string) corev1.PodSpec {
	c := corev1.Container{
		Name:                     container,
		Image:                    image(reg, in),
		Command:                  []string{registryconfig.Binary},
		Args:                     args,
		Env:                      env(reg, false),
		VolumeMounts:             mounts(reg, false),
		SecurityContext:          containerSecurityContext(),
		TerminationMessagePath:   registryconfig.TerminationMessagePath,
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
		Resources:                resources(reg),
	}
	pod := corev1.PodSpec{
		ServiceAccountName:           reg.ServiceName(),
		AutomountServiceAccountToken: ptr(false),
		RestartPolicy:                corev1.RestartPolicyNever,
		Containers:                   []corev1.Container{c},
		Volumes:                      volumes(reg, false),
		SecurityContext:              podSecurityContext(),
		NodeSelector:                 reg.Spec.NodeSelector,
		Tolerations:                  reg.Spec.Tolerations,
		PriorityClassName:            reg.Spec.PriorityClassName,
		ImagePullSecrets:             reg.Spec.ImagePullSecrets,
		EnableServiceLinks:           ptr(false),
	}
	if reg.Spec.Storage.Filesystem != nil && !reg.SharedStorage() && reg.GetReplicas() > 0 {
		pod.Affinity = &corev1.Affinity{PodAffinity: &corev1.PodAffinity{
			RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{{
				LabelSelector: &metav1.LabelSelector{MatchLabels: SelectorLabels(reg)},
				TopologyKey:   corev1.LabelHostname,
			}},
		}}
	}
	return pod
}
