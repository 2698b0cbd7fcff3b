package controller

import (
	"errors"
	"fmt"
	"testing"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dockyard-dev/dockyard/api/v1alpha1"
	"github.com/dockyard-dev/dockyard/internal/workload/access"
)

func testReg(mut ...func(*v1alpha1.Registry)) *v1alpha1.Registry {
	one := int32(1)
	r := &v1alpha1.Registry{
		ObjectMeta: metav1.ObjectMeta{Name: "r", Namespace: "ns", Generation: 3},
		Spec: v1alpha1.RegistrySpec{Replicas: &one, Storage: v1alpha1.RegistryStorage{
			Filesystem: &v1alpha1.FilesystemStorage{Size: resource.MustParse("1Gi")},
		}},
	}
	for _, m := range mut {
		m(r)
	}
	return r
}

func dep(gen, observed int64, want, updated, available, total int32, conds ...appsv1.DeploymentCondition) *appsv1.Deployment {
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Generation: gen}}
	d.Spec.Replicas = &want
	d.Status = appsv1.DeploymentStatus{ObservedGeneration: observed, UpdatedReplicas: updated, AvailableReplicas: available, ReadyReplicas: available, Replicas: total, Conditions: conds}
	return d
}

func TestStorageCondition(t *testing.T) {
	s3 := func(r *v1alpha1.Registry) {
		r.Spec.Storage = v1alpha1.RegistryStorage{S3: &v1alpha1.S3Storage{Bucket: "b", CredentialsSecretRef: &v1alpha1.SecretReference{Name: "c"}}}
	}
	cases := []struct {
		name       string
		reg        *v1alpha1.Registry
		s          scope
		wantStatus metav1.ConditionStatus
		wantReason string
	}{
		{"pvc not yet created", testReg(), scope{}, metav1.ConditionFalse, v1alpha1.ReasonVolumePending},
		{"pvc pending", testReg(), scope{pvc: &corev1.PersistentVolumeClaim{Status: corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimPending}}}, metav1.ConditionFalse, v1alpha1.ReasonVolumePending},
		{"pvc bound", testReg(), scope{pvc: &corev1.PersistentVolumeClaim{Status: corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimBound}}}, metav1.ConditionTrue, v1alpha1.ReasonVolumeBound},
		{"pvc lost", testReg(), scope{pvc: &corev1.PersistentVolumeClaim{Status: corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimLost}}}, metav1.ConditionFalse, v1alpha1.ReasonVolumeLost},
		{"emptyDir", testReg(func(r *v1alpha1.Registry) {
			r.Spec.Storage = v1alpha1.RegistryStorage{EmptyDir: &v1alpha1.EmptyDirStorage{}}
		}), scope{}, metav1.ConditionTrue, v1alpha1.ReasonEphemeralStorage},
		{"s3 credentials missing", testReg(s3), scope{credentials: &secretState{name: "c"}}, metav1.ConditionFalse, v1alpha1.ReasonSecretNotFound},
		{"s3 credentials lack a key", testReg(s3), scope{credentials: &secretState{name: "c", found: true, missingKeys: []string{"secretAccessKey"}}}, metav1.ConditionFalse, v1alpha1.ReasonSecretKeyMissing},
		{"s3 credentials complete", testReg(s3), scope{credentials: &secretState{name: "c", found: true}}, metav1.ConditionTrue, v1alpha1.ReasonSecretFound},
		{"s3 ambient identity", testReg(func(r *v1alpha1.Registry) {
			r.Spec.Storage = v1alpha1.RegistryStorage{S3: &v1alpha1.S3Storage{Bucket: "b"}}
		}), scope{}, metav1.ConditionTrue, v1alpha1.ReasonAmbientCredentials},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := storageCondition(tc.reg, &tc.s)
			if c.Status != tc.wantStatus || c.Reason != tc.wantReason {
				t.Errorf("got %s/%s (%s), want %s/%s", c.Status, c.Reason, c.Message, tc.wantStatus, tc.wantReason)
			}
		})
	}
}

