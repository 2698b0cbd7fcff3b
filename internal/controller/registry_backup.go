package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dockyard-dev/dockyard/api/v1alpha1"
	"github.com/dockyard-dev/dockyard/internal/registryconfig"
	resources "github.com/dockyard-dev/dockyard/internal/resources/registry"
)

// observeBackups records the newest finished backup Job in status.lastBackup and, while
// spec.restore has not succeeded, the restore Job's outcome in status.restore. Each Job's
// pods are read once, for the summary in their termination message.
func (r *RegistryReconciler) observeBackups(ctx context.Context, s *scope) (ctrl.Result, error) {
	reg := s.reg
	var jobs batchv1.JobList
	if err := r.Client.List(ctx, &jobs, client.InNamespace(reg.Namespace), client.MatchingLabels{
		resources.LabelRegistry: reg.Name, resources.LabelComponent: resources.ComponentBackup,
	}); err != nil {
		return ctrl.Result{}, fmt.Errorf("list backup Jobs of Registry %s/%s: %w", reg.Namespace, reg.Name, err)
	}
	if job := newestFinishedJob(jobs.Items); job != nil && (s.lastBackup == nil || s.lastBackup.JobName != job.Name) {
		run, err := r.backupRun(ctx, job)
		if err != nil {
			return ctrl.Result{}, err
		}
		s.lastBackup = run
	}
	if restoreSucceeded(s) {
		return ctrl.Result{}, nil
	}
	job := &batchv1.Job{}
	err := r.Client.Get(ctx, client.ObjectKey{Namespace: reg.Namespace, Name: resources.RestoreJobName(reg)}, job)
	switch {
	case apierrors.IsNotFound(err):
		return ctrl.Result{}, nil
	case err != nil:
		return ctrl.Result{}, fmt.Errorf("get restore Job of Registry %s/%s: %w", reg.Namespace, reg.Name, err)
	}
	s.restoreJob = true
	if jobFinished(job) == nil {
		// Running: the registry must not start under it, even if spec.restore was removed.
		s.restoreRunning = true
		if old := s.restore; old != nil && old.CompletionTime != nil && old.CompletionTime.Before(&job.CreationTimestamp) {
			s.restore = nil // a retry of a failed restore: no longer failed
		}
		return ctrl.Result{}, nil
	}
	if reg.Spec.Restore == nil {
		return ctrl.Result{}, nil
	}
	run, err := r.backupRun(ctx, job)
	if err != nil {
		return ctrl.Result{}, err
	}
	s.restore = run
	return ctrl.Result{}, nil
}

// backupRun turns a finished backup or restore Job and its pods' summary into a status record.
func (r *RegistryReconciler) backupRun(ctx context.Context, job *batchv1.Job) (*v1alpha1.BackupRun, error) {
	var pods corev1.PodList
	if err := r.APIReader.List(ctx, &pods, client.InNamespace(job.Namespace), client.MatchingLabels{batchv1.JobNameLabel: job.Name}); err != nil {
		return nil, fmt.Errorf("list Pods of Job %s/%s: %w", job.Namespace, job.Name, err)
	}
	finished := jobFinished(job)
	run := &v1alpha1.BackupRun{JobName: job.Name, Result: registryconfig.GCResultSucceeded, CompletionTime: job.Status.CompletionTime}
	if run.CompletionTime == nil && finished != nil {
		t := finished.LastTransitionTime
		run.CompletionTime = &t
	}
	if finished != nil && finished.Type == batchv1.JobFailed {
		run.Result = registryconfig.GCResultFailed
		run.Message = strings.TrimSpace(finished.Reason + ": " + finished.Message)
	}
	msg := newestTerminationMessage(pods.Items)
	var sum registryconfig.BackupSummary
	switch {
	case msg == "":
		if run.Result == registryconfig.GCResultSucceeded {
			run.Message = "the job reported no summary"
		}
	case json.Unmarshal([]byte(msg), &sum) != nil:
		run.Message = truncate(strings.TrimSpace(msg), 512) // the log tail of a crash
	default:
		run.Backup, run.Repositories, run.Tags, run.Manifests = sum.Backup, int32(sum.Repositories), int32(sum.Tags), int32(sum.Manifests) //nolint:gosec // counts fit
		run.Bytes, run.BytesCopied, run.DurationSeconds = sum.Bytes, sum.BytesCopied, int64(sum.DurationSeconds)
		if sum.Result == registryconfig.GCResultFailed {
			run.Result = registryconfig.GCResultFailed
		}
		if sum.Message != "" {
			run.Message = truncate(sum.Message, 512)
		}
	}
	return run, nil
}

