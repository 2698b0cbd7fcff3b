package controller

import (
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/dockyard-dev/dockyard/api/v1alpha1"
	"github.com/dockyard-dev/dockyard/internal/scan"
)

// step names one part of a reconcile. A step that fails, or cannot run because a step it
// needs failed, leaves what it would have observed unobserved: the status then keeps the
// previous values of those fields and reports the conditions computed from them as
// Unknown/NotObserved, rather than treating the unobserved as absent.
type step string

const (
	stepDependencies step = "observe dependencies"
	stepChildren     step = "apply children"
	stepWorkload     step = "observe workload"
	stepGC           step = "observe garbage collection"
	stepBackup       step = "observe backups and restore"
	stepScanner      step = "observe scanner"
)

// scope is what one reconcile observed and decided; status is computed from it once.
type scope struct {
	reg    *v1alpha1.Registry
	before *v1alpha1.RegistryStatus

	// observed holds the steps that completed; failed the error of each step that did not.
	observed map[step]bool
	failed   map[step]error

	// Dependencies.
	users *secretState // nil without spec.auth.usersSecretRef
	ldap  *ldapState   // nil without spec.auth.ldap
	oidc  *oidcState   // nil without spec.auth.oidc
	// authDelegation is whether the Registry's namespace allows the binding to
	// system:auth-delegator (nil unless auth.serviceAccounts or auth.kubernetesRBAC).
	authDelegation *bool
	credentials    *secretState // nil without a storage credentials Secret
	tls            *secretState // nil without spec.tls
	cert           *certState   // nil without tls.issuerRef
	inputsHash     string
	usersGroups    bool

	// Workload.
	pvc        *corev1.PersistentVolumeClaim
	deployment *appsv1.Deployment
	// nodeTrust is the node-trust DaemonSet (spec.nodeTrust), when observed.
	nodeTrust *appsv1.DaemonSet
	// scanner is the scanner Deployment (spec.scanning), when observed; scanStatus what
	// the scanner said, or scanErr why it could not be asked.
	scanner    *appsv1.Deployment
	scanStatus *scan.Status
	scanErr    error
	// scanRequestHandled is the ScanRequestAnnotation value (its requestKey) handed to
	// the scanner in this reconcile.
	scanRequestHandled string
	// now is when the reconcile started (for ages in the status).
	now time.Time
	// deploymentHeld is true when the Deployment was not applied because a Secret its
	// pods need is missing; a running Deployment is then left untouched.
	deploymentHeld bool
	// childrenApplied is true when every child object was applied (or was up to date).
	childrenApplied bool
	// podMonitor is true when the PodMonitor was applied; promOperator when the
	// Prometheus Operator's CRDs are installed.
	podMonitor, prometheusRule, promOperator bool

	// Garbage collection.
	lastGC *v1alpha1.GarbageCollectionRun
	// lastBackup and restore start from the status and are replaced by what the backup
	// step observes; restoreJob is true when the restore Job exists.
	lastBackup, restore *v1alpha1.BackupRun
	restoreJob          bool
	// restoreRunning is true while a restore Job runs; restoreWaiting says why the restore
	// Job was not started yet.
	restoreRunning bool
	restoreWaiting string
}

// secretState is what a referenced Secret looks like to the Registry.
type secretState struct {
	// kind is "Secret" (when empty) or "ConfigMap".
	kind        string
	name        string
	found       bool
	missingKeys []string
}

func (s *secretState) ok() bool { return s != nil && s.found && len(s.missingKeys) == 0 }

// certState is the cert-manager side of tls.issuerRef.
type certState struct {
	installed     bool
	issuerFound   bool
	issuerReady   bool
	issuerMessage string
	certificate   *cmapi.Certificate
}

func newScope(reg *v1alpha1.Registry) *scope {
	before := reg.Status.DeepCopy()
	return &scope{reg: reg, before: before, observed: map[step]bool{}, failed: map[step]error{},
		lastGC: before.LastGarbageCollection, lastBackup: before.LastBackup, restore: before.Restore}
}

// saw reports whether step completed in this reconcile.
func (s *scope) saw(st step) bool { return s.observed[st] }