func TestCertificateCondition(t *testing.T) {
	issuer := func(r *v1alpha1.Registry) {
		r.Spec.TLS = &v1alpha1.TLSSpec{IssuerRef: &v1alpha1.IssuerReference{Name: "ca", Kind: "ClusterIssuer"}}
	}
	readyCert := &cmapi.Certificate{Status: cmapi.CertificateStatus{Conditions: []cmapi.CertificateCondition{{Type: cmapi.CertificateConditionReady, Status: cmmeta.ConditionTrue}}}}
	notReadyCert := &cmapi.Certificate{Status: cmapi.CertificateStatus{Conditions: []cmapi.CertificateCondition{{Type: cmapi.CertificateConditionReady, Status: cmmeta.ConditionFalse, Message: "Issuing"}}}}
	okSecret := &secretState{name: "r-tls", found: true}
	cases := []struct {
		name       string
		reg        *v1alpha1.Registry
		s          scope
		wantNil    bool
		wantStatus metav1.ConditionStatus
		wantReason string
	}{
		{"no tls", testReg(), scope{}, true, "", ""},
		{"cert-manager not installed", testReg(issuer), scope{cert: &certState{}}, false, metav1.ConditionFalse, v1alpha1.ReasonCertManagerMissing},
		{"issuer missing", testReg(issuer), scope{cert: &certState{installed: true}}, false, metav1.ConditionFalse, v1alpha1.ReasonIssuerNotFound},
		{"issuer not ready", testReg(issuer), scope{cert: &certState{installed: true, issuerFound: true}}, false, metav1.ConditionFalse, v1alpha1.ReasonIssuerNotReady},
		{"certificate not issued", testReg(issuer), scope{cert: &certState{installed: true, issuerFound: true, issuerReady: true, certificate: notReadyCert}, tls: &secretState{name: "r-tls"}}, false, metav1.ConditionFalse, v1alpha1.ReasonCertificateNotReady},
		{"certificate issued", testReg(issuer), scope{cert: &certState{installed: true, issuerFound: true, issuerReady: true, certificate: readyCert}, tls: okSecret}, false, metav1.ConditionTrue, v1alpha1.ReasonCertificateIssued},
		{"renewal in progress keeps serving", testReg(issuer), scope{cert: &certState{installed: true, issuerFound: true, issuerReady: true, certificate: notReadyCert}, tls: okSecret}, false, metav1.ConditionTrue, v1alpha1.ReasonCertificateIssued},
		{"own secret missing", testReg(func(r *v1alpha1.Registry) {
			r.Spec.TLS = &v1alpha1.TLSSpec{SecretRef: &v1alpha1.SecretReference{Name: "x"}}
		}), scope{tls: &secretState{name: "x"}}, false, metav1.ConditionFalse, v1alpha1.ReasonSecretNotFound},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := certificateCondition(tc.reg, &tc.s)
			if tc.wantNil {
				if c != nil {
					t.Fatalf("want no condition, got %+v", c)
				}
				return
			}
			if c == nil || c.Status != tc.wantStatus || c.Reason != tc.wantReason {
				t.Errorf("got %+v, want %s/%s", c, tc.wantStatus, tc.wantReason)
			}
		})
	}
}

