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

// Volume names in registry and GC pods.
const (
	volConfig = "config"
	volData   = "data"
	volTLS    = "tls"
	volUsers  = "users"
	volToken  = "token-keys"
	volLDAP   = "ldap"
	volOIDC   = "oidc"
	volRobots = "robots"
	volEvents = "events-token"
	volGCS    = "gcs"
	volTmp    = "tmp"
)

// RunAsUser is the non-root UID (and fsGroup) of registry and GC pods.
const RunAsUser int64 = 65532

// TerminationGracePeriodSeconds leaves the registry time to drain in-flight pushes.
const TerminationGracePeriodSeconds int64 = 60

// Deployment runs the registry pods.
func Deployment(reg *v1alpha1.Registry, in Inputs) *appsv1.Deployment {
	replicas := reg.GetReplicas()
	tmpl := podTemplate(reg, in)
	d := &appsv1.Deployment{
		TypeMeta:   typeMeta("apps/v1", "Deployment"),
		ObjectMeta: objectMeta(reg, reg.ServiceName(), ComponentServer),
		Spec: appsv1.DeploymentSpec{
			Replicas:             &replicas,
			Selector:             &metav1.LabelSelector{MatchLabels: SelectorLabels(reg)},
			Template:             tmpl,
			RevisionHistoryLimit: ptr(int32(5)),
			Strategy:             strategy(reg),
		},
	}
	return d
}

// strategy rolls shared-storage registries without downtime; a volume only one node can
// mount (or per-pod scratch space) must be released before the new pod starts.
func strategy(reg *v1alpha1.Registry) appsv1.DeploymentStrategy {
	if !reg.SharedStorage() {
		return appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType}
	}
	return appsv1.DeploymentStrategy{
		Type: appsv1.RollingUpdateDeploymentStrategyType,
		RollingUpdate: &appsv1.RollingUpdateDeployment{
			MaxUnavailable: ptr(intstr.FromInt32(0)),
			MaxSurge:       ptr(intstr.FromInt32(1)),
		},
	}
}

func podTemplate(reg *v1alpha1.Registry, in Inputs) corev1.PodTemplateSpec {
	labels := Labels(reg, ComponentServer)
	for k, v := range SelectorLabels(reg) {
		labels[k] = v
	}
	scheme := corev1.URISchemeHTTP
	if reg.Spec.TLS != nil {
		scheme = corev1.URISchemeHTTPS
	}
	c := corev1.Container{
		Name:                     ContainerName,
		Image:                    image(reg, in),
		Command:                  []string{registryconfig.Binary},
		Args:                     registryconfig.ServeArgs(registryconfig.ConfigPath),
		Env:                      env(reg, true),
		Ports:                    []corev1.ContainerPort{{Name: PortName, ContainerPort: registryconfig.DefaultPort, Protocol: corev1.ProtocolTCP}, {Name: MetricsPortName, ContainerPort: registryconfig.MetricsPort, Protocol: corev1.ProtocolTCP}},
		Resources:                resources(reg),
		VolumeMounts:             mounts(reg, true),
		SecurityContext:          containerSecurityContext(),
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
		ReadinessProbe: &corev1.Probe{
			ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
				Path: registryconfig.HealthPath, Port: intstr.FromString(PortName), Scheme: scheme,
			}},
			PeriodSeconds: 5, TimeoutSeconds: 3, FailureThreshold: 3,
		},
		// Liveness follows the process only: a storage outage makes pods unready, and
		// restarting them would only stretch the outage once storage is back.
		LivenessProbe: &corev1.Probe{
			ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
				Path: registryconfig.LivenessPath, Port: intstr.FromString(MetricsPortName), Scheme: corev1.URISchemeHTTP,
			}},
			InitialDelaySeconds: 10, PeriodSeconds: 10, TimeoutSeconds: 5, FailureThreshold: 6,
		},
	}
	spec := corev1.PodSpec{
		ServiceAccountName: reg.ServiceName(),
		// An API token only when the pods review tokens and access (bound to
		// system:auth-delegator and nothing else).
		AutomountServiceAccountToken:  ptr(reg.UsesKubernetesAuth()),
		Containers:                    []corev1.Container{c},
		Volumes:                       volumes(reg, true),
		SecurityContext:               podSecurityContext(),
		TerminationGracePeriodSeconds: ptr(TerminationGracePeriodSeconds),
		NodeSelector:                  reg.Spec.NodeSelector,
		Tolerations:                   reg.Spec.Tolerations,
		Affinity:                      reg.Spec.Affinity,
		PriorityClassName:             reg.Spec.PriorityClassName,
		ImagePullSecrets:              reg.Spec.ImagePullSecrets,
		EnableServiceLinks:            ptr(false),
	}
	if reg.GetReplicas() > 1 && reg.Spec.Affinity == nil {
		spec.TopologySpreadConstraints = spreadConstraints(reg)
	}
	cacheVols, cacheMounts := cacheVolumes(reg)
	spec.Volumes = append(spec.Volumes, cacheVols...)
	spec.Containers[0].VolumeMounts = append(spec.Containers[0].VolumeMounts, cacheMounts...)
	if in.EventsURL != "" {
		// A token good only for the operator's events endpoint (see registryconfig.Events).
		spec.Volumes = append(spec.Volumes, corev1.Volume{Name: volEvents, VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
			Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{
				Audience: registryconfig.EventsAudience, ExpirationSeconds: ptr(registryconfig.EventsTokenSeconds),
				Path: registryconfig.EventsTokenFile,
			}}},
		}}})
		spec.Containers[0].VolumeMounts = append(spec.Containers[0].VolumeMounts,
			corev1.VolumeMount{Name: volEvents, MountPath: registryconfig.EventsTokenDir, ReadOnly: true})
	}
	annotations := map[string]string{
		"kubectl.kubernetes.io/default-container": ContainerName,
	}
	if in.InputsHash != "" {
		annotations[AnnotationInputs] = in.InputsHash
	}
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: annotations},
		Spec:       spec,
	}
}

