package controller

import (
	"context"
	"crypto/rand"
	"fmt"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"

	"github.com/dockyard-dev/dockyard/api/v1alpha1"
	"github.com/dockyard-dev/dockyard/internal/registryconfig"
	resources "github.com/dockyard-dev/dockyard/internal/resources/registry"
)

// reconcileChildren applies every child object. The Deployment and the GC CronJob are held
// back while a Secret their pods need is missing, so a broken reference never replaces
// working pods with pods that cannot start.
func (r *RegistryReconciler) reconcileChildren(ctx context.Context, s *scope) (ctrl.Result, error) {
	reg := s.reg
	in := resources.Inputs{
		Image:           r.Image,
		ClusterDomain:   r.ClusterDomain,
		UsersHaveGroups: s.usersGroups,
		EventsURL:       r.EventsURL,
	}
	rendered, err := resources.Config(reg, in).Marshal()
	if err != nil {
		return ctrl.Result{}, fmt.Errorf("render config of Registry %s/%s: %w", reg.Namespace, reg.Name, err)
	}
	httpSecretUID, err := r.ensureHTTPSecret(ctx, reg)
	if err != nil {
		return ctrl.Result{}, err
	}
	in.InputsHash = inputsHash(s.inputsHash, rendered, httpSecretUID)
	// The token keys are read live by the pods (not part of the hash): rotating them never
	// restarts a pod.
	rotateIn, tokenKeys, err := r.ensureTokenKeys(ctx, reg)
	if err != nil {
		return ctrl.Result{}, err
	}
	result := ctrl.Result{RequeueAfter: rotateIn}
	robotsIn, err := r.reconcileRobots(ctx, reg)
	if err != nil {
		return ctrl.Result{}, err
	}
	result = lowestRequeue(result, ctrl.Result{RequeueAfter: robotsIn})

	if err := r.apply(ctx, resources.ServiceAccount(reg), &corev1.ServiceAccount{}); err != nil {
		return ctrl.Result{}, err
	}
	scanner := r.readScannerSecret(ctx, reg)
	compliance, err := r.complianceFile(ctx, reg, scanner)
	if err != nil {
		return ctrl.Result{}, err
	}
	if err := r.apply(ctx, resources.ConfigMap(reg, rendered, compliance), &corev1.ConfigMap{}); err != nil {
		return ctrl.Result{}, err
	}
	if pvc := resources.PersistentVolumeClaim(reg); pvc != nil {
		if err := r.apply(ctx, pvc, &corev1.PersistentVolumeClaim{}); err != nil {
			return ctrl.Result{}, err
		}
	}
	if err := r.apply(ctx, resources.Service(reg), &corev1.Service{}); err != nil {
		return ctrl.Result{}, err
	}
	if r.CertManager {
		if err := r.applyOrDelete(ctx, reg, certificateOrNil(reg, in), &cmapi.Certificate{}, reg.CertificateName()); err != nil {
			return ctrl.Result{}, err
		}
	}
	if r.PrometheusOperator {
		pm := podMonitorOrNil(reg)
		if err := r.applyOrDelete(ctx, reg, pm, &monitoringv1.PodMonitor{}, reg.ServiceName()); err != nil {
			return ctrl.Result{}, err
		}
		s.podMonitor = pm != nil
		pr := prometheusRuleOrNil(reg)
		if err := r.applyOrDelete(ctx, reg, pr, &monitoringv1.PrometheusRule{}, reg.ServiceName()); err != nil {
			return ctrl.Result{}, err
		}
		s.prometheusRule = pr != nil
	}
	if err := r.applyOrDelete(ctx, reg, pdbOrNil(reg), &policyv1.PodDisruptionBudget{}, reg.ServiceName()); err != nil {
		return ctrl.Result{}, err
	}
	if err := r.applyOrDelete(ctx, reg, netpolOrNil(reg), &networkingv1.NetworkPolicy{}, reg.ServiceName()); err != nil {
		return ctrl.Result{}, err
	}
	if err := r.applyOrDelete(ctx, reg, ingressOrNil(reg), &networkingv1.Ingress{}, reg.ServiceName()); err != nil {
		return ctrl.Result{}, err
	}

	s.deploymentHeld = !podInputsPresent(s)
	if s.deploymentHeld {
		ctrl.LoggerFrom(ctx).Info("Holding back Deployment and CronJob until referenced Secrets are complete")
		s.childrenApplied = true
		return result, nil
	}
	if err := r.reconcileBackupObjects(ctx, s, in); err != nil {
		return ctrl.Result{}, err
	}
	if restorePending(s) {
		// The registry starts on the restored storage, never before.
		s.childrenApplied = true
		return result, nil
	}
	if err := r.apply(ctx, resources.Deployment(reg, in), &appsv1.Deployment{}); err != nil {
		return ctrl.Result{}, err
	}
	if err := r.applyOrDelete(ctx, reg, cronJobOrNil(reg, in), &batchv1.CronJob{}, reg.CronJobName()); err != nil {
		return ctrl.Result{}, err
	}
	var backupCron client.Object
	if cj := resources.BackupCronJob(reg, in); cj != nil {
		backupCron = cj
	}
	if err := r.applyOrDelete(ctx, reg, backupCron, &batchv1.CronJob{}, resources.BackupCronJobName(reg)); err != nil {
		return ctrl.Result{}, err
	}
	if err := r.applyOrDelete(ctx, reg, nodeTrustOrNil(reg, in), &appsv1.DaemonSet{}, reg.NodeTrustName()); err != nil {
		return ctrl.Result{}, err
	}
	scannerIn, err := r.reconcileScanner(ctx, reg, in, tokenKeys, scanner)
	if err != nil {
		return ctrl.Result{}, err
	}
	result = lowestRequeue(result, ctrl.Result{RequeueAfter: scannerIn})
	s.childrenApplied = true
	return result, nil
}