func TestReadyProgressingDegraded(t *testing.T) {
	trueDep := metav1.Condition{Type: v1alpha1.ConditionStorageReady, Status: metav1.ConditionTrue}
	pendingVol := metav1.Condition{Type: v1alpha1.ConditionStorageReady, Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonVolumePending}
	missingSecret := metav1.Condition{Type: v1alpha1.ConditionAuthReady, Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonSecretNotFound, Message: "gone"}
	deadline := appsv1.DeploymentCondition{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionFalse, Reason: "ProgressDeadlineExceeded"}
	cases := []struct {
		name                         string
		reg                          *v1alpha1.Registry
		s                            scope
		deps                         []*metav1.Condition
		err                          error
		ready, progressing, degraded metav1.ConditionStatus
		readyReason                  string
	}{
		{"available", testReg(), scope{deployment: dep(2, 2, 1, 1, 1, 1)}, []*metav1.Condition{&trueDep}, nil, "True", "False", "False", v1alpha1.ReasonAvailable},
		{"rolling out", testReg(), scope{deployment: dep(2, 2, 1, 0, 0, 1)}, []*metav1.Condition{&trueDep}, nil, "False", "True", "False", v1alpha1.ReasonRollingOut},
		{"old pods terminating", testReg(), scope{deployment: dep(2, 2, 1, 1, 1, 2)}, []*metav1.Condition{&trueDep}, nil, "False", "True", "False", v1alpha1.ReasonRollingOut},
		{"deployment controller behind", testReg(), scope{deployment: dep(3, 2, 1, 1, 1, 1)}, []*metav1.Condition{&trueDep}, nil, "False", "True", "False", v1alpha1.ReasonRollingOut},
		{"no deployment yet", testReg(), scope{}, []*metav1.Condition{&trueDep}, nil, "False", "True", "False", v1alpha1.ReasonRollingOut},
		{"volume pending does not block", testReg(), scope{deployment: dep(2, 2, 1, 0, 0, 1)}, []*metav1.Condition{&pendingVol}, nil, "False", "True", "False", v1alpha1.ReasonRollingOut},
		{"missing secret holds the rollout", testReg(), scope{deploymentHeld: true}, []*metav1.Condition{&trueDep, &missingSecret}, nil, "False", "False", "False", v1alpha1.ReasonDependenciesNotReady},
		{"progress deadline exceeded", testReg(), scope{deployment: dep(2, 2, 1, 1, 0, 1, deadline)}, []*metav1.Condition{&trueDep}, nil, "False", "False", "True", v1alpha1.ReasonDeploymentUnavailable},
		{"scaled to zero", testReg(func(r *v1alpha1.Registry) { z := int32(0); r.Spec.Replicas = &z }), scope{deployment: dep(2, 2, 0, 0, 0, 0)}, []*metav1.Condition{&trueDep}, nil, "True", "False", "False", v1alpha1.ReasonScaledToZero},
		{"apply error", testReg(), scope{deployment: dep(2, 2, 1, 1, 1, 1)}, []*metav1.Condition{&trueDep}, errors.New("forbidden"), "False", "False", "True", v1alpha1.ReasonReconcileFailed},
		{"last GC failed", testReg(), scope{deployment: dep(2, 2, 1, 1, 1, 1), lastGC: &v1alpha1.GarbageCollectionRun{JobName: "j", Result: "Failed"}}, []*metav1.Condition{&trueDep}, nil, "True", "False", "True", v1alpha1.ReasonAvailable},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.s.reg = tc.reg
			r := readyCondition(tc.reg, &tc.s, tc.deps, tc.err)
			p := progressingCondition(tc.reg, &tc.s, tc.err)
			d := degradedCondition(&tc.s, tc.err)
			if r.Status != tc.ready || r.Reason != tc.readyReason {
				t.Errorf("Ready = %s/%s (%s), want %s/%s", r.Status, r.Reason, r.Message, tc.ready, tc.readyReason)
			}
			if p.Status != tc.progressing {
				t.Errorf("Progressing = %s/%s, want %s", p.Status, p.Reason, tc.progressing)
			}
			if d.Status != tc.degraded {
				t.Errorf("Degraded = %s/%s, want %s", d.Status, d.Reason, tc.degraded)
			}
		})
	}
}

func TestComputeStatusIsStableAndAdvancesObservedGeneration(t *testing.T) {
	reg := testReg()
	s := newScope(reg)
	s.deployment, s.childrenApplied = dep(1, 1, 1, 1, 1, 1), true
	s.pvc = &corev1.PersistentVolumeClaim{Status: corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimBound}}
	for _, st := range []step{stepDependencies, stepChildren, stepWorkload, stepGC} {
		s.observed[st] = true
	}
	first := computeStatus(reg, s, nil)
	if first.ObservedGeneration != 3 {
		t.Errorf("observedGeneration = %d, want 3", first.ObservedGeneration)
	}
	s.before = first
	second := computeStatus(reg, s, nil)
	if len(first.Conditions) != len(second.Conditions) {
		t.Fatal("conditions changed on an identical observation")
	}
	for i := range first.Conditions {
		if first.Conditions[i] != second.Conditions[i] {
			t.Errorf("condition %s changed: %+v -> %+v", first.Conditions[i].Type, first.Conditions[i], second.Conditions[i])
		}
	}
	reg.Generation = 4
	failed := computeStatus(reg, s, errors.New("boom"))
	if failed.ObservedGeneration != 3 {
		t.Errorf("a failed reconcile must not advance observedGeneration, got %d", failed.ObservedGeneration)
	}
}

