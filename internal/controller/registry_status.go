package controller

import (
	"fmt"
	"math"
	"strings"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dockyard-dev/dockyard/api/v1alpha1"
	"github.com/dockyard-dev/dockyard/internal/registryconfig"
	resources "github.com/dockyard-dev/dockyard/internal/resources/registry"
)

// computeStatus derives the whole status from what the reconcile observed. It is pure:
// meta.SetStatusCondition keeps lastTransitionTime when a condition's status is unchanged,
// so an unchanged world yields a status equal to the previous one and nothing is written.
func computeStatus(reg *v1alpha1.Registry, s *scope, reconcileErr error) *v1alpha1.RegistryStatus {
	st := s.before.DeepCopy()
	gen := reg.Generation
	set := func(c metav1.Condition) {
		c.ObservedGeneration = gen
		meta.SetStatusCondition(&st.Conditions, c)
	}
	setOrRemove := func(t string, c *metav1.Condition) {
		if c == nil {
			meta.RemoveStatusCondition(&st.Conditions, t)
			return
		}
		set(*c)
	}

	storage := storageCondition(reg, s)
	if st, ok := storageInput(reg); ok && !s.saw(st) {
		storage = notObserved(s, v1alpha1.ConditionStorageReady, st)
	}
	set(storage)
	cert := certificateCondition(reg, s)
	if cert != nil && !s.saw(stepDependencies) {
		cert = ptrTo(notObserved(s, v1alpha1.ConditionCertificateReady, stepDependencies))
	}
	setOrRemove(v1alpha1.ConditionCertificateReady, cert)
	auth := authCondition(reg, s)
	if auth != nil && !s.saw(stepDependencies) {
		auth = ptrTo(notObserved(s, v1alpha1.ConditionAuthReady, stepDependencies))
	}
	setOrRemove(v1alpha1.ConditionAuthReady, auth)

	setOrRemove(v1alpha1.ConditionNodeTrustReady, nodeTrustCondition(reg, s))
	setOrRemove(v1alpha1.ConditionScannerReady, scannerCondition(reg, s, s.now))
	st.Scanning = scanningStatus(reg, s)
	setOrRemove(v1alpha1.ConditionMonitoringReady, monitoringCondition(reg, s))

	deps := []*metav1.Condition{&storage, cert, auth}
	set(readyCondition(reg, s, deps, reconcileErr))
	set(progressingCondition(reg, s, reconcileErr))
	set(degradedCondition(s, reconcileErr))

	st.URL = reg.URL()
	switch d := s.deployment; {
	case !s.saw(stepWorkload):
		// Not read this time: keep what was last observed.
	case d != nil:
		st.Replicas = d.Status.UpdatedReplicas
		st.ReadyReplicas = d.Status.ReadyReplicas
	default:
		st.Replicas, st.ReadyReplicas = 0, 0
	}
	st.LastGarbageCollection = s.lastGC
	st.LastBackup = s.lastBackup
	if b := s.lastBackup; b != nil && b.Result == registryconfig.GCResultSucceeded {
		st.LastSuccessfulBackup = b.DeepCopy()
	}
	st.Restore = s.restore
	if reg.Spec.Restore == nil && (st.Restore == nil || st.Restore.Result != registryconfig.GCResultSucceeded) {
		st.Restore = nil
	}
	switch {
	case reg.Spec.TLS == nil || reg.Spec.TLS.IssuerRef == nil:
		st.Certificate = nil
	case !s.saw(stepDependencies):
		// Not read this time: keep what was last observed.
	case s.cert != nil && s.cert.certificate != nil:
		st.Certificate = certificateStatus(s.cert.certificate)
	default:
		st.Certificate = nil
	}
	if reconcileErr == nil && s.childrenApplied {
		st.ObservedGeneration = gen
	}
	return st
}

