package controller_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	dist "github.com/distribution/distribution/v3"
	_ "github.com/distribution/distribution/v3/manifest/ocischema"
	dstorage "github.com/distribution/distribution/v3/registry/storage"
	"github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
	"github.com/distribution/reference"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dockyard-dev/dockyard/api/v1alpha1"
	"github.com/dockyard-dev/dockyard/internal/registryconfig"
	resources "github.com/dockyard-dev/dockyard/internal/resources/registry"
	"github.com/dockyard-dev/dockyard/internal/workload"
	"github.com/dockyard-dev/dockyard/internal/workload/layout"
)

// seedImages writes one small image per tag into repository repo of the registry storage
// at root, through distribution's own storage API, each pushed (and tagged) age ago, the
// first the oldest.
func seedImages(root, repo string, tags ...string) map[string]string {
	GinkgoHelper()
	bg := context.Background()
	driver := filesystem.New(filesystem.DriverParameters{RootDirectory: root, MaxThreads: 10})
	ns, err := dstorage.NewRegistry(bg, driver)
	Expect(err).NotTo(HaveOccurred())
	named, err := reference.WithName(repo)
	Expect(err).NotTo(HaveOccurred())
	r, err := ns.Repository(bg, named)
	Expect(err).NotTo(HaveOccurred())
	ms, err := r.Manifests(bg)
	Expect(err).NotTo(HaveOccurred())
	digests := map[string]string{}
	for i, tag := range tags {
		cfg, err := r.Blobs(bg).Put(bg, v1.MediaTypeImageConfig, []byte(fmt.Sprintf(`{"architecture":"amd64","os":"linux","tag":%q}`, tag)))
		Expect(err).NotTo(HaveOccurred())
		layer, err := r.Blobs(bg).Put(bg, v1.MediaTypeImageLayer, bytes.Repeat([]byte(tag), 1000))
		Expect(err).NotTo(HaveOccurred())
		man := v1.Manifest{MediaType: v1.MediaTypeImageManifest, Config: v1.Descriptor{MediaType: v1.MediaTypeImageConfig, Digest: cfg.Digest, Size: cfg.Size},
			Layers: []v1.Descriptor{{MediaType: v1.MediaTypeImageLayer, Digest: layer.Digest, Size: layer.Size}}}
		man.SchemaVersion = 2
		raw, _ := json.Marshal(man)
		m, _, err := dist.UnmarshalManifest(v1.MediaTypeImageManifest, raw)
		Expect(err).NotTo(HaveOccurred())
		d, err := ms.Put(bg, m)
		Expect(err).NotTo(HaveOccurred())
		Expect(r.Tags(bg).Tag(bg, tag, dist.Descriptor{Digest: d, MediaType: v1.MediaTypeImageManifest})).To(Succeed())
		digests[tag] = d.String()
		at := time.Now().Add(-48*time.Hour + time.Duration(i)*time.Hour)
		for _, p := range []string{
			filepath.Join(root, layout.RevisionLinkPath(repo, d)),
			filepath.Join(root, layout.RepositoryPath(repo), "_manifests", "tags", tag, "current", "link"),
		} {
			Expect(os.Chtimes(p, at, at)).To(Succeed())
		}
	}
	return digests
}