func TestGCRunFromJob(t *testing.T) {
	at := metav1.Now()
	job := func(failed bool) *batchv1.Job {
		j := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "r-gc-1"}}
		j.Status.StartTime = &at
		typ := batchv1.JobComplete
		if failed {
			typ = batchv1.JobFailed
		}
		j.Status.Conditions = []batchv1.JobCondition{{Type: typ, Status: corev1.ConditionTrue, Reason: "BackoffLimitExceeded", LastTransitionTime: at}}
		return j
	}
	pod := func(msg string) []corev1.Pod {
		return []corev1.Pod{{Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Message: msg, FinishedAt: at}}}}}}}
	}
	ok := gcRunFromJob(job(false), pod(`{"result":"Succeeded","blobsDeleted":4,"manifestsDeleted":1,"bytesFreed":1024}`))
	if ok.Result != "Succeeded" || ok.BlobsDeleted != 4 || ok.ManifestsDeleted != 1 || ok.BytesFreed != 1024 || ok.CompletionTime == nil {
		t.Errorf("succeeded run = %+v", ok)
	}
	crashed := gcRunFromJob(job(true), pod("panic: runtime error\ngoroutine 1"))
	if crashed.Result != "Failed" || crashed.Message == "" {
		t.Errorf("crashed run = %+v", crashed)
	}
	noPods := gcRunFromJob(job(true), nil)
	if noPods.Result != "Failed" || noPods.Message == "" {
		t.Errorf("failed run without pods = %+v", noPods)
	}
}

func TestNewestFinishedJob(t *testing.T) {
	t1, t2 := metav1.Unix(100, 0), metav1.Unix(200, 0)
	mk := func(name string, at metav1.Time, done bool) batchv1.Job {
		j := batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: name}}
		if done {
			j.Status.Conditions = []batchv1.JobCondition{{Type: batchv1.JobComplete, Status: corev1.ConditionTrue, LastTransitionTime: at}}
		}
		return j
	}
	got := newestFinishedJob([]batchv1.Job{mk("a", t2, true), mk("b", t1, true), mk("c", t2, false)})
	if got == nil || got.Name != "a" {
		t.Errorf("newest finished = %v, want a", got)
	}
	if newestFinishedJob([]batchv1.Job{mk("running", t1, false)}) != nil {
		t.Error("a running job is not finished")
	}
}