// monitoringCondition reports whether Prometheus is told to scrape the Registry. It is
// not part of Ready. Until the children are applied it keeps its last value.
func monitoringCondition(reg *v1alpha1.Registry, s *scope) *metav1.Condition {
	if !s.saw(stepChildren) {
		if old := meta.FindStatusCondition(s.before.Conditions, v1alpha1.ConditionMonitoringReady); old != nil {
			return old.DeepCopy()
		}
		return nil
	}
	c := &metav1.Condition{Type: v1alpha1.ConditionMonitoringReady, Status: metav1.ConditionFalse}
	switch {
	case !s.promOperator:
		c.Reason = v1alpha1.ReasonPrometheusOperatorMissing
		c.Message = "the Prometheus Operator's CRDs (monitoring.coreos.com/v1 PodMonitor) are not installed: no PodMonitor or PrometheusRule is written; each pod serves /metrics on port 5001"
	case !s.podMonitor:
		c.Reason = v1alpha1.ReasonMonitoringDisabled
		c.Message = "spec.monitoring.disabled is set: no PodMonitor or PrometheusRule is written"
	default:
		c.Status = metav1.ConditionTrue
		c.Reason = v1alpha1.ReasonPodMonitorApplied
		interval := resources.DefaultScrapeInterval
		if m := reg.Spec.Monitoring; m != nil && m.Interval != nil {
			interval = m.Interval.Duration
		}
		c.Message = fmt.Sprintf("PodMonitor %s has Prometheus scrape /metrics on port 5001 of each registry pod every %s", reg.ServiceName(), interval)
		if s.prometheusRule {
			c.Message += fmt.Sprintf("; PrometheusRule %s holds the Registry's alerts (docs/runbooks.md)", reg.ServiceName())
		} else {
			c.Message += "; spec.monitoring.alerts.disabled is set: no PrometheusRule is written"
		}
	}
	return c
}

// nodeTrustCondition reports the node-trust DaemonSet; nil without spec.nodeTrust. It is
// not part of Ready: the registry serves whether or not nodes trust its CA.
func nodeTrustCondition(reg *v1alpha1.Registry, s *scope) *metav1.Condition {
	if reg.Spec.NodeTrust == nil {
		return nil
	}
	c := &metav1.Condition{Type: v1alpha1.ConditionNodeTrustReady}
	if !s.saw(stepWorkload) {
		return ptrTo(notObserved(s, v1alpha1.ConditionNodeTrustReady, stepWorkload))
	}
	ds := s.nodeTrust
	if ds == nil {
		c.Status, c.Reason, c.Message = metav1.ConditionFalse, v1alpha1.ReasonNodeTrustRollingOut, "the node-trust DaemonSet is not created yet (it waits for the TLS Secret)"
		return c
	}
	want, ready := ds.Status.DesiredNumberScheduled, ds.Status.NumberReady
	current := ds.Status.ObservedGeneration >= ds.Generation && ds.Status.UpdatedNumberScheduled >= want
	if current && ready >= want {
		c.Status, c.Reason = metav1.ConditionTrue, v1alpha1.ReasonNodeTrustInstalled
		c.Message = fmt.Sprintf("the CA is installed on %d node(s)", ready)
		return c
	}
	c.Status, c.Reason = metav1.ConditionFalse, v1alpha1.ReasonNodeTrustRollingOut
	c.Message = fmt.Sprintf("%d of %d node(s) run the current node-trust pod", min(ready, ds.Status.UpdatedNumberScheduled), want)
	if ds.Status.CurrentNumberScheduled == 0 && want > 0 {
		c.Message += "; no pod exists: the namespace must admit hostPath pods (Pod Security level privileged), see the DaemonSet's events"
	}
	return c
}

// storageInput is the step whose observation StorageReady is computed from; ok is false
// when it needs none (emptyDir, or object storage without a credentials Secret).
func storageInput(reg *v1alpha1.Registry) (step, bool) {
	switch st := reg.Spec.Storage; {
	case st.Filesystem != nil:
		return stepWorkload, true
	case st.EmptyDir != nil:
		return "", false
	case reg.StorageCredentialsRef() != nil:
		return stepDependencies, true
	}
	return "", false
}