// tagsIn lists the tags of repo in the storage at root.
func tagsIn(root, repo string) []string {
	GinkgoHelper()
	entries, err := os.ReadDir(filepath.Join(root, layout.RepositoryPath(repo), "_manifests", "tags"))
	Expect(err).NotTo(HaveOccurred())
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

// runRetentionJob plays the kubelet for a run Job: it runs the Job's own command line, in
// this process, against the registry storage at root (the real planner and executor), and
// records the pod's termination message and the Job's completion as the kubelet and the
// Job controller would.
func runRetentionJob(ns, name, root string) registryconfig.RetentionSummary {
	GinkgoHelper()
	job := get(ns, name, &batchv1.Job{})
	c := job.Spec.Template.Spec.Containers[0]
	Expect(c.Command).To(Equal([]string{registryconfig.Binary}))
	args := append([]string(nil), c.Args[1:]...) // after "registry"
	dir := GinkgoT().TempDir()
	cfg := filepath.Join(dir, "config.yaml")
	Expect(os.WriteFile(cfg, []byte(fmt.Sprintf("apiVersion: %s\nhttp: {addr: \":5000\"}\nstorage: {filesystem: {rootDirectory: %q}}\n", registryconfig.APIVersion, root)), 0o600)).To(Succeed())
	summary := filepath.Join(dir, "termination-log")
	for i := range args {
		switch args[i] {
		case "--config":
			args[i+1] = cfg
		case "--summary-file":
			args[i+1] = summary
		}
	}
	err := workload.Run(context.Background(), args, &bytes.Buffer{}, GinkgoWriter)
	msg, _ := os.ReadFile(summary)
	var s registryconfig.RetentionSummary
	Expect(json.Unmarshal(msg, &s)).To(Succeed())

	finishJob(job, c.Name, c.Image, err == nil, string(msg), time.Second)
	return s
}

func newPolicy(ns, name, registry string, mutate ...func(*v1alpha1.RetentionPolicy)) *v1alpha1.RetentionPolicy {
	p := &v1alpha1.RetentionPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1alpha1.RetentionPolicySpec{
			RegistryRef:  v1alpha1.LocalRegistryReference{Name: registry},
			Repositories: []string{"team-a/**"},
			Rules: []v1alpha1.RetentionRule{
				{Name: "last-main", Tags: &v1alpha1.TagSelector{Glob: "main-*"}, KeepLast: ptrTo(int32(2))},
				{Name: "releases", Tags: &v1alpha1.TagSelector{Semver: ">=1.0.0"}},
			},
		},
	}
	for _, m := range mutate {
		m(p)
	}
	return p
}

func ptrTo[T any](v T) *T { return &v }

func policyCondition(g Gomega, ns, name, t string) *metav1.Condition {
	p := &v1alpha1.RetentionPolicy{}
	g.Expect(k8sClient.Get(ctx, key(ns, name), p)).To(Succeed())
	return meta.FindStatusCondition(p.Status.Conditions, t)
}

func expectPolicyCondition(ns, name, t string, status metav1.ConditionStatus, reason string) *metav1.Condition {
	GinkgoHelper()
	var c *metav1.Condition
	Eventually(func(g Gomega) {
		c = policyCondition(g, ns, name, t)
		g.Expect(c).NotTo(BeNil(), "condition %s", t)
		g.Expect(c.Status).To(Equal(status), "condition %s: %s/%s", t, c.Reason, c.Message)
		g.Expect(c.Reason).To(Equal(reason), "condition %s: %s", t, c.Message)
	}, timeout, interval).Should(Succeed())
	return c
}

// activeJob waits for the policy's run in progress and returns its name.
func activeJob(ns, policy string, not ...string) string {
	GinkgoHelper()
	var name string
	Eventually(func(g Gomega) {
		p := &v1alpha1.RetentionPolicy{}
		g.Expect(k8sClient.Get(ctx, key(ns, policy), p)).To(Succeed())
		g.Expect(p.Status.ActiveJob).NotTo(BeEmpty())
		g.Expect(not).NotTo(ContainElement(p.Status.ActiveJob))
		name = p.Status.ActiveJob
	}, timeout, interval).Should(Succeed())
	return name
}

func readyRegistry(ns, name string, opts ...registryOption) {
	GinkgoHelper()
	Expect(k8sClient.Create(ctx, newRegistry(ns, name, opts...))).To(Succeed())
	markPVCBound(ns, name+"-data")
	markDeploymentAvailable(ns, name)
	expectCondition(ns, name, v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonAvailable)
}

func requestRun(ns, name, value string) {
	GinkgoHelper()
	p := get(ns, name, &v1alpha1.RetentionPolicy{})
	patch := client.MergeFrom(p.DeepCopy())
	if p.Annotations == nil {
		p.Annotations = map[string]string{}
	}
	p.Annotations[v1alpha1.RetentionRunAnnotation] = value
	Expect(k8sClient.Patch(ctx, p, patch)).To(Succeed())
}