// TestStatusWhenAStepFails: for every step that can fail, what the status says about each
// condition (whole conditions), the replica counts and the last GC run. Nothing that was
// not observed may turn into "absent": replicas stay, the GC record stays, and a condition
// whose input was not read is Unknown/NotObserved with the last observation in its message.
func TestStatusWhenAStepFails(t *testing.T) {
	reg := testReg(func(r *v1alpha1.Registry) {
		r.Spec.TLS = &v1alpha1.TLSSpec{SecretRef: &v1alpha1.SecretReference{Name: "tls"}}
		r.Spec.Auth = &v1alpha1.AuthSpec{UsersSecretRef: &v1alpha1.SecretReference{Name: "users"}}
		r.Spec.Replicas = ptrTo(int32(2))
	})
	gcRun := &v1alpha1.GarbageCollectionRun{JobName: "r-gc-1", Result: "Succeeded", BlobsDeleted: 7}
	observeAll := func(s *scope) {
		s.users = &secretState{name: "users", found: true}
		s.tls = &secretState{name: "tls", found: true}
		s.pvc = &corev1.PersistentVolumeClaim{Status: corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimBound}}
		s.deployment = dep(1, 1, 2, 2, 2, 2)
		s.childrenApplied = true
		s.lastGC = gcRun
		for _, st := range []step{stepDependencies, stepChildren, stepWorkload, stepGC} {
			s.observed[st] = true
		}
	}
	good := newScope(reg)
	observeAll(good)
	before := computeStatus(reg, good, nil)
	if before.ReadyReplicas != 2 || before.LastGarbageCollection == nil {
		t.Fatalf("baseline status = %+v", before)
	}
	boom := errors.New("boom: the API server refused")
	storageBound := metav1.Condition{Type: v1alpha1.ConditionStorageReady, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonVolumeBound,
		Message: "PersistentVolumeClaim " + reg.PVCName() + " is bound"}
	certOK := metav1.Condition{Type: v1alpha1.ConditionCertificateReady, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonSecretFound,
		Message: `TLS Secret "tls" has the expected keys`}
	authOK := metav1.Condition{Type: v1alpha1.ConditionAuthReady, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonSecretFound,
		Message: `users Secret "users" has the expected keys`}
	unknown := func(ok metav1.Condition, st step) metav1.Condition {
		return metav1.Condition{Type: ok.Type, Status: metav1.ConditionUnknown, Reason: v1alpha1.ReasonNotObserved,
			Message: "not observed: the reconcile could not " + string(st) + " (it failed); last observed " +
				string(ok.Status) + "/" + ok.Reason + ": " + ok.Message}
	}
	failedReady := metav1.Condition{Type: v1alpha1.ConditionReady, Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonReconcileFailed, Message: boom.Error()}
	failedProgressing := metav1.Condition{Type: v1alpha1.ConditionProgressing, Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonReconcileFailed,
		Message: "cannot progress until the reconcile error is resolved"}
	failedDegraded := metav1.Condition{Type: v1alpha1.ConditionDegraded, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonReconcileFailed, Message: boom.Error()}

	cases := []struct {
		failed step
		// forget undoes what the failed step (and the steps needing it) would have observed.
		forget func(*scope)
		want   []metav1.Condition
	}{
		{stepDependencies, func(s *scope) {
			s.users, s.tls, s.childrenApplied = nil, nil, false
			delete(s.observed, stepChildren)
		}, []metav1.Condition{storageBound, unknown(certOK, stepDependencies), unknown(authOK, stepDependencies), failedReady, failedProgressing, failedDegraded}},
		{stepChildren, func(s *scope) { s.childrenApplied = false },
			[]metav1.Condition{storageBound, certOK, authOK, failedReady, failedProgressing, failedDegraded}},
		{stepWorkload, func(s *scope) { s.pvc, s.deployment = nil, nil },
			[]metav1.Condition{unknown(storageBound, stepWorkload), certOK, authOK, failedReady, failedProgressing, failedDegraded}},
		{stepGC, func(s *scope) { s.lastGC = before.LastGarbageCollection },
			[]metav1.Condition{storageBound, certOK, authOK, failedReady, failedProgressing, failedDegraded}},
	}
	for _, tc := range cases {
		t.Run(string(tc.failed), func(t *testing.T) {
			r := reg.DeepCopy()
			r.Status = *before.DeepCopy()
			r.Generation = 4
			s := newScope(r)
			observeAll(s)
			s.lastGC = r.Status.LastGarbageCollection
			delete(s.observed, tc.failed)
			s.failed[tc.failed] = boom
			tc.forget(s)
			got := computeStatus(r, s, boom)
			for _, w := range tc.want {
				c := meta.FindStatusCondition(got.Conditions, w.Type)
				if c == nil {
					t.Errorf("%s missing", w.Type)
					continue
				}
				if c.Status != w.Status || c.Reason != w.Reason || c.Message != w.Message || c.ObservedGeneration != 4 {
					t.Errorf("%s =\n  %s/%s %q (gen %d)\nwant\n  %s/%s %q (gen 4)", w.Type, c.Status, c.Reason, c.Message, c.ObservedGeneration, w.Status, w.Reason, w.Message)
				}
			}
			if got.Replicas != 2 || got.ReadyReplicas != 2 {
				t.Errorf("replicas = %d/%d, want the last observed 2/2", got.ReadyReplicas, got.Replicas)
			}
			if got.LastGarbageCollection == nil || got.LastGarbageCollection.JobName != "r-gc-1" || got.LastGarbageCollection.BlobsDeleted != 7 {
				t.Errorf("lastGarbageCollection = %+v, want the last observed run", got.LastGarbageCollection)
			}
			if got.ObservedGeneration != 3 {
				t.Errorf("observedGeneration = %d, want 3 (a failed reconcile does not advance it)", got.ObservedGeneration)
			}
			// A second failure in a row keeps the last real observation in the message.
			r.Status = *got
			again := computeStatus(r, newScopeLike(s, r), boom)
			for _, w := range tc.want {
				if c := meta.FindStatusCondition(again.Conditions, w.Type); c == nil || c.Message != w.Message {
					t.Errorf("second failure: %s message %q, want %q", w.Type, c.Message, w.Message)
				}
			}
		})
	}
}

func newScopeLike(s *scope, r *v1alpha1.Registry) *scope {
	n := *s
	n.reg, n.before = r, r.Status.DeepCopy()
	return &n
}