func spreadConstraints(reg *v1alpha1.Registry) []corev1.TopologySpreadConstraint {
	sel := &metav1.LabelSelector{MatchLabels: SelectorLabels(reg)}
	return []corev1.TopologySpreadConstraint{
		{MaxSkew: 1, TopologyKey: corev1.LabelHostname, WhenUnsatisfiable: corev1.ScheduleAnyway, LabelSelector: sel},
		{MaxSkew: 1, TopologyKey: corev1.LabelTopologyZone, WhenUnsatisfiable: corev1.ScheduleAnyway, LabelSelector: sel},
	}
}

func image(reg *v1alpha1.Registry, in Inputs) string {
	if reg.Spec.Image != "" {
		return reg.Spec.Image
	}
	return in.Image
}

// Ephemeral storage a registry or GC container uses besides its data: the /tmp emptyDir
// (capped at TmpSizeLimit) and its logs. The root filesystem is read-only.
var (
	TmpSizeLimit            = resource.MustParse("1Gi")
	EphemeralStorageRequest = resource.MustParse("64Mi")
	EphemeralStorageLimit   = resource.MustParse("2Gi")
)

// resources are spec.resources (or defaults), plus ephemeral-storage requests and limits
// unless the spec sets them: a pod without them can fill the node's disk unnoticed, and the
// kubelet evicts pods without requests first under disk pressure. With emptyDir storage the
// images themselves are ephemeral storage, so the limit grows by its sizeLimit, or is left
// unset when the emptyDir has none (a limit would evict the registry as images arrive).
func resources(reg *v1alpha1.Registry) corev1.ResourceRequirements {
	rr := corev1.ResourceRequirements{
		Requests: corev1.ResourceList{
			corev1.ResourceCPU:    resource.MustParse("100m"),
			corev1.ResourceMemory: resource.MustParse("128Mi"),
		},
		Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1Gi")},
	}
	if reg.Spec.Resources != nil {
		rr = *reg.Spec.Resources.DeepCopy()
	}
	if rr.Requests == nil {
		rr.Requests = corev1.ResourceList{}
	}
	if rr.Limits == nil {
		rr.Limits = corev1.ResourceList{}
	}
	limit, limited := EphemeralStorageLimit.DeepCopy(), true
	if ed := reg.Spec.Storage.EmptyDir; ed != nil {
		if ed.SizeLimit == nil {
			limited = false
		} else {
			limit.Add(*ed.SizeLimit)
		}
	}
	if _, ok := rr.Requests[corev1.ResourceEphemeralStorage]; !ok {
		rr.Requests[corev1.ResourceEphemeralStorage] = EphemeralStorageRequest
		if l, ok := rr.Limits[corev1.ResourceEphemeralStorage]; ok && l.Cmp(EphemeralStorageRequest) < 0 {
			rr.Requests[corev1.ResourceEphemeralStorage] = l
		}
	}
	if _, ok := rr.Limits[corev1.ResourceEphemeralStorage]; !ok && limited {
		rr.Limits[corev1.ResourceEphemeralStorage] = limit
	}
	return rr
}

