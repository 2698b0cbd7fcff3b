//go:build e2e

package e2e

import (
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dockyard-dev/dockyard/api/v1alpha1"
)

// An operator upgrade over an existing Registry: a new manager that renders the same
// objects restarts no registry pod; one that brings a new registry image rolls the pods
// exactly once, and the images pushed before are still there with the same digests.
var _ = Describe("an operator upgrade over an existing Registry", Ordered, Label("upgrade"), func() {
	var ns string
	// The same image under another name: to the operator a different registry image (the
	// Deployment changes), to the node the same bits (no pull).
	newImage := image
	if name := imageName(image); !strings.Contains(name, "/") {
		newImage = "docker.io/library/" + image
	}

	AfterAll(func() { deployOperator(image) })

	It("restarts no pod when nothing changes, rolls once for a new registry image, and loses nothing", func() {
		ns = namespaceWithCA("upgrade")
		aliceUsers(ns)
		Expect(k8s.Create(ctx, aliceRegistry(ns, "upg", func(r *v1alpha1.Registry) {
			r.Spec.GarbageCollection = &v1alpha1.GarbageCollectionSpec{Schedule: "0 3 * * *"}
		}))).To(Succeed())
		run("kubectl", "-n", ns, "wait", "--for=condition=Ready", "registry/upg", "--timeout=300s")
		reg := registryClient(ns, "upg")
		img, err := random.Image(128<<10, 2)
		Expect(err).NotTo(HaveOccurred())
		Eventually(func() error { return remote.Write(reg.ref("team/app:v1"), img, reg.opts("alice", "alice-pw")...) }, shortWait, poll).Should(Succeed())

		dep := &appsv1.Deployment{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "upg"}, dep)).To(Succeed())
		gen := dep.Generation
		podUIDs := func() []string {
			var pods corev1.PodList
			Expect(k8s.List(ctx, &pods, client.InNamespace(ns), client.MatchingLabels{"app.kubernetes.io/instance": "upg", "app.kubernetes.io/component": "registry"})).To(Succeed())
			var uids []string
			for _, p := range pods.Items {
				uids = append(uids, string(p.UID))
			}
			slices.Sort(uids)
			return uids
		}
		before := podUIDs()
		pvc := &corev1.PersistentVolumeClaim{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "upg-data"}, pvc)).To(Succeed())

		By("a new manager that renders the same objects: no registry pod restarts")
		deployOperator(image)
		Consistently(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(dep), dep)).To(Succeed())
			g.Expect(dep.Generation).To(Equal(gen))
			g.Expect(podUIDs()).To(Equal(before))
		}, "20s", poll).Should(Succeed())

		By("a new manager with a new registry image: the pods roll once")
		deployOperator(newImage)
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(dep), dep)).To(Succeed())
			g.Expect(dep.Spec.Template.Spec.Containers[0].Image).To(Equal(newImage))
		}, longWait, poll).Should(Succeed())
		rolled := dep.Generation
		Expect(rolled).To(Equal(gen + 1))
		run("kubectl", "-n", ns, "rollout", "status", "deployment/upg", "--timeout=300s")
		run("kubectl", "-n", ns, "wait", "--for=condition=Ready", "registry/upg", "--timeout=300s")
		Consistently(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(dep), dep)).To(Succeed())
			g.Expect(dep.Generation).To(Equal(rolled), "a second rollout")
		}, "15s", poll).Should(Succeed())
		Expect(podUIDs()).NotTo(Equal(before))
		cj := run("kubectl", "-n", ns, "get", "cronjob", "upg-gc", "-o", "jsonpath={.spec.jobTemplate.spec.template.spec.containers[0].image}")
		Expect(cj).To(Equal(newImage), "the GC job runs the new image too")

		By("the data is still there: same volume, same digest")
		after := &corev1.PersistentVolumeClaim{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "upg-data"}, after)).To(Succeed())
		Expect(after.UID).To(Equal(pvc.UID))
		waitForAPI(reg)
		got, err := remote.Get(reg.ref("team/app:v1"), reg.opts("alice", "alice-pw")...)
		Expect(err).NotTo(HaveOccurred())
		Expect(got.Digest).To(Equal(must(img.Digest())))
	})
})
