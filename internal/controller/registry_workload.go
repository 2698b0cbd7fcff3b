package controller

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dockyard-dev/dockyard/api/v1alpha1"
	"github.com/dockyard-dev/dockyard/internal/registryconfig"
	resources "github.com/dockyard-dev/dockyard/internal/resources/registry"
)

// observeWorkload reads the PVC and Deployment back from the cache for status.
func (r *RegistryReconciler) observeWorkload(ctx context.Context, s *scope) (ctrl.Result, error) {
	reg := s.reg
	if reg.Spec.Storage.Filesystem != nil {
		pvc := &corev1.PersistentVolumeClaim{}
		err := r.Client.Get(ctx, client.ObjectKey{Namespace: reg.Namespace, Name: reg.PVCName()}, pvc)
		switch {
		case err == nil:
			s.pvc = pvc
		case !apierrors.IsNotFound(err):
			return ctrl.Result{}, fmt.Errorf("get PersistentVolumeClaim %s/%s: %w", reg.Namespace, reg.PVCName(), err)
		}
	}
	dep := &appsv1.Deployment{}
	err := r.Client.Get(ctx, client.ObjectKey{Namespace: reg.Namespace, Name: reg.ServiceName()}, dep)
	switch {
	case err == nil:
		s.deployment = dep
	case !apierrors.IsNotFound(err):
		return ctrl.Result{}, fmt.Errorf("get Deployment %s/%s: %w", reg.Namespace, reg.ServiceName(), err)
	}
	if reg.Spec.NodeTrust != nil {
		ds := &appsv1.DaemonSet{}
		err := r.Client.Get(ctx, client.ObjectKey{Namespace: reg.Namespace, Name: reg.NodeTrustName()}, ds)
		switch {
		case err == nil:
			s.nodeTrust = ds
		case !apierrors.IsNotFound(err):
			return ctrl.Result{}, fmt.Errorf("get DaemonSet %s/%s: %w", reg.Namespace, reg.NodeTrustName(), err)
		}
	}
	return ctrl.Result{}, nil
}

// observeGarbageCollection records the newest finished GC job. The job's pod writes a
// registryconfig.GCSummary to its termination-message path; it is read once per job.
func (r *RegistryReconciler) observeGarbageCollection(ctx context.Context, s *scope) (ctrl.Result, error) {
	reg := s.reg
	var jobs batchv1.JobList
	if err := r.Client.List(ctx, &jobs, client.InNamespace(reg.Namespace), client.MatchingLabels{
		resources.LabelRegistry: reg.Name, resources.LabelComponent: resources.ComponentGC,
	}); err != nil {
		return ctrl.Result{}, fmt.Errorf("list garbage-collection Jobs of Registry %s/%s: %w", reg.Namespace, reg.Name, err)
	}
	job := newestFinishedJob(jobs.Items)
	if job == nil || (s.lastGC != nil && s.lastGC.JobName == job.Name) {
		return ctrl.Result{}, nil
	}
	var pods corev1.PodList
	if err := r.APIReader.List(ctx, &pods, client.InNamespace(reg.Namespace), client.MatchingLabels{batchv1.JobNameLabel: job.Name}); err != nil {
		return ctrl.Result{}, fmt.Errorf("list Pods of Job %s/%s: %w", reg.Namespace, job.Name, err)
	}
	s.lastGC = gcRunFromJob(job, pods.Items)
	return ctrl.Result{}, nil
}

// jobFinished returns the finishing condition (Complete or Failed) of a Job.
func jobFinished(j *batchv1.Job) *batchv1.JobCondition {
	for i := range j.Status.Conditions {
		c := &j.Status.Conditions[i]
		if (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) && c.Status == corev1.ConditionTrue {
			return c
		}
	}
	return nil
}

func newestFinishedJob(jobs []batchv1.Job) *batchv1.Job {
	var newest *batchv1.Job
	var newestAt metav1.Time
	for i := range jobs {
		c := jobFinished(&jobs[i])
		if c == nil {
			continue
		}
		at := c.LastTransitionTime
		if newest == nil || newestAt.Before(&at) || (at.Equal(&newestAt) && jobs[i].Name > newest.Name) {
			newest, newestAt = &jobs[i], at
		}
	}
	return newest
}

// gcRunFromJob turns a finished Job and its Pods into the status record.
func gcRunFromJob(job *batchv1.Job, pods []corev1.Pod) *v1alpha1.GarbageCollectionRun {
	finished := jobFinished(job)
	run := &v1alpha1.GarbageCollectionRun{
		JobName:   job.Name,
		StartTime: job.Status.StartTime,
		Result:    registryconfig.GCResultSucceeded,
	}
	if job.Status.CompletionTime != nil {
		run.CompletionTime = job.Status.CompletionTime
	} else if finished != nil {
		t := finished.LastTransitionTime
		run.CompletionTime = &t
	}
	if finished != nil && finished.Type == batchv1.JobFailed {
		run.Result = registryconfig.GCResultFailed
		run.Message = strings.TrimSpace(finished.Reason + ": " + finished.Message)
	}
	msg := newestTerminationMessage(pods)
	if msg == "" {
		if run.Result == registryconfig.GCResultSucceeded {
			run.Message = "the job reported no summary"
		}
		return run
	}
	var sum registryconfig.GCSummary
	if err := json.Unmarshal([]byte(msg), &sum); err != nil {
		// FallbackToLogsOnError puts the log tail here when the run crashed.
		run.Message = truncate(strings.TrimSpace(msg), 512)
		return run
	}
	run.BlobsDeleted = sum.BlobsDeleted
	run.ManifestsDeleted = sum.ManifestsDeleted
	run.BytesFreed = sum.BytesFreed
	if sum.Result == registryconfig.GCResultFailed {
		run.Result = registryconfig.GCResultFailed
	}
	if sum.Message != "" {
		run.Message = truncate(sum.Message, 512)
	}
	return run
}

// newestTerminationMessage returns the termination message of the most recently
// terminated container among pods.
func newestTerminationMessage(pods []corev1.Pod) string {
	type term struct {
		at  metav1.Time
		msg string
	}
	var terms []term
	for _, p := range pods {
		for _, cs := range p.Status.ContainerStatuses {
			if t := cs.State.Terminated; t != nil {
				terms = append(terms, term{t.FinishedAt, t.Message})
			}
		}
	}
	if len(terms) == 0 {
		return ""
	}
	sort.Slice(terms, func(i, j int) bool { return terms[j].at.Before(&terms[i].at) })
	return terms[0].msg
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

func shortHash(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:12])
}
