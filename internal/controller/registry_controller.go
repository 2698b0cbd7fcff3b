// Package controller holds Dockyard's reconcilers.
package controller

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/dockyard-dev/dockyard/api/v1alpha1"
	"github.com/dockyard-dev/dockyard/internal/registryconfig"
	"github.com/dockyard-dev/dockyard/internal/ssa"
)

// FieldOwner is the server-side-apply field manager of every object Dockyard writes.
const FieldOwner = "dockyard"

// RegistryReconciler turns a Registry into its child objects and reports their state.
type RegistryReconciler struct {
	// Client reads from the informer cache and writes to the API server.
	Client client.Client
	// APIReader reads straight from the API server; used for Secrets and Pods, which are
	// not cached in full (only their metadata is watched).
	APIReader client.Reader
	Scheme    *runtime.Scheme
	Recorder  events.EventRecorder
	// Image is the dockyard image for registry pods and GC jobs when spec.image is empty.
	Image string
	// ClusterDomain is the cluster's DNS suffix, for certificate names.
	ClusterDomain string
	// CertManager is true when cert-manager's CRDs are installed; without them a Registry
	// with tls.issuerRef reports CertificateReady=False/CertManagerNotInstalled.
	CertManager bool
	// PrometheusOperator is true when monitoring.coreos.com/v1 PodMonitors exist; each
	// Registry then gets one (spec.monitoring).
	PrometheusOperator bool
	// MaxConcurrentReconciles bounds parallel reconciles. Default 4.
	MaxConcurrentReconciles int
	// EventsURL is the operator's events endpoint registries send pushes to (see
	// registryconfig.Events); empty: they send none.
	EventsURL string
	// ScannerAddress, when set, is the host:port the manager reaches a Registry's scanner
	// at (tests); its Service otherwise. ScannerHTTP is the client (default: plain HTTP
	// with a 5 s timeout).
	ScannerAddress func(*v1alpha1.Registry) string
	ScannerHTTP    *http.Client
	// Clock returns the time (token key rotation, directory checks); time.Now when nil.
	Clock func() time.Time
	// LDAPCheck binds to a directory as the service account; access.CheckLDAP when nil.
	LDAPCheck func(ctx context.Context, cfg registryconfig.LDAP, bindPassword, caPEM []byte) error
	// OIDCCheck reads an OIDC provider's discovery document and keys; access.CheckOIDC
	// when nil.
	OIDCCheck func(ctx context.Context, issuerURL string, caPEM []byte) error

	providerChecks providerCheckCache

	applier *ssa.Applier
}

