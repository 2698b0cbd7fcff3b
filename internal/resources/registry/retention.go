package registry

import (
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dockyard-dev/dockyard/api/v1alpha1"
	"github.com/dockyard-dev/dockyard/internal/registryconfig"
)

// Retention run labels and limits.
const (
	ComponentRetention     = "retention"
	RetentionContainerName = "retention"
	// LabelRetentionPolicy names the RetentionPolicy a run Job belongs to.
	LabelRetentionPolicy = "registry.dockyard.dev/retention-policy"
	// AnnotationRetentionEnforce is "true" on a run Job that enforces.
	AnnotationRetentionEnforce = "registry.dockyard.dev/enforce"
	// RetentionActiveDeadlineSeconds stops a run that hangs; the next run resumes.
	RetentionActiveDeadlineSeconds int64 = 6 * 3600
	// RetentionJobTTLSeconds removes finished run Jobs a day after they finish (the
	// operator keeps only the newest few anyway).
	RetentionJobTTLSeconds int32 = 24 * 3600
)

// RetentionJobPrefix is the generateName of a policy's run Jobs: the API server appends
// five random characters (a policy name has at most 40).
func RetentionJobPrefix(policy string) string { return policy + "-retention-" }

// RetentionJob is one run of policy against reg, generateName'd generateName: `dockyard registry retention`
// with the run as an argument, beside the serving pods like garbage collection (same
// storage, same volume rules). Its summary goes to the termination-message path. The Job is
// owned by the policy.
func RetentionJob(reg *v1alpha1.Registry, in Inputs, policy *v1alpha1.RetentionPolicy, generateName string, run registryconfig.RetentionRun) (*batchv1.Job, error) {
	args, err := registryconfig.RetentionArgs(registryconfig.ConfigPath, registryconfig.TerminationMessagePath, run)
	if err != nil {
		return nil, err
	}
	labels := Labels(reg, ComponentRetention)
	labels[LabelRetentionPolicy] = policy.Name
	pod := maintenancePod(reg, in, RetentionContainerName, args)
	enforce := "false"
	if run.Enforce {
		enforce = "true"
	}
	return &batchv1.Job{
		TypeMeta: typeMeta("batch/v1", "Job"),
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: generateName,
			Namespace:    policy.Namespace,
			Labels:       labels,
			Annotations:  map[string]string{AnnotationRetentionEnforce: enforce},
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: v1alpha1.GroupVersion.String(), Kind: "RetentionPolicy", Name: policy.Name, UID: policy.UID,
				Controller: ptr(true), BlockOwnerDeletion: ptr(true),
			}},
		},
		Spec: batchv1.JobSpec{
			BackoffLimit:            ptr(int32(0)),
			ActiveDeadlineSeconds:   ptr(RetentionActiveDeadlineSeconds),
			TTLSecondsAfterFinished: ptr(RetentionJobTTLSeconds),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       pod,
			},
		},
	}, nil
}

// RetentionRunOf turns the Registry's policies into a run of policy (one of them).
func RetentionRunOf(policy *v1alpha1.RetentionPolicy, all []v1alpha1.RetentionPolicy, enforce bool) registryconfig.RetentionRun {
	run := registryconfig.RetentionRun{Policy: policy.Name, Enforce: enforce}
	for i := range all {
		p := &all[i]
		rp := registryconfig.RetentionPolicy{
			Name:                p.Name,
			Repositories:        p.Spec.Repositories,
			ExcludeRepositories: p.Spec.ExcludeRepositories,
			KeepUntagged:        p.Spec.Untagged != v1alpha1.UntaggedDelete,
			MaxDeletionPercent:  p.MaxDeletionPercent(),
			MinAge:              registryconfig.Duration{Duration: p.MinAge()},
		}
		for j, r := range p.Spec.Rules {
			rr := registryconfig.RetentionRule{Name: p.RuleName(j)}
			if r.Tags != nil {
				rr.Glob, rr.Regex, rr.Semver = r.Tags.Glob, r.Tags.Regex, r.Tags.Semver
			}
			if r.KeepLast != nil {
				rr.KeepLast = int(*r.KeepLast)
			}
			if r.PushedWithin != nil {
				rr.PushedWithin = registryconfig.Duration{Duration: r.PushedWithin.Duration}
			}
			if r.PulledWithin != nil {
				rr.PulledWithin = registryconfig.Duration{Duration: r.PulledWithin.Duration}
			}
			rp.Rules = append(rp.Rules, rr)
		}
		run.Policies = append(run.Policies, rp)
	}
	return run
}
