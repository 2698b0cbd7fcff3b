package controller_test

import (
	"fmt"
	"sync/atomic"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"golang.org/x/crypto/bcrypt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dockyard-dev/dockyard/api/v1alpha1"
)

var nsCounter atomic.Int64

// newNamespace creates a fresh namespace for one test.
func newNamespace() string {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("t%d-%d", GinkgoParallelProcess(), nsCounter.Add(1))}}
	ExpectWithOffset(1, k8sClient.Create(ctx, ns)).To(Succeed())
	return ns.Name
}

// registryOption changes a Registry fixture.
type registryOption func(*v1alpha1.Registry)

// newRegistry is a minimal valid Registry (filesystem storage, 1Gi) changed by opts.
func newRegistry(ns, name string, opts ...registryOption) *v1alpha1.Registry {
	r := &v1alpha1.Registry{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1alpha1.RegistrySpec{
			Storage: v1alpha1.RegistryStorage{Filesystem: &v1alpha1.FilesystemStorage{Size: resource.MustParse("1Gi")}},
		},
	}
	for _, o := range opts {
		o(r)
	}
	return r
}

func withReplicas(n int32) registryOption { return func(r *v1alpha1.Registry) { r.Spec.Replicas = &n } }

func withStorage(s v1alpha1.RegistryStorage) registryOption {
	return func(r *v1alpha1.Registry) { r.Spec.Storage = s }
}

func withAccessModes(m ...corev1.PersistentVolumeAccessMode) registryOption {
	return func(r *v1alpha1.Registry) { r.Spec.Storage.Filesystem.AccessModes = m }
}

func withIssuer(kind, name string) registryOption {
	return func(r *v1alpha1.Registry) {
		r.Spec.TLS = &v1alpha1.TLSSpec{IssuerRef: &v1alpha1.IssuerReference{Kind: kind, Name: name}}
	}
}

func withTLSSecret(name string) registryOption {
	return func(r *v1alpha1.Registry) {
		r.Spec.TLS = &v1alpha1.TLSSpec{SecretRef: &v1alpha1.SecretReference{Name: name}}
	}
}

func withUsers(secret string, rules ...v1alpha1.AccessRule) registryOption {
	return func(r *v1alpha1.Registry) {
		r.Spec.Auth = &v1alpha1.AuthSpec{UsersSecretRef: &v1alpha1.SecretReference{Name: secret}, Access: rules}
	}
}

func withGC(schedule string) registryOption {
	return func(r *v1alpha1.Registry) {
		r.Spec.GarbageCollection = &v1alpha1.GarbageCollectionSpec{Schedule: schedule, DeleteUntagged: true}
	}
}

func withDeletionPolicy(p v1alpha1.DeletionPolicy) registryOption {
	return func(r *v1alpha1.Registry) { r.Spec.DeletionPolicy = p }
}

func rule(role v1alpha1.Role, subject string, repos ...string) v1alpha1.AccessRule {
	kind := "User"
	if len(subject) > 6 && subject[:6] == "group:" {
		kind, subject = "Group", subject[6:]
	}
	return v1alpha1.AccessRule{Subjects: []v1alpha1.Subject{{Kind: kind, Name: subject}}, Repositories: repos, Role: role}
}

func s3Storage(secret string) v1alpha1.RegistryStorage {
	s := &v1alpha1.S3Storage{Bucket: "images", Endpoint: "https://minio.storage:9000", ForcePathStyle: true}
	if secret != "" {
		s.CredentialsSecretRef = &v1alpha1.SecretReference{Name: secret}
	}
	return v1alpha1.RegistryStorage{S3: s}
}

// htpasswdLine returns a bcrypt htpasswd line for user:password.
func htpasswdLine(user, password string) string {
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
	return user + ":" + string(h) + "\n"
}

func usersSecret(ns, name string, data map[string]string) *corev1.Secret {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, StringData: data}
	return s
}

func tlsSecret(ns, name string) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Type:       corev1.SecretTypeTLS,
		Data:       map[string][]byte{corev1.TLSCertKey: []byte("cert-v1"), corev1.TLSPrivateKeyKey: []byte("key-v1")},
	}
}