// RBAC: only the verbs the controller uses. Children are written with server-side apply
// (create + patch; finalizers/update lets owner references block deletion where the
// OwnerReferencesPermissionEnforcement admission plugin runs); only optional children (switched off in the spec) are ever deleted;
// the rest go with their owner through Kubernetes' garbage collector (the scanner's
// Deployment, Service and ConfigMap are optional children too). Secrets: the HTTP
// secret is created once and never changed; the token keys Secret is applied when its
// keys rotate and deleted when auth is switched off; referenced Secrets are only read.
// +kubebuilder:rbac:groups=registry.dockyard.dev,resources=registries,verbs=get;list;watch
// +kubebuilder:rbac:groups=registry.dockyard.dev,resources=registries/status,verbs=patch
// +kubebuilder:rbac:groups=registry.dockyard.dev,resources=registries/finalizers,verbs=update
// +kubebuilder:rbac:groups=apps,resources=deployments,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups=apps,resources=daemonsets,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups="",resources=services;configmaps;serviceaccounts;persistentvolumeclaims,verbs=get;list;watch;create;patch
// +kubebuilder:rbac:groups="",resources=configmaps;services;serviceaccounts,verbs=delete
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups="",resources=pods,verbs=list
// +kubebuilder:rbac:groups=policy,resources=poddisruptionbudgets,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups=networking.k8s.io,resources=networkpolicies;ingresses,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups=batch,resources=cronjobs,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups=batch,resources=jobs,verbs=get;list;watch;create
// +kubebuilder:rbac:groups=cert-manager.io,resources=certificates,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups=cert-manager.io,resources=issuers;clusterissuers,verbs=get
// +kubebuilder:rbac:groups=monitoring.coreos.com,resources=podmonitors;prometheusrules,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile brings one Registry's children in line with its spec and writes its status.
func (r *RegistryReconciler) Reconcile(ctx context.Context, req ctrl.Request) (result ctrl.Result, retErr error) {
	log := ctrl.LoggerFrom(ctx)
	reg := &v1alpha1.Registry{}
	if err := r.Client.Get(ctx, req.NamespacedName, reg); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !reg.DeletionTimestamp.IsZero() {
		// Children carry owner references (the PVC only with deletionPolicy Delete);
		// Kubernetes' garbage collector removes them. Nothing to do here.
		return ctrl.Result{}, nil
	}

	s := newScope(reg)
	s.promOperator = r.PrometheusOperator
	s.now = r.now()
	defer func() {
		if err := r.writeStatus(ctx, s, retErr); err != nil {
			retErr = errors.Join(retErr, err)
		}
	}()

	// Observation steps run even when applying failed: they only read, and the status is
	// truer for it. A step whose inputs were not observed does not run.
	steps := []struct {
		name  step
		needs []step
		run   func(context.Context, *scope) (ctrl.Result, error)
	}{
		{stepDependencies, nil, r.observeDependencies},
		{stepBackup, nil, r.observeBackups},
		{stepChildren, []step{stepDependencies, stepBackup}, r.reconcileChildren},
		{stepWorkload, nil, r.observeWorkload},
		{stepGC, nil, r.observeGarbageCollection},
		{stepScanner, nil, r.observeScanner},
	}
	var errs []error
	for _, st := range steps {
		if !allObserved(s, st.needs) {
			continue
		}
		res, err := st.run(ctx, s)
		if err != nil {
			log.Error(err, "Reconcile step failed", "step", string(st.name))
			s.failed[st.name] = err
			errs = append(errs, err)
			continue
		}
		s.observed[st.name] = true
		result = lowestRequeue(result, res)
	}
	if len(errs) > 0 {
		return ctrl.Result{}, errors.Join(errs...)
	}
	return result, nil
}

func allObserved(s *scope, steps []step) bool {
	for _, st := range steps {
		if !s.saw(st) {
			return false
		}
	}
	return true
}

// writeStatus computes the status once and writes it only when it changed.
func (r *RegistryReconciler) writeStatus(ctx context.Context, s *scope, reconcileErr error) error {
	reg := s.reg
	after := computeStatus(reg, s, reconcileErr)
	if equality.Semantic.DeepEqual(s.before, after) {
		return nil
	}
	r.emitTransitionEvents(reg, s.deployment, s.before, after)
	base := reg.DeepCopy()
	reg.Status = *after
	if err := r.Client.Status().Patch(ctx, reg, client.MergeFrom(base)); err != nil {
		return fmt.Errorf("update status of Registry %s/%s: %w", reg.Namespace, reg.Name, err)
	}
	return nil
}

func lowestRequeue(a, b ctrl.Result) ctrl.Result {
	if b.RequeueAfter > 0 && (a.RequeueAfter == 0 || b.RequeueAfter < a.RequeueAfter) {
		a.RequeueAfter = b.RequeueAfter
	}
	return a
}