func restoreSucceeded(s *scope) bool {
	return s.restore != nil && s.restore.Result == registryconfig.GCResultSucceeded
}

// restorePending is true while spec.restore has not succeeded, or a restore Job still
// runs: the Deployment waits.
func restorePending(s *scope) bool {
	return s.restoreRunning || (s.reg.Spec.Restore != nil && !restoreSucceeded(s))
}

// reconcileBackupObjects applies the backup config, and, while spec.restore is pending,
// creates the restore Job once (a failed one stays, for its logs, until someone deletes
// it; then a new one runs).
func (r *RegistryReconciler) reconcileBackupObjects(ctx context.Context, s *scope, in resources.Inputs) error {
	reg := s.reg
	var cm client.Object
	if c := resources.BackupConfig(reg, in); c != nil {
		rendered, err := c.Marshal()
		if err != nil {
			return fmt.Errorf("render backup config of Registry %s/%s: %w", reg.Namespace, reg.Name, err)
		}
		cm = resources.BackupConfigMap(reg, rendered)
	}
	if err := r.applyOrDelete(ctx, reg, cm, &corev1.ConfigMap{}, resources.BackupConfigName(reg)); err != nil {
		return err
	}
	if s.reg.Spec.Restore == nil || restoreSucceeded(s) || s.restoreJob {
		return nil
	}
	// A Job whose pod cannot start (missing credentials) would only wait: say so instead,
	// and start it when the Secret appears (Secrets map back through the referenced index).
	if ref := reg.RestoreCredentialsRef(); ref != nil {
		_, st, err := r.readSecret(ctx, reg.Namespace, ref.Name, registryconfig.S3AccessKeyIDKey, registryconfig.S3SecretAccessKeyKey)
		if err != nil {
			return err
		}
		switch {
		case !st.found:
			s.restoreWaiting = fmt.Sprintf("Secret %s (spec.restore.from.s3.credentialsSecretRef) not found", ref.Name)
			return nil
		case !st.ok():
			s.restoreWaiting = fmt.Sprintf("Secret %s (spec.restore.from.s3.credentialsSecretRef) lacks keys %s", ref.Name, strings.Join(st.missingKeys, ", "))
			return nil
		}
	}
	job := resources.RestoreJob(reg, in)
	if err := r.Client.Create(ctx, job, client.FieldOwner(FieldOwner)); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create restore Job %s/%s: %w", reg.Namespace, job.Name, err)
	}
	ctrl.LoggerFrom(ctx).Info("Restoring from backup before the registry starts", "job", job.Name, "backup", orDefault(reg.Spec.Restore.Backup, "newest"))
	return nil
}

// restoreReady reports a pending restore for the Ready condition; nil when none is pending.
func restoreReady(s *scope) (reason, message string, pending bool) {
	if !restorePending(s) {
		return "", "", false
	}
	if s.restore != nil && s.restore.Result == registryconfig.GCResultFailed {
		return v1alpha1.ReasonRestoreFailed, fmt.Sprintf("restore Job %s failed: %s; the registry does not start on a partial restore. Fix spec.restore's store (or delete the Job to retry), or remove spec.restore to start empty",
			s.restore.JobName, orDefault(s.restore.Message, "no message")), true
	}
	if s.restoreWaiting != "" {
		return v1alpha1.ReasonRestoring, "the restore waits: " + s.restoreWaiting, true
	}
	backup := "(the newest)"
	if r := s.reg.Spec.Restore; r != nil && r.Backup != "" {
		backup = r.Backup
	}
	return v1alpha1.ReasonRestoring, fmt.Sprintf("restore Job %s is writing backup %s into the storage; the registry starts when it is done",
		resources.RestoreJobName(s.reg), backup), true
}