var _ = Describe("RetentionPolicy", func() {
	var ns, root string
	BeforeEach(func() {
		ns = newNamespace()
		root = GinkgoT().TempDir()
	})

	It("plans in DryRun, shows the plan in status, and deletes exactly that when enforced on request", func() {
		readyRegistry(ns, "r", withGC("@daily"))
		digests := seedImages(root, "team-a/app", "main-1", "main-2", "main-3", "main-4", "main-5", "v1.0.0", "nightly")
		Expect(k8sClient.Create(ctx, newPolicy(ns, "ci", "r", func(p *v1alpha1.RetentionPolicy) {
			p.Spec.Safety.MaxDeletionPercent = ptrTo(int32(60)) // 4 of 7
			p.Spec.CollectGarbage = true
		}))).To(Succeed())

		By("a new policy plans at once, as a restricted Job beside the registry, deleting nothing")
		job := activeJob(ns, "ci")
		j := get(ns, job, &batchv1.Job{})
		Expect(j.Annotations[resources.AnnotationRetentionEnforce]).To(Equal("false"))
		Expect(j.OwnerReferences).To(HaveLen(1))
		Expect(j.OwnerReferences[0].Kind).To(Equal("RetentionPolicy"))
		pod := j.Spec.Template.Spec
		Expect(*pod.Containers[0].SecurityContext.ReadOnlyRootFilesystem).To(BeTrue())
		Expect(*pod.AutomountServiceAccountToken).To(BeFalse())
		Expect(pod.Volumes).To(ContainElement(HaveField("Name", "data")))
		expectPolicyCondition(ns, "ci", v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonRunning)
		sum := runRetentionJob(ns, job, root)
		Expect(sum.Result).To(Equal(registryconfig.RetentionPlanned))
		c := expectPolicyCondition(ns, "ci", v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonPlanned)
		Expect(c.Message).To(ContainSubstring("4 of 7 artifacts in scope would be deleted"))
		p := get(ns, "ci", &v1alpha1.RetentionPolicy{})
		plan := p.Status.Plan
		Expect(plan).NotTo(BeNil())
		Expect(plan.JobName).To(Equal(job))
		Expect(plan.Artifacts).To(Equal(int64(7)))
		Expect(plan.ArtifactsToDelete).To(Equal(int64(4)))
		Expect(plan.TagsToRemove).To(Equal(int64(4)))
		Expect(plan.ReclaimableBytes).To(BeNumerically(">", 4*6000))
		Expect(plan.Reclaimable).To(HaveSuffix("KiB"))
		Expect(plan.PlanHash).To(Equal(sum.PlanHash))
		Expect(plan.Sample).To(HaveLen(4))
		Expect(plan.Sample[0].Action).To(Equal("Delete"))
		Expect(plan.Sample).To(ContainElement(And(HaveField("Digest", digests["main-1"]), HaveField("Reason", ContainSubstring("last-main: number 5 by push time, keepLast 2")))))
		Expect(plan.Sample).To(ContainElement(And(HaveField("Digest", digests["nightly"]), HaveField("Reason", "no rule's tag selector matches nightly"))))
		Expect(p.Status.ObservedGeneration).To(Equal(p.Generation))
		Expect(p.Status.LastEnforcement).To(BeNil())
		Expect(tagsIn(root, "team-a/app")).To(HaveLen(7))

		By("a request in DryRun plans again; switching to Enforce plans for the new spec and still deletes nothing")
		requestRun(ns, "ci", "1")
		job2 := activeJob(ns, "ci", job)
		Expect(runRetentionJob(ns, job2, root).Result).To(Equal(registryconfig.RetentionPlanned))
		Eventually(func(g Gomega) {
			g.Expect(k8sClient.Get(ctx, key(ns, "ci"), p)).To(Succeed())
			g.Expect(p.Status.LastRunJob).To(Equal(job2))
			g.Expect(p.Status.LastHandledRunRequest).To(Equal("1"))
		}, timeout, interval).Should(Succeed())
		// Mode and a run request in one change: the new spec is planned first, and the
		// requested (enforced) run follows that plan.
		patch := client.MergeFrom(p.DeepCopy())
		p.Spec.Mode = v1alpha1.RetentionEnforce
		p.Annotations[v1alpha1.RetentionRunAnnotation] = "2"
		Expect(k8sClient.Patch(ctx, p, patch)).To(Succeed())
		job3 := activeJob(ns, "ci", job, job2)
		Expect(get(ns, job3, &batchv1.Job{}).Annotations[resources.AnnotationRetentionEnforce]).To(Equal("false"))
		Expect(runRetentionJob(ns, job3, root).Result).To(Equal(registryconfig.RetentionPlanned))
		expectPolicyCondition(ns, "ci", v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonPlanned)
		Expect(tagsIn(root, "team-a/app")).To(HaveLen(7))

		By("then the requested run in Enforce deletes what the plan said")
		job4 := activeJob(ns, "ci", job, job2, job3)
		Expect(get(ns, job4, &batchv1.Job{}).Annotations[resources.AnnotationRetentionEnforce]).To(Equal("true"))
		enforced := runRetentionJob(ns, job4, root)
		Expect(enforced.Result).To(Equal(registryconfig.RetentionSucceeded))
		Expect(enforced.PlanHash).To(Equal(plan.PlanHash))
		c = expectPolicyCondition(ns, "ci", v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonEnforced)
		Expect(c.Message).To(ContainSubstring("deleted 4 manifests and removed 4 tags"))
		expectPolicyCondition(ns, "ci", v1alpha1.ConditionDegraded, metav1.ConditionFalse, v1alpha1.ReasonAsExpected)
		Expect(tagsIn(root, "team-a/app")).To(ConsistOf("main-4", "main-5", "v1.0.0"))
		Expect(k8sClient.Get(ctx, key(ns, "ci"), p)).To(Succeed())
		Expect(p.Status.LastEnforcement).NotTo(BeNil())
		Expect(p.Status.LastEnforcement.JobName).To(Equal(job4))
		Expect(p.Status.LastEnforcement.ManifestsDeleted).To(Equal(int64(4)))
		Expect(p.Status.LastEnforcement.Result).To(Equal(registryconfig.RetentionSucceeded))

		By("collectGarbage starts the Registry's garbage collection from its CronJob")
		gcJob := p.Status.LastEnforcement.GarbageCollectionJob
		Expect(gcJob).To(HavePrefix("r-gc-retention-"))
		gj := get(ns, gcJob, &batchv1.Job{})
		Expect(gj.Labels[resources.LabelComponent]).To(Equal(resources.ComponentGC))
		Expect(gj.Spec.Template.Spec.Containers[0].Args).To(ContainElement("gc"))
		By("while the Registry is not Ready the policy says so, and recovers with it")
		Eventually(func() error {
			d := &appsv1.Deployment{}
			if err := k8sClient.Get(ctx, key(ns, "r"), d); err != nil {
				return err
			}
			d.Status = appsv1.DeploymentStatus{ObservedGeneration: d.Generation, Replicas: 1, UpdatedReplicas: 1, UnavailableReplicas: 1,
				Conditions: []appsv1.DeploymentCondition{{Type: appsv1.DeploymentAvailable, Status: corev1.ConditionFalse, Reason: "MinimumReplicasUnavailable", LastUpdateTime: metav1.Now(), LastTransitionTime: metav1.Now()}}}
			return k8sClient.Status().Update(ctx, d)
		}, timeout, interval).Should(Succeed())
		expectPolicyCondition(ns, "ci", v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonRegistryNotReady)
		markDeploymentAvailable(ns, "r")
		c = expectPolicyCondition(ns, "ci", v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonPlanned)
		Expect(c.Message).To(ContainSubstring("artifacts in scope would be deleted"))

		Eventually(func(g Gomega) {
			var evs eventsv1.EventList
			g.Expect(k8sClient.List(ctx, &evs, client.InNamespace(ns))).To(Succeed())
			var reasons []string
			for _, e := range evs.Items {
				if e.Regarding.Name == "ci" {
					reasons = append(reasons, e.Reason)
				}
			}
			g.Expect(reasons).To(ContainElement("RetentionEnforced"))
		}, timeout, interval).Should(Succeed())
	})

	It("stops an enforced run at the safety ceiling, ignores requests while suspended, and says when the Registry is missing", func() {
		Expect(k8sClient.Create(ctx, newPolicy(ns, "orphan", "nope"))).To(Succeed())
		c := expectPolicyCondition(ns, "orphan", v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonRegistryNotFound)
		Expect(c.Message).To(Equal("Registry nope does not exist in namespace " + ns))

		readyRegistry(ns, "r")
		seedImages(root, "team-a/app", "main-1", "main-2", "main-3", "main-4", "main-5")
		Expect(k8sClient.Create(ctx, newPolicy(ns, "strict", "r", func(p *v1alpha1.RetentionPolicy) {
			p.Spec.Mode = v1alpha1.RetentionEnforce
			p.Spec.Rules = []v1alpha1.RetentionRule{{KeepLast: ptrTo(int32(1))}}
		}))).To(Succeed())
		runRetentionJob(ns, activeJob(ns, "strict"), root)
		expectPolicyCondition(ns, "strict", v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonPlanned)
		requestRun(ns, "strict", "now")
		sum := runRetentionJob(ns, activeJob(ns, "strict"), root)
		Expect(sum.Result).To(Equal(registryconfig.RetentionCeilingExceeded))
		c = expectPolicyCondition(ns, "strict", v1alpha1.ConditionDegraded, metav1.ConditionTrue, v1alpha1.ReasonCeilingExceeded)
		Expect(c.Message).To(ContainSubstring("the plan deletes 4 of 5 artifacts in scope, more than maxDeletionPercent (50%); nothing was deleted"))
		Expect(tagsIn(root, "team-a/app")).To(HaveLen(5))
		p := get(ns, "strict", &v1alpha1.RetentionPolicy{})
		Expect(p.Status.Plan.CeilingExceeded).To(BeTrue())
		Expect(p.Status.LastEnforcement.Result).To(Equal(registryconfig.RetentionCeilingExceeded))

		By("suspended, a request is recorded and ignored")
		patch := client.MergeFrom(p.DeepCopy())
		p.Spec.Suspend = true
		Expect(k8sClient.Patch(ctx, p, patch)).To(Succeed())
		// The spec change plans (suspend stops only scheduled and requested runs).
		runRetentionJob(ns, activeJob(ns, "strict"), root)
		Eventually(func(g Gomega) {
			g.Expect(k8sClient.Get(ctx, key(ns, "strict"), p)).To(Succeed())
			g.Expect(p.Status.ObservedGeneration).To(Equal(p.Generation))
			g.Expect(p.Status.ActiveJob).To(BeEmpty())
		}, timeout, interval).Should(Succeed())
		requestRun(ns, "strict", "again")
		Eventually(func(g Gomega) {
			g.Expect(k8sClient.Get(ctx, key(ns, "strict"), p)).To(Succeed())
			g.Expect(p.Status.LastHandledRunRequest).To(Equal("again"))
		}, timeout, interval).Should(Succeed())
		Consistently(func(g Gomega) {
			g.Expect(k8sClient.Get(ctx, key(ns, "strict"), p)).To(Succeed())
			g.Expect(p.Status.ActiveJob).To(BeEmpty())
		}, 2*time.Second, interval).Should(Succeed())
	})
})