func podSecurityContext() *corev1.PodSecurityContext {
	return &corev1.PodSecurityContext{
		RunAsNonRoot:        ptr(true),
		RunAsUser:           ptr(RunAsUser),
		RunAsGroup:          ptr(RunAsUser),
		FSGroup:             ptr(RunAsUser),
		FSGroupChangePolicy: ptr(corev1.FSGroupChangeOnRootMismatch),
		SeccompProfile:      &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
}

func containerSecurityContext() *corev1.SecurityContext {
	return &corev1.SecurityContext{
		AllowPrivilegeEscalation: ptr(false),
		ReadOnlyRootFilesystem:   ptr(true),
		RunAsNonRoot:             ptr(true),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
}

// env passes credentials from Secrets; serving pods also get the shared HTTP secret.
func env(reg *v1alpha1.Registry, serving bool) []corev1.EnvVar {
	var out []corev1.EnvVar
	if serving {
		out = append(out, secretEnv(registryconfig.EnvHTTPSecret, reg.HTTPSecretName(), registryconfig.HTTPSecretKey))
	}
	st := reg.Spec.Storage
	switch {
	case st.S3 != nil && st.S3.CredentialsSecretRef != nil:
		out = append(out,
			secretEnv(registryconfig.EnvS3AccessKeyID, st.S3.CredentialsSecretRef.Name, registryconfig.S3AccessKeyIDKey),
			secretEnv(registryconfig.EnvS3SecretAccessKey, st.S3.CredentialsSecretRef.Name, registryconfig.S3SecretAccessKeyKey))
	case st.Azure != nil && st.Azure.CredentialsSecretRef != nil:
		out = append(out, secretEnv(registryconfig.EnvAzureAccountKey, st.Azure.CredentialsSecretRef.Name, registryconfig.AzureAccountKeyKey))
	}
	return out
}

func secretEnv(name, secret, key string) corev1.EnvVar {
	return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
		LocalObjectReference: corev1.LocalObjectReference{Name: secret}, Key: key,
	}}}
}

// volumes of a registry pod (serving) or a GC pod (!serving: no certificate, no users).
func volumes(reg *v1alpha1.Registry, serving bool) []corev1.Volume {
	vols := []corev1.Volume{
		{Name: volConfig, VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: reg.ConfigMapName()},
		}}},
		{Name: volTmp, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{SizeLimit: ptr(TmpSizeLimit)}}},
	}
	st := reg.Spec.Storage
	switch {
	case st.Filesystem != nil:
		vols = append(vols, corev1.Volume{Name: volData, VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: reg.PVCName()},
		}})
	case st.EmptyDir != nil:
		vols = append(vols, corev1.Volume{Name: volData, VolumeSource: corev1.VolumeSource{
			EmptyDir: &corev1.EmptyDirVolumeSource{SizeLimit: st.EmptyDir.SizeLimit},
		}})
	case st.GCS != nil && st.GCS.CredentialsSecretRef != nil:
		vols = append(vols, corev1.Volume{Name: volGCS, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
			SecretName: st.GCS.CredentialsSecretRef.Name,
			Items:      []corev1.KeyToPath{{Key: registryconfig.GCSKeyJSONKey, Path: registryconfig.GCSKeyFile}},
		}}})
	}
	if !serving {
		return vols
	}
	if n := reg.TLSSecretName(); n != "" {
		vols = append(vols, corev1.Volume{Name: volTLS, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: n}}})
	}
	if a := reg.Spec.Auth; a != nil {
		if a.UsersSecretRef != nil {
			vols = append(vols, corev1.Volume{Name: volUsers, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: a.UsersSecretRef.Name}}})
		}
		vols = append(vols, corev1.Volume{Name: volToken, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
			SecretName: reg.TokenKeysSecretName(),
			Items:      []corev1.KeyToPath{{Key: registryconfig.TokenKeysKey, Path: registryconfig.TokenKeysKey}},
		}}}, corev1.Volume{Name: volRobots, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
			SecretName: reg.RobotsSecretName(),
			Items:      []corev1.KeyToPath{{Key: registryconfig.RobotsKey, Path: registryconfig.RobotsKey}},
		}}})
		if l := a.LDAP; l != nil {
			vols = append(vols, ldapVolume(l))
		}
		if o := a.OIDC; o != nil && o.CA != nil {
			vols = append(vols, corev1.Volume{Name: volOIDC, VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
				Sources: []corev1.VolumeProjection{caProjection(o.CA, registryconfig.OIDCCAFile)}}}})
		}
	}
	return vols
}

