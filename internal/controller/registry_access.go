package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/dockyard-dev/dockyard/api/v1alpha1"
	"github.com/dockyard-dev/dockyard/internal/registryconfig"
	resources "github.com/dockyard-dev/dockyard/internal/resources/registry"
	"github.com/dockyard-dev/dockyard/internal/ssa"
)

// FinalizerClusterAccess removes, when a Registry is deleted, what it owns outside its
// namespace: the ClusterRoleBinding of its pods and its pull Secrets (with their entries
// in ServiceAccounts). Without the operator running, `kubectl patch registry NAME --type
// merge -p '{"metadata":{"finalizers":null}}'` releases a Registry (and leaves them).
const FinalizerClusterAccess = "registry.dockyard.dev/cluster-access"

// AccessReconciler keeps a Registry's Kubernetes-native access outside its namespace: the
// ClusterRoleBinding that lets its pods review tokens and access (spec.auth.serviceAccounts,
// spec.auth.kubernetesRBAC), and the pull Secrets of spec.pullSecrets. It is its own
// controller because namespaces and ServiceAccounts anywhere in the cluster wake it, and
// those should not re-run the Registry's reconcile.
type AccessReconciler struct {
	Client    client.Client
	APIReader client.Reader
	// ClusterDomain is the cluster's DNS suffix (host names in pull Secrets).
	ClusterDomain string
	// Clock returns the time; time.Now when nil.
	Clock   func() time.Time
	applier *ssa.Applier
}

// +kubebuilder:rbac:groups=registry.dockyard.dev,resources=registries,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=serviceaccounts,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups=rbac.authorization.k8s.io,resources=clusterrolebindings,verbs=get;create;patch;delete
// +kubebuilder:rbac:groups=rbac.authorization.k8s.io,resources=clusterroles,verbs=bind,resourceNames=system:auth-delegator

func (r *AccessReconciler) now() time.Time {
	if r.Clock != nil {
		return r.Clock()
	}
	return time.Now()
}

// needsClusterAccess reports whether reg owns anything outside its namespace.
func needsClusterAccess(reg *v1alpha1.Registry) bool {
	return reg.DeletionTimestamp == nil && (reg.UsesKubernetesAuth() || reg.Spec.PullSecrets != nil)
}

// Reconcile implements reconcile.Reconciler.
func (r *AccessReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	reg := &v1alpha1.Registry{}
	if err := r.Client.Get(ctx, req.NamespacedName, reg); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !needsClusterAccess(reg) {
		if !controllerutil.ContainsFinalizer(reg, FinalizerClusterAccess) {
			return ctrl.Result{}, nil
		}
		if err := r.cleanup(ctx, reg); err != nil {
			return ctrl.Result{}, err
		}
		if reg.DeletionTimestamp == nil {
			if err := r.patchPullStatus(ctx, reg, nil); err != nil {
				return ctrl.Result{}, err
			}
		}
		base := reg.DeepCopy()
		controllerutil.RemoveFinalizer(reg, FinalizerClusterAccess)
		// The finalizers list is replaced whole by a merge patch: lock on the version read.
		return ctrl.Result{}, client.IgnoreNotFound(r.Client.Patch(ctx, reg, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})))
	}
	if !controllerutil.ContainsFinalizer(reg, FinalizerClusterAccess) {
		base := reg.DeepCopy()
		controllerutil.AddFinalizer(reg, FinalizerClusterAccess)
		if err := r.Client.Patch(ctx, reg, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})); err != nil {
			return ctrl.Result{}, err
		}
	}
	if err := r.reconcileAuthDelegator(ctx, reg); err != nil {
		return ctrl.Result{}, err
	}
	return r.reconcilePullSecrets(ctx, reg)
}