var _ = Describe("RetentionPolicy and the cluster's pods", func() {
	It("keeps the images pods run (by image ID) or are about to run (by tag), however old", func() {
		ns := newNamespace()
		root := GinkgoT().TempDir()
		readyRegistry(ns, "r")
		digests := seedImages(root, "team-a/app", "main-0", "main-1", "main-2", "main-3")
		// A running pod in another namespace started from main-1 (the tag may move on;
		// its image ID names the digest), and a pod here not started yet names main-2.
		other := newNamespace()
		running := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: other, Name: "running"},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: fmt.Sprintf("r.%s.svc:5000/team-a/app:main-1", ns)}}}}
		Expect(k8sClient.Create(ctx, running)).To(Succeed())
		running.Status.Phase = corev1.PodRunning
		running.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "c", Image: running.Spec.Containers[0].Image,
			ImageID: fmt.Sprintf("r.%s.svc.cluster.local:5000/team-a/app@%s", ns, digests["main-1"]), Ready: true}}
		Expect(k8sClient.Status().Update(ctx, running)).To(Succeed())
		Expect(k8sClient.Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "pending"},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: fmt.Sprintf("r.%s.svc:5000/team-a/app:main-2", ns)}}}})).To(Succeed())

		Expect(k8sClient.Create(ctx, newPolicy(ns, "ci", "r", func(p *v1alpha1.RetentionPolicy) {
			p.Spec.Rules = []v1alpha1.RetentionRule{{Tags: &v1alpha1.TagSelector{Glob: "main-*"}, KeepLast: ptrTo(int32(1))}}
			p.Spec.Safety.MaxDeletionPercent = ptrTo(int32(100))
		}))).To(Succeed())
		job := activeJob(ns, "ci")
		args := get(ns, job, &batchv1.Job{}).Spec.Template.Spec.Containers[0].Args
		var run registryconfig.RetentionRun
		Expect(json.Unmarshal([]byte(args[len(args)-1]), &run)).To(Succeed())
		Expect(run.InUse).To(ConsistOf(
			registryconfig.ImageInUse{Repository: "team-a/app", Tag: "main-1"},
			registryconfig.ImageInUse{Repository: "team-a/app", Digest: digests["main-1"]},
			registryconfig.ImageInUse{Repository: "team-a/app", Tag: "main-2"},
		))
		runRetentionJob(ns, job, root)
		expectPolicyCondition(ns, "ci", v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonPlanned)
		p := get(ns, "ci", &v1alpha1.RetentionPolicy{})
		Expect(p.Status.Plan.ArtifactsToDelete).To(Equal(int64(1)))
		Expect(p.Status.Plan.Sample).To(ConsistOf(HaveField("Digest", digests["main-0"])))
	})
})