// notObserved is condition t when the step it is computed from did not complete: Unknown,
// naming the step and what was last observed.
func notObserved(s *scope, t string, st step) metav1.Condition {
	why := "it did not run"
	if err := s.failed[st]; err != nil {
		why = "it failed"
	} else {
		for failed := range s.failed {
			why = "it needs " + string(failed) + ", which failed"
		}
	}
	msg := fmt.Sprintf("not observed: the reconcile could not %s (%s)", st, why)
	const last = "; last observed "
	if prev := meta.FindStatusCondition(s.before.Conditions, t); prev != nil {
		if prev.Reason != v1alpha1.ReasonNotObserved {
			msg += fmt.Sprintf("%s%s/%s: %s", last, prev.Status, prev.Reason, prev.Message)
		} else if i := strings.Index(prev.Message, last); i >= 0 {
			msg += prev.Message[i:] // still the last observation
		}
	}
	return metav1.Condition{Type: t, Status: metav1.ConditionUnknown, Reason: v1alpha1.ReasonNotObserved, Message: truncate(msg, 1024)}
}

// storageCondition reports the volume claim or the object-storage credentials.
func storageCondition(reg *v1alpha1.Registry, s *scope) metav1.Condition {
	c := metav1.Condition{Type: v1alpha1.ConditionStorageReady}
	stor := reg.Spec.Storage
	switch {
	case stor.EmptyDir != nil:
		c.Status, c.Reason = metav1.ConditionTrue, v1alpha1.ReasonEphemeralStorage
		c.Message = "emptyDir storage: images are lost whenever the pod is replaced"
	case stor.Filesystem != nil:
		switch {
		case s.pvc == nil:
			c.Status, c.Reason = metav1.ConditionFalse, v1alpha1.ReasonVolumePending
			c.Message = fmt.Sprintf("waiting for PersistentVolumeClaim %s to be created", reg.PVCName())
		case s.pvc.Status.Phase == corev1.ClaimBound:
			c.Status, c.Reason = metav1.ConditionTrue, v1alpha1.ReasonVolumeBound
			c.Message = fmt.Sprintf("PersistentVolumeClaim %s is bound", reg.PVCName())
		case s.pvc.Status.Phase == corev1.ClaimLost:
			c.Status, c.Reason = metav1.ConditionFalse, v1alpha1.ReasonVolumeLost
			c.Message = fmt.Sprintf("PersistentVolumeClaim %s lost its volume", reg.PVCName())
		default:
			c.Status, c.Reason = metav1.ConditionFalse, v1alpha1.ReasonVolumePending
			c.Message = fmt.Sprintf("PersistentVolumeClaim %s is pending (a storage class with WaitForFirstConsumer binds it when the first pod is scheduled)", reg.PVCName())
		}
	default:
		if s.credentials == nil {
			c.Status, c.Reason = metav1.ConditionTrue, v1alpha1.ReasonAmbientCredentials
			c.Message = "no credentialsSecretRef: the pods' ambient identity is used"
			return c
		}
		secretCondition(&c, s.credentials, "storage credentials")
	}
	return c
}

// certificateCondition reports the serving certificate; nil without spec.tls.
func certificateCondition(reg *v1alpha1.Registry, s *scope) *metav1.Condition {
	if reg.Spec.TLS == nil {
		return nil
	}
	c := &metav1.Condition{Type: v1alpha1.ConditionCertificateReady}
	if reg.Spec.TLS.SecretRef != nil {
		secretCondition(c, s.tls, "TLS")
		return c
	}
	ref := reg.Spec.TLS.IssuerRef
	cs := s.cert
	switch {
	case cs == nil || !cs.installed:
		c.Status, c.Reason = metav1.ConditionFalse, v1alpha1.ReasonCertManagerMissing
		c.Message = "tls.issuerRef needs cert-manager, but its CRDs (cert-manager.io/v1) are not installed; install cert-manager or use tls.secretRef"
	case !cs.issuerFound:
		c.Status, c.Reason = metav1.ConditionFalse, v1alpha1.ReasonIssuerNotFound
		where := ""
		if ref.Kind != "ClusterIssuer" {
			where = " in namespace " + reg.Namespace
		}
		c.Message = fmt.Sprintf("%s %q not found%s", kindOr(ref.Kind), ref.Name, where)
	case !cs.issuerReady:
		c.Status, c.Reason = metav1.ConditionFalse, v1alpha1.ReasonIssuerNotReady
		c.Message = fmt.Sprintf("%s %q is not ready: %s", kindOr(ref.Kind), ref.Name, orDefault(cs.issuerMessage, "no message"))
	default:
		ready, msg := certificateReady(cs.certificate)
		switch {
		case ready && s.tls.ok():
			c.Status, c.Reason = metav1.ConditionTrue, v1alpha1.ReasonCertificateIssued
			c.Message = fmt.Sprintf("certificate issued into Secret %s", reg.TLSSecretName())
		case s.tls.ok():
			// A renewal in progress: the current certificate keeps serving.
			c.Status, c.Reason = metav1.ConditionTrue, v1alpha1.ReasonCertificateIssued
			c.Message = fmt.Sprintf("serving the certificate in Secret %s; cert-manager reports: %s", reg.TLSSecretName(), orDefault(msg, "not ready"))
		default:
			c.Status, c.Reason = metav1.ConditionFalse, v1alpha1.ReasonCertificateNotReady
			c.Message = fmt.Sprintf("waiting for cert-manager to issue Certificate %s: %s", reg.CertificateName(), orDefault(msg, "no message"))
		}
	}
	return c
}