// reconcileAuthDelegator keeps (or removes) the ClusterRoleBinding of the registry pods.
func (r *AccessReconciler) reconcileAuthDelegator(ctx context.Context, reg *v1alpha1.Registry) error {
	current := &rbacv1.ClusterRoleBinding{}
	err := r.APIReader.Get(ctx, client.ObjectKey{Name: reg.AuthDelegatorBindingName()}, current)
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("get ClusterRoleBinding %s: %w", reg.AuthDelegatorBindingName(), err)
	}
	exists := err == nil
	allowed := false
	if reg.UsesKubernetesAuth() {
		ns := &corev1.Namespace{}
		if err := r.Client.Get(ctx, client.ObjectKey{Name: reg.Namespace}, ns); err != nil {
			return fmt.Errorf("get Namespace %s: %w", reg.Namespace, err)
		}
		// Editing a Registry must not be enough to get cluster-wide reviews: an
		// administrator allows it per namespace (AuthReady says so until then).
		allowed = v1alpha1.AuthDelegationAllowed(ns.Labels)
	}
	if !allowed {
		if exists {
			return client.IgnoreNotFound(r.Client.Delete(ctx, current))
		}
		return nil
	}
	rv := ""
	if exists {
		rv = current.ResourceVersion
	}
	_, err = r.applier.Apply(ctx, resources.AuthDelegatorBinding(reg), rv)
	return err
}

// ownedPullSecrets lists reg's pull Secrets in every namespace (metadata only).
func (r *AccessReconciler) ownedPullSecrets(ctx context.Context, reg *v1alpha1.Registry) ([]metav1.PartialObjectMetadata, error) {
	list := &metav1.PartialObjectMetadataList{}
	list.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("SecretList"))
	sel := labels.SelectorFromSet(resources.OwnerLabels(reg, resources.ComponentPullSecret))
	if err := r.Client.List(ctx, list, client.MatchingLabelsSelector{Selector: sel}); err != nil {
		return nil, fmt.Errorf("list pull Secrets: %w", err)
	}
	return list.Items, nil
}

// cleanup removes everything reg owns outside its namespace.
func (r *AccessReconciler) cleanup(ctx context.Context, reg *v1alpha1.Registry) error {
	crb := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: reg.AuthDelegatorBindingName()}}
	if err := client.IgnoreNotFound(r.Client.Delete(ctx, crb)); err != nil {
		return fmt.Errorf("delete ClusterRoleBinding %s: %w", crb.Name, err)
	}
	owned, err := r.ownedPullSecrets(ctx, reg)
	if err != nil {
		return err
	}
	for _, s := range owned {
		if err := r.removePullSecret(ctx, reg, s.Namespace); err != nil {
			return err
		}
	}
	return nil
}

// removePullSecret takes reg's pull Secret out of every ServiceAccount of namespace, then
// deletes it.
func (r *AccessReconciler) removePullSecret(ctx context.Context, reg *v1alpha1.Registry, namespace string) error {
	sas := &corev1.ServiceAccountList{}
	if err := r.Client.List(ctx, sas, client.InNamespace(namespace)); err != nil {
		return fmt.Errorf("list ServiceAccounts in %s: %w", namespace, err)
	}
	for i := range sas.Items {
		if err := r.setImagePullSecret(ctx, &sas.Items[i], reg.PullSecretName(), false); err != nil {
			return err
		}
	}
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: reg.PullSecretName()}}
	if err := client.IgnoreNotFound(r.Client.Delete(ctx, s)); err != nil {
		return fmt.Errorf("delete pull Secret %s/%s: %w", namespace, s.Name, err)
	}
	r.applier.Forget(corev1.SchemeGroupVersion.WithKind("Secret"), s)
	return nil
}

// setImagePullSecret adds (or removes) name to a ServiceAccount's imagePullSecrets, with
// an optimistic lock (the list is atomic: a patch replaces it whole).
func (r *AccessReconciler) setImagePullSecret(ctx context.Context, sa *corev1.ServiceAccount, name string, want bool) error {
	has := slices.ContainsFunc(sa.ImagePullSecrets, func(ref corev1.LocalObjectReference) bool { return ref.Name == name })
	if has == want {
		return nil
	}
	base := sa.DeepCopy()
	if want {
		sa.ImagePullSecrets = append(sa.ImagePullSecrets, corev1.LocalObjectReference{Name: name})
	} else {
		sa.ImagePullSecrets = slices.DeleteFunc(sa.ImagePullSecrets, func(ref corev1.LocalObjectReference) bool { return ref.Name == name })
	}
	patch := client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})
	if err := client.IgnoreNotFound(r.Client.Patch(ctx, sa, patch)); err != nil {
		return fmt.Errorf("update imagePullSecrets of ServiceAccount %s/%s: %w", sa.Namespace, sa.Name, err)
	}
	return nil
}