var _ = Describe("RetentionPolicy validation at apply time", func() {
	var ns string
	BeforeEach(func() { ns = newNamespace() })

	DescribeTable("rejects an invalid policy with a message a person understands",
		func(mutate func(*v1alpha1.RetentionPolicy), wantMessage string) {
			err := k8sClient.Create(ctx, newPolicy(ns, "p", "r", mutate), client.DryRunAll)
			Expect(err).To(HaveOccurred())
			Expect(err.Error()).To(ContainSubstring(wantMessage))
		},
		Entry("no repositories", func(p *v1alpha1.RetentionPolicy) { p.Spec.Repositories = nil }, "spec.repositories"),
		Entry("an upper-case repository pattern", func(p *v1alpha1.RetentionPolicy) { p.Spec.Repositories = []string{"Team-A/**"} }, "repositories: each pattern is lowercase path segments"),
		Entry("no rules", func(p *v1alpha1.RetentionPolicy) { p.Spec.Rules = nil }, "spec.rules"),
		Entry("keepLast 0", func(p *v1alpha1.RetentionPolicy) { p.Spec.Rules[0].KeepLast = ptrTo(int32(0)) }, "keepLast"),
		Entry("a broken regular expression", func(p *v1alpha1.RetentionPolicy) {
			p.Spec.Rules[0].Tags = &v1alpha1.TagSelector{Regex: "v[0-9"}
		}, "spec.rules[0].tags.regex"),
		Entry("a semver constraint that is not one", func(p *v1alpha1.RetentionPolicy) {
			p.Spec.Rules[1].Tags = &v1alpha1.TagSelector{Semver: "latest"}
		}, "semver: not a version constraint"),
		Entry("a glob with a slash", func(p *v1alpha1.RetentionPolicy) {
			p.Spec.Rules[0].Tags = &v1alpha1.TagSelector{Glob: "a/b"}
		}, "glob: tags never contain '/'"),
		Entry("a negative duration", func(p *v1alpha1.RetentionPolicy) {
			p.Spec.Rules[0].PushedWithin = &metav1.Duration{Duration: -time.Hour}
		}, "pushedWithin: a positive duration"),
		Entry("an out-of-range schedule", func(p *v1alpha1.RetentionPolicy) { p.Spec.Schedule = "0 24 * * *" }, "schedule: a field is out of range"),
		Entry("an unknown mode", func(p *v1alpha1.RetentionPolicy) { p.Spec.Mode = "Delete" }, "spec.mode"),
		Entry("a ceiling above 100", func(p *v1alpha1.RetentionPolicy) { p.Spec.Safety.MaxDeletionPercent = ptrTo(int32(101)) }, "spec.safety.maxDeletionPercent"),
		Entry("a minAge under ten minutes", func(p *v1alpha1.RetentionPolicy) {
			p.Spec.Safety.MinAge = &metav1.Duration{Duration: time.Minute}
		}, "minAge: at least 10m"),
		Entry("a long name", func(p *v1alpha1.RetentionPolicy) { p.Name = "a-policy-name-that-is-longer-than-forty-characters" }, "metadata.name: at most 40 characters"),
	)

	It("accepts a full policy and defaults mode, untagged and the ceiling", func() {
		p := newPolicy(ns, "full", "r", func(p *v1alpha1.RetentionPolicy) {
			p.Spec.ExcludeRepositories = []string{"team-a/keep/**"}
			p.Spec.Schedule = "0 4 * * SUN"
			p.Spec.Rules = append(p.Spec.Rules,
				v1alpha1.RetentionRule{Tags: &v1alpha1.TagSelector{Regex: `v[0-9]+\.[0-9]+`}, PulledWithin: &metav1.Duration{Duration: 90 * 24 * time.Hour}},
				v1alpha1.RetentionRule{PushedWithin: &metav1.Duration{Duration: 720 * time.Hour}})
		})
		Expect(k8sClient.Create(ctx, p)).To(Succeed())
		Expect(p.Spec.Mode).To(Equal(v1alpha1.RetentionDryRun))
		Expect(p.Spec.Untagged).To(Equal(v1alpha1.UntaggedKeep))
		Expect(*p.Spec.Safety.MaxDeletionPercent).To(Equal(int32(50)))
	})
})