// caProjection projects a CA bundle key (Secret or ConfigMap, optional) as path.
func caProjection(ca *v1alpha1.CABundleSource, path string) corev1.VolumeProjection {
	if ca.SecretKeyRef != nil {
		return corev1.VolumeProjection{Secret: &corev1.SecretProjection{
			LocalObjectReference: corev1.LocalObjectReference{Name: ca.SecretKeyRef.Name},
			Items:                []corev1.KeyToPath{{Key: ca.SecretKeyRef.Key, Path: path}}, Optional: ptr(true)}}
	}
	return corev1.VolumeProjection{ConfigMap: &corev1.ConfigMapProjection{
		LocalObjectReference: corev1.LocalObjectReference{Name: ca.ConfigMapKeyRef.Name},
		Items:                []corev1.KeyToPath{{Key: ca.ConfigMapKeyRef.Key, Path: path}}, Optional: ptr(true)}}
}

// ldapVolume projects the LDAP bind password and CA bundle into one directory. The sources
// are optional: a missing Secret makes LDAP logins fail (and AuthReady say why) without
// keeping the pods, and with them the other providers, from starting.
func ldapVolume(l *v1alpha1.LDAPSpec) corev1.Volume {
	sources := []corev1.VolumeProjection{{Secret: &corev1.SecretProjection{
		LocalObjectReference: corev1.LocalObjectReference{Name: l.BindPasswordSecretRef.Name},
		Items:                []corev1.KeyToPath{{Key: l.BindPasswordSecretRef.Key, Path: registryconfig.LDAPBindPasswordFile}},
		Optional:             ptr(true),
	}}}
	if l.CA != nil {
		sources = append(sources, caProjection(l.CA, registryconfig.LDAPCAFile))
	}
	return corev1.Volume{Name: volLDAP, VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: sources}}}
}

func mounts(reg *v1alpha1.Registry, serving bool) []corev1.VolumeMount {
	ms := []corev1.VolumeMount{
		{Name: volConfig, MountPath: registryconfig.ConfigDir, ReadOnly: true},
		{Name: volTmp, MountPath: registryconfig.TmpDir},
	}
	st := reg.Spec.Storage
	switch {
	case st.Filesystem != nil, st.EmptyDir != nil:
		ms = append(ms, corev1.VolumeMount{Name: volData, MountPath: registryconfig.DataDir})
	case st.GCS != nil && st.GCS.CredentialsSecretRef != nil:
		ms = append(ms, corev1.VolumeMount{Name: volGCS, MountPath: registryconfig.GCSDir, ReadOnly: true})
	}
	if !serving {
		return ms
	}
	if reg.TLSSecretName() != "" {
		ms = append(ms, corev1.VolumeMount{Name: volTLS, MountPath: registryconfig.TLSDir, ReadOnly: true})
	}
	if a := reg.Spec.Auth; a != nil {
		if a.UsersSecretRef != nil {
			ms = append(ms, corev1.VolumeMount{Name: volUsers, MountPath: registryconfig.UsersDir, ReadOnly: true})
		}
		ms = append(ms, corev1.VolumeMount{Name: volToken, MountPath: registryconfig.TokenDir, ReadOnly: true},
			corev1.VolumeMount{Name: volRobots, MountPath: registryconfig.RobotsDir, ReadOnly: true})
		if a.LDAP != nil {
			ms = append(ms, corev1.VolumeMount{Name: volLDAP, MountPath: registryconfig.LDAPDir, ReadOnly: true})
		}
		if a.OIDC != nil && a.OIDC.CA != nil {
			ms = append(ms, corev1.VolumeMount{Name: volOIDC, MountPath: registryconfig.OIDCDir, ReadOnly: true})
		}
	}
	return ms
}

func typeMeta(apiVersion, kind string) metav1.TypeMeta {
	return metav1.TypeMeta{APIVersion: apiVersion, Kind: kind}
}