// podMonitorOrNil is the Registry's PodMonitor, or nil when monitoring is disabled.
func podMonitorOrNil(reg *v1alpha1.Registry) client.Object {
	if pm := resources.PodMonitor(reg); pm != nil {
		return pm
	}
	return nil
}

// prometheusRuleOrNil is the Registry's PrometheusRule, or nil when monitoring or its alerts
// are disabled.
func prometheusRuleOrNil(reg *v1alpha1.Registry) client.Object {
	if pr := resources.PrometheusRule(reg); pr != nil {
		return pr
	}
	return nil
}

// nodeTrustOrNil is the node-trust DaemonSet, or nil without spec.nodeTrust (deleting it
// makes its pods remove what they wrote on the nodes).
func nodeTrustOrNil(reg *v1alpha1.Registry, in resources.Inputs) client.Object {
	if reg.Spec.NodeTrust == nil || reg.Spec.TLS == nil {
		return nil
	}
	return resources.NodeTrustDaemonSet(reg, in)
}

// podInputsPresent reports whether every Secret the registry pods mount or read exists
// with its keys.
func podInputsPresent(s *scope) bool {
	for _, st := range []*secretState{s.users, s.credentials, s.tls} {
		if st != nil && !st.ok() {
			return false
		}
	}
	return true
}

func inputsHash(deps string, rendered []byte, httpSecretUID string) string {
	return shortHash(deps, string(rendered), httpSecretUID)
}

// apply applies obj unless the cached copy shows our last apply is still in place.
// current is an empty object of obj's type, used to read the cache.
func (r *RegistryReconciler) apply(ctx context.Context, obj, current client.Object) error {
	rv := ""
	err := r.Client.Get(ctx, client.ObjectKeyFromObject(obj), current)
	switch {
	case err == nil:
		rv = current.GetResourceVersion()
	case !apierrors.IsNotFound(err):
		return fmt.Errorf("get %T %s: %w", current, client.ObjectKeyFromObject(obj), err)
	}
	if _, err := r.applier.Apply(ctx, obj, rv); err != nil {
		return err
	}
	return nil
}

// applyOrDelete applies desired, or, when desired is nil, deletes the object of that name
// if the Registry owns it (an option was switched off).
func (r *RegistryReconciler) applyOrDelete(ctx context.Context, reg *v1alpha1.Registry, desired, current client.Object, name string) error {
	if desired != nil {
		return r.apply(ctx, desired, current)
	}
	err := r.Client.Get(ctx, client.ObjectKey{Namespace: reg.Namespace, Name: name}, current)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("get %T %s/%s: %w", current, reg.Namespace, name, err)
	}
	if !resources.IsOwnedBy(current, reg) {
		return nil
	}
	ctrl.LoggerFrom(ctx).Info("Deleting child no longer wanted", "kind", fmt.Sprintf("%T", current), "name", name)
	err = r.Client.Delete(ctx, current, client.Preconditions{UID: ptrTo(current.GetUID())})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete %T %s/%s: %w", current, reg.Namespace, name, err)
	}
	if gvk, err := apiutil.GVKForObject(current, r.Scheme); err == nil {
		r.applier.Forget(gvk, current)
	}
	return nil
}