// pullSecretRetry is when a failed or incomplete pass is tried again (a ServiceAccount the
// controller-manager has not created yet in a new namespace, token keys not written yet).
const pullSecretRetry = 5 * time.Second

// reconcilePullSecrets writes, renews and removes reg's pull Secrets.
func (r *AccessReconciler) reconcilePullSecrets(ctx context.Context, reg *v1alpha1.Registry) (ctrl.Result, error) {
	ps := reg.Spec.PullSecrets
	owned, err := r.ownedPullSecrets(ctx, reg)
	if err != nil {
		return ctrl.Result{}, err
	}
	if ps == nil {
		for _, s := range owned {
			if err := r.removePullSecret(ctx, reg, s.Namespace); err != nil {
				return ctrl.Result{}, err
			}
		}
		return ctrl.Result{}, r.patchPullStatus(ctx, reg, nil)
	}
	st := &v1alpha1.PullSecretsStatus{SecretName: reg.PullSecretName()}
	sel, err := metav1.LabelSelectorAsSelector(&ps.NamespaceSelector)
	if err != nil {
		// CEL cannot check selector syntax in full; say so where the user looks.
		st.Message = "spec.pullSecrets.namespaceSelector: " + err.Error()
		return ctrl.Result{}, r.patchPullStatus(ctx, reg, st)
	}
	keys, err := r.tokenKeys(ctx, reg)
	if err != nil || len(keys.Keys) == 0 {
		st.Message = "waiting for the token keys Secret " + reg.TokenKeysSecretName()
		if err != nil {
			st.Message += ": " + err.Error()
		}
		return ctrl.Result{RequeueAfter: pullSecretRetry}, r.patchPullStatus(ctx, reg, st)
	}
	nss := &corev1.NamespaceList{}
	if err := r.Client.List(ctx, nss, client.MatchingLabelsSelector{Selector: sel}); err != nil {
		return ctrl.Result{}, fmt.Errorf("list namespaces: %w", err)
	}
	selected := map[string]bool{}
	for _, ns := range nss.Items {
		// A namespace other than the Registry's own takes pull Secrets only when it asks
		// for them (a label its editors cannot set): editing a Registry must not be enough
		// to put credentials into, and patch the ServiceAccounts of, every namespace.
		if ns.DeletionTimestamp == nil && ns.Status.Phase != corev1.NamespaceTerminating && reg.AcceptsPullSecrets(ns.Name, ns.Labels) {
			selected[ns.Name] = true
		}
	}
	// Namespaces that left the selector lose their Secret and ServiceAccount entries.
	current := map[string]metav1.PartialObjectMetadata{}
	for _, s := range owned {
		if !selected[s.Namespace] {
			if err := r.removePullSecret(ctx, reg, s.Namespace); err != nil {
				return ctrl.Result{}, err
			}
			continue
		}
		current[s.Namespace] = s
	}
	now := r.now()
	lifetime := ps.GetCredentialLifetime()
	signing, err := registryconfig.SigningKey(keys, now)
	if err != nil {
		return ctrl.Result{}, err
	}
	hosts := reg.RegistryHosts(r.ClusterDomain)
	hostsHash := resources.HostsHash(hosts)
	wanted := ps.PullServiceAccounts()
	var next time.Time
	retry := false
	names := make([]string, 0, len(selected))
	for ns := range selected {
		names = append(names, ns)
	}
	slices.Sort(names)
	for _, ns := range names {
		renewAt := now
		if s, ok := current[ns]; ok {
			renewAt = resources.PullSecretRenewAt(s.Annotations, signing.ID, hostsHash, now)
		}
		if !renewAt.After(now) {
			renewAt, err = r.writePullSecret(ctx, reg, ns, keys, hosts, now, lifetime)
			if err != nil {
				return ctrl.Result{}, err
			}
		}
		if next.IsZero() || renewAt.Before(next) {
			next = renewAt
		}
		n, missing, err := r.attachPullSecret(ctx, reg, ns, wanted)
		if err != nil {
			return ctrl.Result{}, err
		}
		st.ServiceAccounts += n
		retry = retry || missing
		st.Namespaces++
	}
	if !next.IsZero() {
		st.NextRenewalTime = &metav1.Time{Time: next.UTC().Truncate(time.Second)}
	}
	if err := r.patchPullStatus(ctx, reg, st); err != nil {
		return ctrl.Result{}, err
	}
	// A key that starts signing later makes every credential stale: renew then.
	for _, k := range keys.Keys {
		if k.SignFrom.After(now) && (next.IsZero() || k.SignFrom.Before(next)) {
			next = k.SignFrom.Add(time.Second)
		}
	}
	res := ctrl.Result{}
	if !next.IsZero() {
		res.RequeueAfter = max(time.Second, next.Sub(now))
	}
	if retry && (res.RequeueAfter == 0 || res.RequeueAfter > pullSecretRetry) {
		res.RequeueAfter = pullSecretRetry
	}
	return res, nil
}