// SetupWithManager registers the controller, its watches and field indexes.
func (r *RegistryReconciler) SetupWithManager(ctx context.Context, mgr ctrl.Manager) error {
	if r.Client == nil {
		r.Client = mgr.GetClient()
	}
	if r.APIReader == nil {
		r.APIReader = mgr.GetAPIReader()
	}
	if r.Scheme == nil {
		r.Scheme = mgr.GetScheme()
	}
	if r.Recorder == nil {
		r.Recorder = mgr.GetEventRecorder("dockyard-registry")
	}
	if r.ClusterDomain == "" {
		r.ClusterDomain = v1alpha1.DefaultClusterDomain
	}
	if r.MaxConcurrentReconciles == 0 {
		r.MaxConcurrentReconciles = 4
	}
	r.applier = ssa.NewApplier(r.Client, FieldOwner)

	if err := mgr.GetFieldIndexer().IndexField(ctx, &v1alpha1.Registry{}, IndexReferencedSecrets, func(o client.Object) []string {
		return o.(*v1alpha1.Registry).ReferencedSecrets()
	}); err != nil {
		return fmt.Errorf("index Registries by referenced Secret: %w", err)
	}

	b := ctrl.NewControllerManagedBy(mgr).
		Named("registry").
		For(&v1alpha1.Registry{}, builder.WithPredicates(predicate.Or(
			predicate.GenerationChangedPredicate{},
			predicate.AnnotationChangedPredicate{},
			predicate.LabelChangedPredicate{},
		))).
		Owns(&appsv1.Deployment{}).
		Owns(&corev1.Service{}).
		Owns(&corev1.ConfigMap{}).
		Owns(&corev1.ServiceAccount{}).
		Owns(&policyv1.PodDisruptionBudget{}).
		Owns(&networkingv1.NetworkPolicy{}).
		Owns(&networkingv1.Ingress{}).
		Owns(&batchv1.CronJob{}).
		Owns(&appsv1.DaemonSet{}).
		// The PVC is owned only with deletionPolicy Delete, and GC Jobs are owned by their
		// CronJob: both map back through the registry label.
		Watches(&corev1.PersistentVolumeClaim{}, handler.EnqueueRequestsFromMapFunc(mapByRegistryLabel)).
		Watches(&batchv1.Job{}, handler.EnqueueRequestsFromMapFunc(mapByRegistryLabel)).
		// Secrets: metadata only (no Secret data is cached). Our own (HTTP secret) map
		// through the label, referenced ones through the field index.
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(r.mapSecret), builder.OnlyMetadata).
		// A namespace's labels allow auth delegation (AuthReady).
		Watches(&corev1.Namespace{}, handler.EnqueueRequestsFromMapFunc(r.mapNamespace)).
		WithOptions(controller.Options{MaxConcurrentReconciles: r.MaxConcurrentReconciles})
	if r.CertManager {
		b = b.Owns(&cmapi.Certificate{})
	}
	if r.PrometheusOperator {
		b = b.Owns(&monitoringv1.PodMonitor{}).Owns(&monitoringv1.PrometheusRule{})
	}
	return b.Complete(r)
}

// IndexReferencedSecrets indexes Registries by the names of the Secrets they read.
const IndexReferencedSecrets = "registry.dockyard.dev/referenced-secrets"

func mapByRegistryLabel(_ context.Context, o client.Object) []reconcile.Request {
	name := o.GetLabels()["registry.dockyard.dev/registry"]
	if name == "" {
		return nil
	}
	return []reconcile.Request{{NamespacedName: client.ObjectKey{Namespace: o.GetNamespace(), Name: name}}}
}

func (r *RegistryReconciler) mapNamespace(ctx context.Context, o client.Object) []reconcile.Request {
	var list v1alpha1.RegistryList
	if err := r.Client.List(ctx, &list, client.InNamespace(o.GetName()), client.UnsafeDisableDeepCopy); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "List Registries", "namespace", o.GetName())
		return nil
	}
	var reqs []reconcile.Request
	for _, reg := range list.Items {
		if reg.UsesKubernetesAuth() {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&reg)})
		}
	}
	return reqs
}

func (r *RegistryReconciler) mapSecret(ctx context.Context, o client.Object) []reconcile.Request {
	reqs := mapByRegistryLabel(ctx, o)
	var list v1alpha1.RegistryList
	if err := r.Client.List(ctx, &list, client.InNamespace(o.GetNamespace()), client.MatchingFields{IndexReferencedSecrets: o.GetName()}, client.UnsafeDisableDeepCopy); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "List Registries referencing Secret", "secret", client.ObjectKeyFromObject(o))
		return reqs
	}
	for _, reg := range list.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&reg)})
	}
	return reqs
}
