package registry

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/dockyard-dev/dockyard/api/v1alpha1"
	"github.com/dockyard-dev/dockyard/internal/registryconfig"
)

func retentionPolicy(name string, mut ...func(*v1alpha1.RetentionPolicy)) v1alpha1.RetentionPolicy {
	p := v1alpha1.RetentionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "platform", UID: types.UID("uid-" + name)},
		Spec: v1alpha1.RetentionPolicySpec{
			RegistryRef:  v1alpha1.LocalRegistryReference{Name: "main"},
			Repositories: []string{"team-a/**"},
			Rules:        []v1alpha1.RetentionRule{{Tags: &v1alpha1.TagSelector{Glob: "main-*"}, KeepLast: ptr(int32(3))}},
		},
	}
	for _, m := range mut {
		m(&p)
	}
	return p
}

// The run carries every policy with its defaults applied, and the Job runs it beside the
// registry like garbage collection, owned by the policy.
func TestRetentionJob(t *testing.T) {
	ci := retentionPolicy("ci", func(p *v1alpha1.RetentionPolicy) {
		p.Spec.Untagged = v1alpha1.UntaggedDelete
		p.Spec.Rules = append(p.Spec.Rules, v1alpha1.RetentionRule{Name: "recent", PulledWithin: &metav1.Duration{Duration: 48 * time.Hour}})
	})
	keep := retentionPolicy("keep", func(p *v1alpha1.RetentionPolicy) {
		p.Spec.Safety = v1alpha1.RetentionSafety{MaxDeletionPercent: ptr(int32(10)), MinAge: &metav1.Duration{Duration: 2 * time.Hour}}
	})
	run := RetentionRunOf(&ci, []v1alpha1.RetentionPolicy{ci, keep}, true)
	want := registryconfig.RetentionRun{Policy: "ci", Enforce: true, Policies: []registryconfig.RetentionPolicy{
		{Name: "ci", Repositories: []string{"team-a/**"}, MaxDeletionPercent: 50, MinAge: registryconfig.Duration{Duration: time.Hour},
			Rules: []registryconfig.RetentionRule{{Name: "rules[0]", Glob: "main-*", KeepLast: 3}, {Name: "recent", PulledWithin: registryconfig.Duration{Duration: 48 * time.Hour}}}},
		{Name: "keep", Repositories: []string{"team-a/**"}, KeepUntagged: true, MaxDeletionPercent: 10, MinAge: registryconfig.Duration{Duration: 2 * time.Hour},
			Rules: []registryconfig.RetentionRule{{Name: "rules[0]", Glob: "main-*", KeepLast: 3}}},
	}}
	gotJSON, _ := json.Marshal(run)
	wantJSON, _ := json.Marshal(want)
	if string(gotJSON) != string(wantJSON) {
		t.Fatalf("run:\n got %s\nwant %s", gotJSON, wantJSON)
	}

	r := reg()
	job, err := RetentionJob(r, in, &ci, RetentionJobPrefix("ci"), run)
	if err != nil {
		t.Fatal(err)
	}
	if job.GenerateName != "ci-retention-" || job.Namespace != "platform" || len(job.OwnerReferences) != 1 || job.OwnerReferences[0].UID != "uid-ci" || !*job.OwnerReferences[0].Controller {
		t.Errorf("job meta = %+v", job.ObjectMeta)
	}
	if job.Labels[LabelRetentionPolicy] != "ci" || job.Labels[LabelComponent] != ComponentRetention || job.Annotations[AnnotationRetentionEnforce] != "true" {
		t.Errorf("labels %v, annotations %v", job.Labels, job.Annotations)
	}
	if *job.Spec.BackoffLimit != 0 {
		t.Error("a failed run is not retried by the Job (the next run re-plans)")
	}
	pod := job.Spec.Template.Spec
	c := pod.Containers[0]
	i := slices.Index(c.Args, "--run")
	if i < 0 || c.Args[0] != "registry" || c.Args[1] != "retention" {
		t.Fatalf("args = %q", c.Args)
	}
	var back registryconfig.RetentionRun
	if err := json.Unmarshal([]byte(c.Args[i+1]), &back); err != nil || back.Policy != "ci" || len(back.Policies) != 2 {
		t.Errorf("--run %q: %v", c.Args[i+1], err)
	}
	// The same pod as garbage collection: storage, config, restrictions, placement.
	gcPod := CronJob(reg(gc), in).Spec.JobTemplate.Spec.Template.Spec
	if !slices.EqualFunc(pod.Volumes, gcPod.Volumes, func(a, b corev1.Volume) bool { return a.Name == b.Name }) ||
		pod.Affinity == nil || *c.SecurityContext.ReadOnlyRootFilesystem != true || *pod.AutomountServiceAccountToken {
		t.Errorf("pod differs from the GC pod: volumes %v, affinity %v", pod.Volumes, pod.Affinity)
	}
}