// tokenKeys reads the Registry's token keys (Secret data is not cached).
func (r *AccessReconciler) tokenKeys(ctx context.Context, reg *v1alpha1.Registry) (registryconfig.TokenKeys, error) {
	var keys registryconfig.TokenKeys
	sec := &corev1.Secret{}
	if err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: reg.Namespace, Name: reg.TokenKeysSecretName()}, sec); err != nil {
		return keys, client.IgnoreNotFound(err)
	}
	if err := json.Unmarshal(sec.Data[registryconfig.TokenKeysKey], &keys); err != nil {
		return keys, fmt.Errorf("token keys unreadable: %w", err)
	}
	return keys, nil
}

// writePullSecret signs a new credential for namespace and writes the Secret; it returns
// when to renew it.
func (r *AccessReconciler) writePullSecret(ctx context.Context, reg *v1alpha1.Registry, ns string, keys registryconfig.TokenKeys, hosts []string, now time.Time, lifetime time.Duration) (time.Time, error) {
	cred, kid, err := registryconfig.SignPullCredential(keys, reg.TokenIssuer(), reg.TokenService(), ns,
		resources.PullRepositories(ns), now, lifetime)
	if err != nil {
		return time.Time{}, err
	}
	expires := now.Add(lifetime)
	sec, err := resources.PullSecret(reg, ns, cred, kid, hosts, now, expires)
	if err != nil {
		return time.Time{}, err
	}
	// Apply without the cache's view: the Secret's data changes on every renewal.
	if _, err := r.applier.Apply(ctx, sec, ""); err != nil {
		return time.Time{}, fmt.Errorf("write pull Secret %s/%s: %w", ns, sec.Name, err)
	}
	return now.Add(lifetime / 2), nil
}

// attachPullSecret puts the pull Secret into the imagePullSecrets of the wanted
// ServiceAccounts of ns and takes it out of the others. It returns how many have it and
// whether a named one does not exist (yet).
func (r *AccessReconciler) attachPullSecret(ctx context.Context, reg *v1alpha1.Registry, ns string, wanted []string) (int32, bool, error) {
	sas := &corev1.ServiceAccountList{}
	if err := r.Client.List(ctx, sas, client.InNamespace(ns)); err != nil {
		return 0, false, fmt.Errorf("list ServiceAccounts in %s: %w", ns, err)
	}
	all := slices.Contains(wanted, "*")
	found := map[string]bool{}
	var n int32
	for i := range sas.Items {
		sa := &sas.Items[i]
		want := all || slices.Contains(wanted, sa.Name)
		found[sa.Name] = true
		if err := r.setImagePullSecret(ctx, sa, reg.PullSecretName(), want); err != nil {
			return 0, false, err
		}
		if want {
			n++
		}
	}
	missing := false
	for _, w := range wanted {
		if w != "*" && !found[w] {
			missing = true
		}
	}
	return n, missing, nil
}

// patchPullStatus writes status.pullSecrets (and nothing else: the Registry controller owns
// the rest of the status).
func (r *AccessReconciler) patchPullStatus(ctx context.Context, reg *v1alpha1.Registry, st *v1alpha1.PullSecretsStatus) error {
	if equalPullStatus(reg.Status.PullSecrets, st) {
		return nil
	}
	base := reg.DeepCopy()
	reg.Status.PullSecrets = st
	if err := r.Client.Status().Patch(ctx, reg, client.MergeFrom(base)); err != nil {
		return fmt.Errorf("update status.pullSecrets of Registry %s/%s: %w", reg.Namespace, reg.Name, err)
	}
	return nil
}