func TestAuthCondition(t *testing.T) {
	withAuth := func(users bool, ca bool) func(*v1alpha1.Registry) {
		return func(r *v1alpha1.Registry) {
			r.Spec.Auth = &v1alpha1.AuthSpec{LDAP: &v1alpha1.LDAPSpec{URLs: []string{"ldaps://dir:636"}, BindDN: "cn=svc",
				BindPasswordSecretRef: v1alpha1.SecretKeyReference{Name: "bind", Key: "password"}}}
			if users {
				r.Spec.Auth.UsersSecretRef = &v1alpha1.SecretReference{Name: "users"}
			}
			if ca {
				r.Spec.Auth.LDAP.CA = &v1alpha1.CABundleSource{ConfigMapKeyRef: &v1alpha1.ConfigMapKeyReference{Name: "ca", Key: "ca.crt"}}
			}
		}
	}
	usersOK := &secretState{name: "users", found: true}
	bindOK := &secretState{name: "bind", found: true}
	healthy := &ldapState{bind: bindOK, checked: true, url: "ldaps://dir:636"}
	cases := []struct {
		name string
		reg  *v1alpha1.Registry
		s    scope
		want metav1.Condition
	}{
		{"htpasswd only keeps its reasons", testReg(func(r *v1alpha1.Registry) {
			r.Spec.Auth = &v1alpha1.AuthSpec{UsersSecretRef: &v1alpha1.SecretReference{Name: "users"}}
		}), scope{users: usersOK}, metav1.Condition{Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonSecretFound,
			Message: `users Secret "users" has the expected keys`}},
		{"htpasswd and a healthy directory", testReg(withAuth(true, false)), scope{users: usersOK, ldap: healthy},
			metav1.Condition{Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonProvidersReady,
				Message: `htpasswd: users Secret "users" has the expected keys; ldap: ldaps://dir:636 answers and the bind account works`}},
		{"the directory refuses the bind account", testReg(withAuth(false, false)),
			scope{ldap: &ldapState{bind: bindOK, checked: true, url: "ldaps://dir:636", err: fmt.Errorf("x: %w: invalid credentials", access.ErrLDAPBind)}},
			metav1.Condition{Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonLDAPBindFailed,
				Message: `ldap: the directory refused the bind account "cn=svc": x: service account bind failed: invalid credentials`}},
		{"the directory is unreachable; htpasswd still listed", testReg(withAuth(true, false)),
			scope{users: usersOK, ldap: &ldapState{bind: bindOK, checked: true, url: "ldaps://dir:636", err: errors.New("dial tcp: connection refused")}},
			metav1.Condition{Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonLDAPUnreachable,
				Message: `htpasswd: users Secret "users" has the expected keys; ldap: cannot reach ldaps://dir:636: dial tcp: connection refused`}},
		{"the users Secret is missing: its reason comes first", testReg(withAuth(true, false)),
			scope{users: &secretState{name: "users"}, ldap: healthy},
			metav1.Condition{Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonSecretNotFound,
				Message: `htpasswd: users Secret "users" not found in the Registry's namespace; ldap: ldaps://dir:636 answers and the bind account works`}},
		{"the bind password key is missing", testReg(withAuth(false, false)),
			scope{ldap: &ldapState{bind: &secretState{name: "bind", found: true, missingKeys: []string{"password"}}}},
			metav1.Condition{Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonSecretKeyMissing,
				Message: `ldap: bind password Secret "bind" lacks key(s) password (or they are empty)`}},
		{"the CA ConfigMap is missing", testReg(withAuth(false, true)),
			scope{ldap: &ldapState{bind: bindOK, ca: &secretState{kind: "ConfigMap", name: "ca"}}},
			metav1.Condition{Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonConfigMapNotFound,
				Message: `ldap: CA bundle ConfigMap "ca" not found in the Registry's namespace`}},
	}
	withOIDC := func(r *v1alpha1.Registry) {
		r.Spec.Auth = &v1alpha1.AuthSpec{UsersSecretRef: &v1alpha1.SecretReference{Name: "users"},
			OIDC: &v1alpha1.OIDCSpec{IssuerURL: "https://idp.example.com", Audiences: []string{"registry"}}}
	}
	cases = append(cases,
		struct {
			name string
			reg  *v1alpha1.Registry
			s    scope
			want metav1.Condition
		}{"an OIDC provider that answers", testReg(withOIDC), scope{users: usersOK, oidc: &oidcState{checked: true}},
			metav1.Condition{Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonProvidersReady,
				Message: `htpasswd: users Secret "users" has the expected keys; oidc: https://idp.example.com publishes its discovery document and keys`}},
		struct {
			name string
			reg  *v1alpha1.Registry
			s    scope
			want metav1.Condition
		}{"an OIDC provider that does not", testReg(withOIDC), scope{users: usersOK, oidc: &oidcState{checked: true, err: errors.New("x509: unknown authority")}},
			metav1.Condition{Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonOIDCDiscoveryFailed,
				Message: `htpasswd: users Secret "users" has the expected keys; oidc: cannot read the provider's discovery document or keys at https://idp.example.com: x509: unknown authority`}},
	)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := authCondition(tc.reg, &tc.s)
			tc.want.Type = v1alpha1.ConditionAuthReady
			if *got != tc.want {
				t.Errorf("got  %+v\nwant %+v", *got, tc.want)
			}
		})
	}
}