// certificateStatus copies cert-manager's view of the certificate; nil before the first
// one is issued.
func certificateStatus(c *cmapi.Certificate) *v1alpha1.CertificateStatus {
	if c.Status.NotAfter == nil {
		return nil
	}
	cs := &v1alpha1.CertificateStatus{NotAfter: c.Status.NotAfter.DeepCopy(), RenewalTime: c.Status.RenewalTime.DeepCopy()}
	if c.Status.Revision != nil {
		cs.Revision = int32(min(*c.Status.Revision, math.MaxInt32)) //nolint:gosec // bounded just above
	}
	return cs
}

func secretCondition(c *metav1.Condition, st *secretState, what string) {
	kind, notFound, keyMissing, found := "Secret", v1alpha1.ReasonSecretNotFound, v1alpha1.ReasonSecretKeyMissing, v1alpha1.ReasonSecretFound
	if st != nil && st.kind == "ConfigMap" {
		kind, notFound, keyMissing, found = "ConfigMap", v1alpha1.ReasonConfigMapNotFound, v1alpha1.ReasonConfigMapKeyMissing, v1alpha1.ReasonConfigMapFound
	}
	switch {
	case st == nil:
		c.Status, c.Reason = metav1.ConditionUnknown, notFound
		c.Message = fmt.Sprintf("the %s %s was not read", what, kind)
	case !st.found:
		c.Status, c.Reason = metav1.ConditionFalse, notFound
		c.Message = fmt.Sprintf("%s %s %q not found in the Registry's namespace", what, kind, st.name)
	case len(st.missingKeys) > 0:
		c.Status, c.Reason = metav1.ConditionFalse, keyMissing
		c.Message = fmt.Sprintf("%s %s %q lacks key(s) %s (or they are empty)", what, kind, st.name, strings.Join(st.missingKeys, ", "))
	default:
		c.Status, c.Reason = metav1.ConditionTrue, found
		c.Message = fmt.Sprintf("%s %s %q has the expected keys", what, kind, st.name)
	}
}

// rollout summarises the Deployment's progress towards the current spec.
type rollout struct {
	complete  bool
	failed    bool
	failedMsg string
	message   string
}

func deploymentRollout(d *appsv1.Deployment, want int32) rollout {
	if d == nil {
		return rollout{message: "waiting for the Deployment to be created"}
	}
	for _, c := range d.Status.Conditions {
		if c.Type == appsv1.DeploymentProgressing && c.Status == corev1.ConditionFalse && c.Reason == "ProgressDeadlineExceeded" {
			return rollout{failed: true, failedMsg: "Deployment exceeded its progress deadline: " + c.Message}
		}
		if c.Type == appsv1.DeploymentReplicaFailure && c.Status == corev1.ConditionTrue {
			return rollout{failed: true, failedMsg: "Deployment cannot create pods: " + c.Message}
		}
	}
	st := d.Status
	switch {
	case st.ObservedGeneration < d.Generation:
		return rollout{message: "waiting for the Deployment controller to observe the new spec"}
	case st.UpdatedReplicas < want:
		return rollout{message: fmt.Sprintf("%d of %d pods run the current spec", st.UpdatedReplicas, want)}
	case st.Replicas > st.UpdatedReplicas:
		return rollout{message: fmt.Sprintf("%d old pods are terminating", st.Replicas-st.UpdatedReplicas)}
	case st.AvailableReplicas < want:
		return rollout{message: fmt.Sprintf("%d of %d pods available", st.AvailableReplicas, want)}
	}
	return rollout{complete: true}
}