func equalPullStatus(a, b *v1alpha1.PullSecretsStatus) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.SecretName == b.SecretName && a.Namespaces == b.Namespaces && a.ServiceAccounts == b.ServiceAccounts &&
		a.Message == b.Message && a.NextRenewalTime.Equal(b.NextRenewalTime)
}

// SetupWithManager registers the controller and its watches.
func (r *AccessReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Client == nil {
		r.Client = mgr.GetClient()
	}
	if r.APIReader == nil {
		r.APIReader = mgr.GetAPIReader()
	}
	if r.ClusterDomain == "" {
		r.ClusterDomain = v1alpha1.DefaultClusterDomain
	}
	r.applier = ssa.NewApplier(r.Client, FieldOwner)
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &v1alpha1.Registry{}, IndexPullSecrets, func(o client.Object) []string {
		if o.(*v1alpha1.Registry).Spec.PullSecrets != nil {
			return []string{"true"}
		}
		return nil
	}); err != nil {
		return err
	}
	specChanged := predicate.Funcs{
		UpdateFunc: func(e event.UpdateEvent) bool {
			return e.ObjectOld.GetGeneration() != e.ObjectNew.GetGeneration() ||
				e.ObjectNew.GetDeletionTimestamp() != nil ||
				!slices.Equal(e.ObjectOld.GetFinalizers(), e.ObjectNew.GetFinalizers())
		},
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("registry-access").
		For(&v1alpha1.Registry{}, builder.WithPredicates(specChanged)).
		Watches(&corev1.Namespace{}, handler.EnqueueRequestsFromMapFunc(r.registriesForNamespace)).
		Watches(&corev1.ServiceAccount{}, handler.EnqueueRequestsFromMapFunc(r.registriesWithPullSecrets)).
		// A pull Secret deleted by hand is written again; new token keys renew credentials.
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
			return append(mapByOwnerLabels(ctx, o), mapByRegistryLabel(ctx, o)...)
		}), builder.OnlyMetadata).
		Complete(r)
}

// registriesWithPullSecrets maps a namespace or ServiceAccount event to every Registry that
// writes pull Secrets (the selector is evaluated in Reconcile).
//
// It reads the index, not every Registry: each ServiceAccount event (the operator creates
// one per Registry) listing and copying all Registries made this quadratic, the largest
// allocation of the manager with 1,000 Registries (make bench).
func (r *AccessReconciler) registriesWithPullSecrets(ctx context.Context, _ client.Object) []reconcile.Request {
	var list v1alpha1.RegistryList
	if err := r.Client.List(ctx, &list, client.MatchingFields{IndexPullSecrets: "true"}, client.UnsafeDisableDeepCopy); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "List Registries")
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for i := range list.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])})
	}
	return reqs
}

// IndexPullSecrets indexes Registries that set spec.pullSecrets (value "true").
const IndexPullSecrets = "registry.dockyard.dev/pull-secrets"

// registriesForNamespace maps a namespace event to the Registries that write pull Secrets
// and to the Registries in it that ask the API server (its labels gate their binding).
func (r *AccessReconciler) registriesForNamespace(ctx context.Context, o client.Object) []reconcile.Request {
	reqs := r.registriesWithPullSecrets(ctx, o)
	var list v1alpha1.RegistryList
	if err := r.Client.List(ctx, &list, client.InNamespace(o.GetName()), client.UnsafeDisableDeepCopy); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "List Registries", "namespace", o.GetName())
		return reqs
	}
	for _, reg := range list.Items {
		if reg.UsesKubernetesAuth() && reg.Spec.PullSecrets == nil {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&reg)})
		}
	}
	return reqs
}

func mapByOwnerLabels(_ context.Context, o client.Object) []reconcile.Request {
	l := o.GetLabels()
	ns, name := l[resources.LabelOwnerNamespace], l[resources.LabelOwnerName]
	if ns == "" || name == "" {
		return nil
	}
	return []reconcile.Request{{NamespacedName: client.ObjectKey{Namespace: ns, Name: name}}}
}
