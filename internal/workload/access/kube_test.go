package access

import (
	"slices"
	"testing"
)

func TestRBACTarget(t *testing.T) {
	for _, tc := range []struct{ repo, ns, name string }{
		{"team-a/app", "team-a", "app"},
		{"team-a/app/api", "team-a", "app/api"},
		{"alpine", "", "alpine"},         // one segment: outside any namespace
		{"my_tools/x", "", "my_tools/x"}, // not a namespace name
		{"a.b/x", "", "a.b/x"},           // dots are not allowed in namespace names
		{"x/y", "x", "y"},
	} {
		ns, name := RBACTarget(tc.repo)
		if ns != tc.ns || name != tc.name {
			t.Errorf("RBACTarget(%q) = %q, %q; want %q, %q", tc.repo, ns, name, tc.ns, tc.name)
		}
	}
	long := ""
	for range 64 {
		long += "a"
	}
	if ns, _ := RBACTarget(long + "/x"); ns != "" {
		t.Error("a first segment longer than a namespace name may be is outside any namespace")
	}
}

func TestRBACSubjectKeepsKubernetesNamesForServiceAccountsOnly(t *testing.T) {
	sa := Identity{User: "system:serviceaccount:ci:builder", Groups: []string{"system:serviceaccounts", "system:serviceaccounts:ci", "system:authenticated"}, Provider: ProviderServiceAccount}
	user, groups, ok := rbacSubject(sa)
	if !ok || user != sa.User || !slices.Equal(groups, sa.Groups) {
		t.Errorf("ServiceAccount subject = %q %v %v", user, groups, ok)
	}
	ldapUser := Identity{User: "alice", Groups: []string{"developers", "system:masters"}, Provider: ProviderLDAP}
	user, groups, ok = rbacSubject(ldapUser)
	if !ok || user != "alice" || !slices.Equal(groups, []string{"developers", "system:authenticated"}) {
		t.Errorf("a directory group named system:masters must be dropped: %q %v %v", user, groups, ok)
	}
	for _, p := range []string{ProviderHtpasswd, ProviderLDAP, ProviderOIDC, ProviderRobot} {
		if _, _, ok := rbacSubject(Identity{User: "system:admin", Provider: p}); ok {
			t.Errorf("a %s user named system:admin must not be asked about", p)
		}
	}
}
