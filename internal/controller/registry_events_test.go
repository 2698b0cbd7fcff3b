package controller

import (
	"strings"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"

	"github.com/dockyard-dev/dockyard/api/v1alpha1"
)

func drain(rec *events.FakeRecorder) []string {
	var out []string
	for {
		select {
		case e := <-rec.Events:
			out = append(out, e)
		default:
			return out
		}
	}
}

func TestCertificateRenewedEvent(t *testing.T) {
	rec := events.NewFakeRecorder(10)
	r := &RegistryReconciler{Recorder: rec}
	reg := testReg(func(r *v1alpha1.Registry) {
		r.Spec.TLS = &v1alpha1.TLSSpec{IssuerRef: &v1alpha1.IssuerReference{Name: "ca"}}
	})
	notAfter := metav1.NewTime(time.Date(2027, 3, 1, 12, 0, 0, 0, time.UTC))
	first := &v1alpha1.RegistryStatus{Certificate: &v1alpha1.CertificateStatus{NotAfter: &notAfter, Revision: 1}}

	r.emitTransitionEvents(reg, nil, &v1alpha1.RegistryStatus{}, first)
	if got := drain(rec); len(got) != 0 {
		t.Errorf("the first certificate is no renewal: %v", got)
	}
	r.emitTransitionEvents(reg, nil, first, first.DeepCopy())
	if got := drain(rec); len(got) != 0 {
		t.Errorf("an unchanged certificate emitted %v", got)
	}
	renewed := first.DeepCopy()
	renewed.Certificate.Revision = 2
	r.emitTransitionEvents(reg, nil, first, renewed)
	got := drain(rec)
	if len(got) != 1 || !strings.HasPrefix(got[0], "Normal CertificateRenewed") || !strings.Contains(got[0], "revision 2, valid until 2027-03-01T12:00:00Z") {
		t.Errorf("events = %v, want one CertificateRenewed naming revision 2 and its expiry", got)
	}

	cert := &cmapi.Certificate{Status: cmapi.CertificateStatus{NotAfter: &notAfter, Revision: ptrTo(3)}}
	if cs := certificateStatus(cert); cs == nil || cs.Revision != 3 || !cs.NotAfter.Equal(&notAfter) {
		t.Errorf("certificateStatus = %+v", cs)
	}
	if certificateStatus(&cmapi.Certificate{}) != nil {
		t.Error("a certificate not issued yet has a status")
	}
}

func TestReplicaNotReadyEvent(t *testing.T) {
	reg := testReg(func(r *v1alpha1.Registry) { n := int32(3); r.Spec.Replicas = &n })
	dep := func(updated, replicas int32) *appsv1.Deployment {
		return &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Generation: 2},
			Status: appsv1.DeploymentStatus{ObservedGeneration: 2, UpdatedReplicas: updated, Replicas: replicas}}
	}
	cases := []struct {
		name          string
		d             *appsv1.Deployment
		before, after int32
		want          bool
	}{
		{"a pod turns unready in steady state", dep(3, 3), 3, 2, true},
		{"a rollout replaces pods", dep(1, 4), 3, 2, false},
		{"pods become ready", dep(3, 3), 2, 3, false},
		{"deployment not observed", nil, 3, 2, false},
		{"new spec not observed yet", &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Generation: 3},
			Status: appsv1.DeploymentStatus{ObservedGeneration: 2, UpdatedReplicas: 3, Replicas: 3}}, 3, 2, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := events.NewFakeRecorder(10)
			r := &RegistryReconciler{Recorder: rec}
			r.emitTransitionEvents(reg, tc.d, &v1alpha1.RegistryStatus{ReadyReplicas: tc.before}, &v1alpha1.RegistryStatus{ReadyReplicas: tc.after})
			got := drain(rec)
			if tc.want != (len(got) == 1 && strings.HasPrefix(got[0], "Warning ReplicaNotReady")) || (!tc.want && len(got) > 0) {
				t.Errorf("events = %v, want ReplicaNotReady: %v", got, tc.want)
			}
		})
	}
	// Scaling down from 3 to 2 lowers the ready count without any pod failing.
	rec := events.NewFakeRecorder(10)
	r := &RegistryReconciler{Recorder: rec}
	two := testReg(func(r *v1alpha1.Registry) { n := int32(2); r.Spec.Replicas = &n })
	r.emitTransitionEvents(two, dep(2, 2), &v1alpha1.RegistryStatus{ReadyReplicas: 3}, &v1alpha1.RegistryStatus{ReadyReplicas: 2})
	if got := drain(rec); len(got) != 0 {
		t.Errorf("a scale-down emitted %v", got)
	}
}