// ensureHTTPSecret creates the shared HTTP secret once. It is never rewritten: changing it
// would invalidate uploads in progress. Only its metadata is read (from the cache).
func (r *RegistryReconciler) ensureHTTPSecret(ctx context.Context, reg *v1alpha1.Registry) (string, error) {
	key := client.ObjectKey{Namespace: reg.Namespace, Name: reg.HTTPSecretName()}
	pm := &metav1.PartialObjectMetadata{}
	pm.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
	err := r.Client.Get(ctx, key, pm)
	if err == nil {
		return string(pm.UID), nil
	}
	if !apierrors.IsNotFound(err) {
		return "", fmt.Errorf("get Secret %s: %w", key, err)
	}
	buf := make([]byte, 32)
	if _, err := rand.Read(buf); err != nil {
		return "", fmt.Errorf("generate HTTP secret: %w", err)
	}
	sec := resources.HTTPSecret(reg, []byte(fmt.Sprintf("%x", buf)))
	ctrl.LoggerFrom(ctx).Info("Creating shared HTTP secret", "secret", key)
	if err := r.Client.Create(ctx, sec, client.FieldOwner(FieldOwner)); err != nil {
		if apierrors.IsAlreadyExists(err) {
			// The cache lags behind a create of ours; read the UID from the server.
			if err := r.APIReader.Get(ctx, key, pm); err != nil {
				return "", fmt.Errorf("get Secret %s: %w", key, err)
			}
			return string(pm.UID), nil
		}
		return "", fmt.Errorf("create Secret %s: %w", key, err)
	}
	return string(sec.UID), nil
}

// Typed-nil guards: a nil *T stored in a client.Object interface is not == nil.

func certificateOrNil(reg *v1alpha1.Registry, in resources.Inputs) client.Object {
	if c := resources.Certificate(reg, in); c != nil {
		return c
	}
	return nil
}

func pdbOrNil(reg *v1alpha1.Registry) client.Object {
	if p := resources.PodDisruptionBudget(reg); p != nil {
		return p
	}
	return nil
}

func netpolOrNil(reg *v1alpha1.Registry) client.Object {
	if n := resources.NetworkPolicy(reg); n != nil {
		return n
	}
	return nil
}

func ingressOrNil(reg *v1alpha1.Registry) client.Object {
	if i := resources.Ingress(reg); i != nil {
		return i
	}
	return nil
}

func cronJobOrNil(reg *v1alpha1.Registry, in resources.Inputs) client.Object {
	if c := resources.CronJob(reg, in); c != nil {
		return c
	}
	return nil
}

func ptrTo[T any](v T) *T { return &v }

// deleteSecret deletes one of the Registry's generated Secrets if the cache (metadata only)
// shows it, so a reconcile with nothing to delete sends no request.
func (r *RegistryReconciler) deleteSecret(ctx context.Context, reg *v1alpha1.Registry, name string) error {
	pm := &metav1.PartialObjectMetadata{}
	pm.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
	if err := r.Client.Get(ctx, client.ObjectKey{Namespace: reg.Namespace, Name: name}, pm); err != nil {
		return client.IgnoreNotFound(err)
	}
	ctrl.LoggerFrom(ctx).Info("Deleting generated Secret", "secret", client.ObjectKeyFromObject(pm))
	if err := client.IgnoreNotFound(r.Client.Delete(ctx, pm)); err != nil {
		return fmt.Errorf("delete Secret %s/%s: %w", reg.Namespace, name, err)
	}
	r.applier.Forget(corev1.SchemeGroupVersion.WithKind("Secret"), pm)
	return nil
}

// complianceFile renders the policy a registry that refuses non-compliant pulls reads
// (nil for the others), with the scanner's public key from scanner (readScannerSecret):
// the key the registry trusts is the one the scanner signs with.
func (r *RegistryReconciler) complianceFile(ctx context.Context, reg *v1alpha1.Registry, scanner scannerSecret) ([]byte, error) {
	if !resources.RefusesPulls(reg) {
		return nil, nil
	}
	if err := scanner.err; err != nil {
		// Keep the policy the pods read (the scanner step reports the same error) rather
		// than hold back every other change to the Registry.
		cm := &corev1.ConfigMap{}
		if gerr := r.Client.Get(ctx, client.ObjectKey{Namespace: reg.Namespace, Name: reg.ConfigMapName()}, cm); gerr == nil {
			if old, ok := cm.Data[registryconfig.ComplianceFileName]; ok {
				ctrl.LoggerFrom(ctx).Error(err, "Keeping the registry's compliance policy as it was")
				return []byte(old), nil
			}
		}
		return nil, err
	}
	data, err := resources.ComplianceFile(reg, scanner.pub)
	if err != nil {
		return nil, fmt.Errorf("render the compliance policy of Registry %s/%s: %w", reg.Namespace, reg.Name, err)
	}
	return data, nil
}
