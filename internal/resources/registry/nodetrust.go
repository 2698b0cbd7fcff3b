package registry

import (
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/dockyard-dev/dockyard/api/v1alpha1"
	"github.com/dockyard-dev/dockyard/internal/registryconfig"
)

// ComponentNodeTrust labels the node-trust DaemonSet and its pods.
const ComponentNodeTrust = "node-trust"

// NodeTrustDaemonSet runs `dockyard registry node-trust` on every node (spec.nodeTrust).
// The pods see only the ca.crt key of the TLS Secret and the certs.d directories; they run
// as root (the directories are root's) with no capability, no privilege escalation, a
// read-only root filesystem and no API token. A rolling update starts the new pod before
// stopping the old one, so a node never lacks the CA.
func NodeTrustDaemonSet(reg *v1alpha1.Registry, in Inputs) *appsv1.DaemonSet {
	nt := reg.Spec.NodeTrust
	selector := map[string]string{LabelName: AppName, LabelInstance: reg.Name, LabelComponent: ComponentNodeTrust}
	args := []string{"registry", "node-trust", "--ca=/ca/ca.crt", "--registry=" + reg.Namespace + "/" + reg.Name,
		"--containerd-dir=" + nt.GetContainerdConfigPath()}
	for _, h := range reg.RegistryHosts(in.ClusterDomain) {
		args = append(args, "--host="+h)
	}
	hostDir := corev1.HostPathDirectoryOrCreate
	volumes := []corev1.Volume{
		{Name: "ca", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
			SecretName: reg.TLSSecretName(),
			Items:      []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}},
		}}},
		{Name: "containerd", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{
			Path: nt.GetContainerdConfigPath(), Type: &hostDir}}},
	}
	// Mounted at the same path as on the host: hosts.toml names the CA by its host path.
	mounts := []corev1.VolumeMount{
		{Name: "ca", MountPath: "/ca", ReadOnly: true},
		{Name: "containerd", MountPath: nt.GetContainerdConfigPath()},
	}
	if nt.CRIOCertsDir != "" {
		args = append(args, "--crio-dir="+nt.CRIOCertsDir)
		volumes = append(volumes, corev1.Volume{Name: "crio", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{
			Path: nt.CRIOCertsDir, Type: &hostDir}}})
		mounts = append(mounts, corev1.VolumeMount{Name: "crio", MountPath: nt.CRIOCertsDir})
	}
	tolerations := nt.Tolerations
	if len(tolerations) == 0 {
		tolerations = []corev1.Toleration{{Operator: corev1.TolerationOpExists}}
	}
	labels := Labels(reg, ComponentNodeTrust)
	c := corev1.Container{
		Name:    "node-trust",
		Image:   image(reg, in),
		Command: []string{registryconfig.Binary},
		Args:    args,
		Env: []corev1.EnvVar{{Name: "POD_UID", ValueFrom: &corev1.EnvVarSource{
			FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.uid"}}}},
		VolumeMounts: mounts,
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("5m"), corev1.ResourceMemory: resource.MustParse("16Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")},
		},
		SecurityContext: &corev1.SecurityContext{
			RunAsUser:                ptr(int64(0)),
			RunAsNonRoot:             ptr(false),
			AllowPrivilegeEscalation: ptr(false),
			ReadOnlyRootFilesystem:   ptr(true),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
	}
	return &appsv1.DaemonSet{
		TypeMeta:   typeMeta("apps/v1", "DaemonSet"),
		ObjectMeta: objectMeta(reg, reg.NodeTrustName(), ComponentNodeTrust),
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: selector},
			UpdateStrategy: appsv1.DaemonSetUpdateStrategy{Type: appsv1.RollingUpdateDaemonSetStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDaemonSet{MaxSurge: ptr(intstr.FromInt32(1)), MaxUnavailable: ptr(intstr.FromInt32(0))}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: mergeLabels(labels, selector)},
				Spec: corev1.PodSpec{
					ServiceAccountName:            reg.ServiceName(),
					AutomountServiceAccountToken:  ptr(false),
					Containers:                    []corev1.Container{c},
					Volumes:                       volumes,
					NodeSelector:                  nt.NodeSelector,
					Tolerations:                   tolerations,
					PriorityClassName:             reg.Spec.PriorityClassName,
					ImagePullSecrets:              reg.Spec.ImagePullSecrets,
					EnableServiceLinks:            ptr(false),
					TerminationGracePeriodSeconds: ptr(int64(30)),
				},
			},
		},
	}
}

func mergeLabels(a, b map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}
