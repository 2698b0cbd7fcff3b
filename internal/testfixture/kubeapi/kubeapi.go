// Package kubeapi starts a real kube-apiserver and etcd (envtest, built by
// hack/build-envtest.sh; KUBEBUILDER_ASSETS points at them) for tests of the registry's
// Kubernetes identity and authorization: ServiceAccount tokens are real (TokenRequest), and
// TokenReview and SubjectAccessReview are answered by the real RBAC authorizer.
package kubeapi

import (
	"context"
	"os"
	"path/filepath"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	"github.com/dockyard-dev/dockyard/internal/testfixture"
)

// Server is a running API server.
type Server struct {
	// Admin is the administrator's connection; Client a clientset on it.
	Admin  *rest.Config
	Client kubernetes.Interface
	env    *envtest.Environment
	t      testfixture.TB
}

// Start starts an API server for the test and stops it when the test ends.
func Start(t testfixture.TB) *Server {
	t.Helper()
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		testfixture.Missing(t, "KUBEBUILDER_ASSETS is unset: run `make test`, which builds kube-apiserver and etcd")
	}
	env := &envtest.Environment{}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("start envtest: %v", err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &Server{Admin: cfg, Client: cs, env: env, t: t}
}

// Kubeconfig writes a kubeconfig for a user in groups (authenticated by a client
// certificate) and returns its path.
func (s *Server) Kubeconfig(name string, groups ...string) string {
	s.t.Helper()
	u, err := s.env.AddUser(envtest.User{Name: name, Groups: groups}, s.Admin)
	if err != nil {
		s.t.Fatalf("add user %s: %v", name, err)
	}
	raw, err := u.KubeConfig()
	if err != nil {
		s.t.Fatal(err)
	}
	path := filepath.Join(s.t.TempDir(), name+".kubeconfig")
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		s.t.Fatal(err)
	}
	return path
}

// ctx bounds each call to the API server.
func ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 30*time.Second)
}

// Namespace creates a namespace.
func (s *Server) Namespace(name string) {
	s.t.Helper()
	c, cancel := ctx()
	defer cancel()
	if _, err := s.Client.CoreV1().Namespaces().Create(c, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		s.t.Fatal(err)
	}
}

// ServiceAccount creates a ServiceAccount.
func (s *Server) ServiceAccount(ns, name string) {
	s.t.Helper()
	c, cancel := ctx()
	defer cancel()
	if _, err := s.Client.CoreV1().ServiceAccounts(ns).Create(c, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		s.t.Fatal(err)
	}
}

// DeleteServiceAccount deletes a ServiceAccount.
func (s *Server) DeleteServiceAccount(ns, name string) {
	s.t.Helper()
	c, cancel := ctx()
	defer cancel()
	if err := s.Client.CoreV1().ServiceAccounts(ns).Delete(c, name, metav1.DeleteOptions{}); err != nil {
		s.t.Fatal(err)
	}
}

// Token requests a token of a ServiceAccount for audience, as a projected volume gets one.
func (s *Server) Token(ns, sa, audience string) string {
	s.t.Helper()
	c, cancel := ctx()
	defer cancel()
	exp := int64(3600)
	tr, err := s.Client.CoreV1().ServiceAccounts(ns).CreateToken(c, sa, &authnv1.TokenRequest{
		Spec: authnv1.TokenRequestSpec{Audiences: []string{audience}, ExpirationSeconds: &exp}}, metav1.CreateOptions{})
	if err != nil {
		s.t.Fatalf("token for %s/%s: %v", ns, sa, err)
	}
	return tr.Status.Token
}

// ApplyClusterRoles creates the ClusterRoles of a YAML file (as shipped in config/rbac),
// under their names in the file plus prefix.
func (s *Server) ApplyClusterRoles(path, prefix string) {
	s.t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		s.t.Fatal(err)
	}
	var role rbacv1.ClusterRole
	if err := yaml.UnmarshalStrict(raw, &role); err != nil {
		s.t.Fatalf("%s: %v", path, err)
	}
	role.Name = prefix + role.Name
	c, cancel := ctx()
	defer cancel()
	if _, err := s.Client.RbacV1().ClusterRoles().Create(c, &role, metav1.CreateOptions{}); err != nil {
		s.t.Fatal(err)
	}
}

// Subject kinds for bindings.
const (
	User           = rbacv1.UserKind
	Group          = rbacv1.GroupKind
	ServiceAccount = rbacv1.ServiceAccountKind
)

func subject(kind, name, ns string) rbacv1.Subject {
	sub := rbacv1.Subject{Kind: kind, Name: name}
	if kind == ServiceAccount {
		sub.Namespace = ns
	} else {
		sub.APIGroup = rbacv1.GroupName
	}
	return sub
}

// RoleBinding binds a ClusterRole in a namespace to a subject (for a ServiceAccount, name
// is its name and subjectNS its namespace).
func (s *Server) RoleBinding(ns, name, clusterRole, kind, subjectName, subjectNS string) {
	s.t.Helper()
	c, cancel := ctx()
	defer cancel()
	_, err := s.Client.RbacV1().RoleBindings(ns).Create(c, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: clusterRole},
		Subjects:   []rbacv1.Subject{subject(kind, subjectName, subjectNS)},
	}, metav1.CreateOptions{})
	if err != nil {
		s.t.Fatal(err)
	}
}

// DeleteRoleBinding deletes a RoleBinding.
func (s *Server) DeleteRoleBinding(ns, name string) {
	s.t.Helper()
	c, cancel := ctx()
	defer cancel()
	if err := s.Client.RbacV1().RoleBindings(ns).Delete(c, name, metav1.DeleteOptions{}); err != nil {
		s.t.Fatal(err)
	}
}

// ClusterRoleBinding binds a ClusterRole cluster-wide to a subject.
func (s *Server) ClusterRoleBinding(name, clusterRole, kind, subjectName, subjectNS string) {
	s.t.Helper()
	c, cancel := ctx()
	defer cancel()
	_, err := s.Client.RbacV1().ClusterRoleBindings().Create(c, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: clusterRole},
		Subjects:   []rbacv1.Subject{subject(kind, subjectName, subjectNS)},
	}, metav1.CreateOptions{})
	if err != nil {
		s.t.Fatal(err)
	}
}

// DeleteClusterRoleBinding deletes a ClusterRoleBinding.
func (s *Server) DeleteClusterRoleBinding(name string) {
	s.t.Helper()
	c, cancel := ctx()
	defer cancel()
	if err := s.Client.RbacV1().ClusterRoleBindings().Delete(c, name, metav1.DeleteOptions{}); err != nil {
		s.t.Fatal(err)
	}
}
