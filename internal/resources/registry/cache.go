package registry

import (
	"strconv"

	corev1 "k8s.io/api/core/v1"

	"github.com/dockyard-dev/dockyard/api/v1alpha1"
	"github.com/dockyard-dev/dockyard/internal/registryconfig"
)

// cacheConfig renders spec.pullThroughCache: upstream i's credentials and CA are files in
// registryconfig.CacheDir/<i>/ (see cacheVolumes); no secret value is in the config.
func cacheConfig(reg *v1alpha1.Registry) *registryconfig.Cache {
	spec := reg.Spec.PullThroughCache
	if spec == nil {
		return nil
	}
	c := &registryconfig.Cache{}
	for i, u := range spec.Upstreams {
		dir := registryconfig.CacheDir + "/" + strconv.Itoa(i)
		cu := registryconfig.CacheUpstream{Prefix: u.Prefix, URL: u.URL}
		if u.CredentialsSecretRef != nil {
			cu.CredentialsDir = dir
		}
		if u.CABundle != nil {
			cu.CAFile = dir + "/ca.crt"
		}
		if u.TagTTL != nil {
			cu.TagTTL.Duration = u.TagTTL.Duration
		}
		c.Upstreams = append(c.Upstreams, cu)
	}
	return c
}

// cacheVolumes mounts each upstream's credentials Secret (its keys username and
// password, or .dockerconfigjson) and CA bundle at registryconfig.CacheDir/<i>/. Both are
// optional in the volume, so a missing Secret fails fetches from that upstream with a
// message naming it instead of keeping the pods from starting; the registry re-reads them.
func cacheVolumes(reg *v1alpha1.Registry) ([]corev1.Volume, []corev1.VolumeMount) {
	spec := reg.Spec.PullThroughCache
	if spec == nil {
		return nil, nil
	}
	var vols []corev1.Volume
	var mounts []corev1.VolumeMount
	for i, u := range spec.Upstreams {
		var sources []corev1.VolumeProjection
		if u.CredentialsSecretRef != nil {
			sources = append(sources, corev1.VolumeProjection{Secret: &corev1.SecretProjection{
				LocalObjectReference: corev1.LocalObjectReference{Name: u.CredentialsSecretRef.Name},
				Items: []corev1.KeyToPath{{Key: "username", Path: "username"}, {Key: "password", Path: "password"},
					{Key: corev1.DockerConfigJsonKey, Path: corev1.DockerConfigJsonKey}},
				Optional: ptr(true)}})
		}
		if u.CABundle != nil {
			sources = append(sources, caProjection(u.CABundle, "ca.crt"))
		}
		if len(sources) == 0 {
			continue
		}
		name := "cache-" + strconv.Itoa(i)
		vols = append(vols, corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: sources}}})
		mounts = append(mounts, corev1.VolumeMount{Name: name, MountPath: registryconfig.CacheDir + "/" + strconv.Itoa(i), ReadOnly: true})
	}
	return vols, mounts
}