func readyCondition(reg *v1alpha1.Registry, s *scope, deps []*metav1.Condition, reconcileErr error) metav1.Condition {
	c := metav1.Condition{Type: v1alpha1.ConditionReady, Status: metav1.ConditionFalse}
	if reconcileErr != nil {
		c.Reason, c.Message = v1alpha1.ReasonReconcileFailed, truncate(reconcileErr.Error(), 1024)
		return c
	}
	var notReady []string
	for _, d := range deps {
		if d != nil && d.Status != metav1.ConditionTrue {
			notReady = append(notReady, fmt.Sprintf("%s: %s", d.Type, d.Message))
		}
	}
	// A pending volume is waiting for the first pod; it does not block the Deployment.
	if len(notReady) > 0 && (s.deploymentHeld || !onlyVolumePending(deps)) {
		c.Reason, c.Message = v1alpha1.ReasonDependenciesNotReady, strings.Join(notReady, "; ")
		return c
	}
	if reason, msg, pending := restoreReady(s); pending {
		c.Reason, c.Message = reason, msg
		return c
	}
	want := reg.GetReplicas()
	ro := deploymentRollout(s.deployment, want)
	switch {
	case ro.failed:
		c.Reason, c.Message = v1alpha1.ReasonDeploymentUnavailable, ro.failedMsg
	case !ro.complete:
		c.Reason, c.Message = v1alpha1.ReasonRollingOut, ro.message
	case want == 0:
		c.Status, c.Reason, c.Message = metav1.ConditionTrue, v1alpha1.ReasonScaledToZero, "replicas is 0: the registry is stopped, its data is kept"
	default:
		c.Status, c.Reason = metav1.ConditionTrue, v1alpha1.ReasonAvailable
		c.Message = fmt.Sprintf("%d of %d pods available at %s", want, want, reg.URL())
	}
	return c
}

func onlyVolumePending(deps []*metav1.Condition) bool {
	for _, d := range deps {
		if d != nil && d.Status != metav1.ConditionTrue && d.Reason != v1alpha1.ReasonVolumePending {
			return false
		}
	}
	return true
}

func progressingCondition(reg *v1alpha1.Registry, s *scope, reconcileErr error) metav1.Condition {
	c := metav1.Condition{Type: v1alpha1.ConditionProgressing, Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonAsExpected, Message: "the current spec is rolled out"}
	if reconcileErr != nil {
		c.Reason, c.Message = v1alpha1.ReasonReconcileFailed, "cannot progress until the reconcile error is resolved"
		return c
	}
	if s.deploymentHeld {
		c.Reason, c.Message = v1alpha1.ReasonDependenciesNotReady, "waiting for referenced Secrets before rolling out"
		return c
	}
	ro := deploymentRollout(s.deployment, reg.GetReplicas())
	if !ro.complete && !ro.failed {
		c.Status, c.Reason, c.Message = metav1.ConditionTrue, v1alpha1.ReasonRollingOut, ro.message
	}
	return c
}

func degradedCondition(s *scope, reconcileErr error) metav1.Condition {
	c := metav1.Condition{Type: v1alpha1.ConditionDegraded, Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonAsExpected, Message: "no failures"}
	var want int32
	if s.reg != nil {
		want = s.reg.GetReplicas()
	}
	switch ro := deploymentRollout(s.deployment, want); {
	case reconcileErr != nil:
		c.Status, c.Reason, c.Message = metav1.ConditionTrue, v1alpha1.ReasonReconcileFailed, truncate(reconcileErr.Error(), 1024)
	case ro.failed:
		c.Status, c.Reason, c.Message = metav1.ConditionTrue, v1alpha1.ReasonDeploymentUnavailable, ro.failedMsg
	case s.lastGC != nil && s.lastGC.Result == registryconfig.GCResultFailed:
		c.Status, c.Reason = metav1.ConditionTrue, v1alpha1.ReasonGarbageCollectionFailed
		c.Message = fmt.Sprintf("garbage-collection job %s failed: %s", s.lastGC.JobName, orDefault(s.lastGC.Message, "no message"))
	}
	return c
}

func kindOr(k string) string { return orDefault(k, "Issuer") }

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
