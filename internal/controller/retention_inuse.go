package controller

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/distribution/reference"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dockyard-dev/dockyard/api/v1alpha1"
	"github.com/dockyard-dev/dockyard/internal/registryconfig"
)

// podListPage bounds one page of the cluster-wide Pod list a run reads.
const podListPage = 500

// imagesInUse lists the Registry's images the cluster's pods use: the digests of the
// images running containers were started from (their image IDs) and the references in the
// pods' specs (tags of pods not started yet, or digests). One paged, cluster-wide Pod list
// per run, straight from the API server (Pods are not cached).
func (r *RetentionPolicyReconciler) imagesInUse(ctx context.Context, reg *v1alpha1.Registry) ([]registryconfig.ImageInUse, error) {
	hosts := registryHostSet(reg, r.ClusterDomain)
	seen := map[registryconfig.ImageInUse]bool{}
	var out []registryconfig.ImageInUse
	add := func(ref string) {
		if u, ok := imageOf(ref, hosts); ok && !seen[u] {
			seen[u] = true
			out = append(out, u)
		}
	}
	opts := []client.ListOption{client.Limit(podListPage)}
	for {
		var pods corev1.PodList
		if err := r.APIReader.List(ctx, &pods, opts...); err != nil {
			return nil, fmt.Errorf("list Pods (images in use): %w", err)
		}
		for i := range pods.Items {
			p := &pods.Items[i]
			if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
				continue // finished pods are not restarted
			}
			for _, cs := range [][]corev1.Container{p.Spec.InitContainers, p.Spec.Containers} {
				for _, c := range cs {
					add(c.Image)
				}
			}
			for _, c := range p.Spec.EphemeralContainers {
				add(c.Image)
			}
			for _, st := range [][]corev1.ContainerStatus{p.Status.InitContainerStatuses, p.Status.ContainerStatuses, p.Status.EphemeralContainerStatuses} {
				for _, s := range st {
					add(s.ImageID)
				}
			}
		}
		if pods.Continue == "" {
			break
		}
		opts = []client.ListOption{client.Limit(podListPage), client.Continue(pods.Continue)}
	}
	slices.SortFunc(out, func(a, b registryconfig.ImageInUse) int {
		return strings.Compare(a.Repository+"@"+a.Digest+":"+a.Tag, b.Repository+"@"+b.Digest+":"+b.Tag)
	})
	return out, nil
}

// registryHostSet are the names pods reach the Registry by (Registry.ImageHosts).
func registryHostSet(reg *v1alpha1.Registry, clusterDomain string) map[string]bool {
	hosts := map[string]bool{}
	for _, h := range reg.ImageHosts(clusterDomain) {
		hosts[h] = true
	}
	return hosts
}

// imageOf reads a container image reference or image ID ("docker-pullable://" and
// "docker://" prefixes allowed) and returns it when it names one of hosts.
func imageOf(ref string, hosts map[string]bool) (registryconfig.ImageInUse, bool) {
	ref = strings.TrimPrefix(strings.TrimPrefix(ref, "docker-pullable://"), "docker://")
	named, err := reference.ParseNamed(ref)
	if err != nil || !hosts[reference.Domain(named)] {
		return registryconfig.ImageInUse{}, false
	}
	u := registryconfig.ImageInUse{Repository: reference.Path(named)}
	switch n := named.(type) {
	case reference.Canonical:
		u.Digest = n.Digest().String()
	case reference.Tagged:
		u.Tag = n.Tag()
	default:
		u.Tag = "latest"
	}
	return u, true
}
