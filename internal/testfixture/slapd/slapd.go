// Package slapd runs a real OpenLDAP server (Debian's slapd) for tests: a private instance
// on 127.0.0.1 with free ports, LDAPS and StartTLS from a CA made for the test, the
// memberof overlay, a read-only service account, users and groupOfNames groups.
//
// hack/test-deps.sh installs slapd; without it the tests skip, unless
// DOCKYARD_REQUIRE_CLIENTS is set (as `make test` does), where they fail.
package slapd

import (
	"crypto/rand"
	"crypto/sha1" //nolint:gosec // {SSHA} is the scheme directories use; this is a test fixture
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/dockyard-dev/dockyard/internal/testfixture"
)

// TB is what the fixture needs of a test.
type TB = testfixture.TB

// Directory layout.
const (
	BaseDN       = "dc=dockyard,dc=test"
	PeopleDN     = "ou=people," + BaseDN
	GroupsDN     = "ou=groups," + BaseDN
	BindDN       = "cn=reader,ou=services," + BaseDN
	BindPassword = "reader-pw"
	rootDN       = "cn=admin," + BaseDN
	rootPassword = "root-pw"
)

// Server is a running slapd.
type Server struct {
	// LDAPSURL is ldaps://127.0.0.1:port; LDAPURL is ldap://127.0.0.1:port (StartTLS).
	LDAPSURL, LDAPURL string
	// CAFile and CAPEM are the CA that signed the server certificate.
	CAFile string
	CAPEM  []byte
	// Dir holds the instance.
	Dir string

	t       TB
	cmd     *exec.Cmd
	conf    string
	exited  chan struct{}
	args    []string
	stopped bool
}

// Binary returns slapd's path, or skips (fails under DOCKYARD_REQUIRE_CLIENTS) without it.
func Binary(t TB) string {
	t.Helper()
	for _, p := range []string{"/usr/sbin/slapd", "/usr/local/sbin/slapd"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("slapd"); err == nil {
		return p
	}
	testfixture.Missing(t, "slapd is not installed (hack/test-deps.sh installs it)")
	return ""
}

// Start runs slapd with the base entries (ou=people, ou=groups, the service account) and
// stops it when the test ends.
func Start(t TB) *Server {
	t.Helper()
	bin := Binary(t)
	dir := t.TempDir()
	s := &Server{t: t, Dir: dir}
	s.makeCerts()
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o700); err != nil {
		t.Fatal(err)
	}
	s.conf = filepath.Join(dir, "slapd.conf")
	conf := fmt.Sprintf(`include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload memberof
pidfile %[1]s/slapd.pid
TLSCACertificateFile %[1]s/ca.crt
TLSCertificateFile %[1]s/server.crt
TLSCertificateKeyFile %[1]s/server.key
database mdb
maxsize 16777216
suffix "%[2]s"
rootdn "%[3]s"
rootpw %[4]s
directory %[1]s/data
overlay memberof
access to attrs=userPassword by self write by anonymous auth by * none
access to * by dn.exact="%[5]s" read by self read by * none
`, dir, BaseDN, rootDN, rootPassword, BindDN)
	if err := os.WriteFile(s.conf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	plain, secure := freePort(t), freePort(t)
	s.LDAPURL = fmt.Sprintf("ldap://127.0.0.1:%d", plain)
	s.LDAPSURL = fmt.Sprintf("ldaps://127.0.0.1:%d", secure)
	s.args = []string{"-f", s.conf, "-h", s.LDAPURL + "/ " + s.LDAPSURL + "/", "-d", "0"}
	s.start(bin)
	t.Cleanup(s.Stop)

	c := s.Root()
	defer func() { _ = c.Close() }()
	for _, e := range []*ldap.AddRequest{
		entry(BaseDN, map[string][]string{"objectClass": {"dcObject", "organization"}, "dc": {"dockyard"}, "o": {"Dockyard tests"}}),
		entry(PeopleDN, map[string][]string{"objectClass": {"organizationalUnit"}, "ou": {"people"}}),
		entry(GroupsDN, map[string][]string{"objectClass": {"organizationalUnit"}, "ou": {"groups"}}),
		entry("ou=services,"+BaseDN, map[string][]string{"objectClass": {"organizationalUnit"}, "ou": {"services"}}),
		entry(BindDN, map[string][]string{"objectClass": {"organizationalRole", "simpleSecurityObject"}, "cn": {"reader"},
			"userPassword": {BindPassword}}),
	} {
		if err := c.Add(e); err != nil {
			t.Fatalf("add %s: %v", e.DN, err)
		}
	}
	return s
}

func (s *Server) start(bin string) {
	s.t.Helper()
	s.cmd = exec.Command(bin, s.args...)
	s.cmd.Stdout, s.cmd.Stderr = os.Stderr, os.Stderr
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("start slapd: %v", err)
	}
	s.exited = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { _ = cmd.Wait(); close(done) }(s.cmd, s.exited)
	s.stopped = false
	deadline := time.Now().Add(20 * time.Second)
	for {
		conn, err := s.dialAs(rootDN, rootPassword)
		if err == nil {
			_ = conn.Close()
			return
		}
		select {
		case <-s.exited:
			s.t.Fatalf("slapd exited at start (see its output above): %v", err)
		default:
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("slapd did not answer within 20s: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop stops slapd (the directory becomes unreachable); Restart brings it back with its data.
func (s *Server) Stop() {
	if s.stopped || s.cmd == nil || s.cmd.Process == nil {
		return
	}
	s.stopped = true
	_ = s.cmd.Process.Signal(os.Interrupt)
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
}

// Restart starts a stopped slapd again on the same ports.
func (s *Server) Restart() {
	s.t.Helper()
	s.start(s.cmd.Path)
}

// Root returns a connection bound as the directory's root.
func (s *Server) Root() *ldap.Conn {
	s.t.Helper()
	c, err := s.dialAs(rootDN, rootPassword)
	if err != nil {
		s.t.Fatal(err)
	}
	return c
}

func (s *Server) dialAs(dn, pw string) (*ldap.Conn, error) {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(s.CAPEM)
	c, err := ldap.DialURL(s.LDAPSURL, ldap.DialWithTLSConfig(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}))
	if err != nil {
		return nil, err
	}
	if err := c.Bind(dn, pw); err != nil {
		_ = c.Close()
		return nil, err
	}
	return c, nil
}

// UserDN is the DN of user uid.
func UserDN(uid string) string { return "uid=" + ldap.EscapeDN(uid) + "," + PeopleDN }

// GroupDN is the DN of group cn.
func GroupDN(cn string) string { return "cn=" + ldap.EscapeDN(cn) + "," + GroupsDN }

// AddUser adds an inetOrgPerson with a salted SHA-1 ({SSHA}) password, as directories
// store them.
func (s *Server) AddUser(uid, password string) {
	s.t.Helper()
	c := s.Root()
	defer func() { _ = c.Close() }()
	if err := c.Add(entry(UserDN(uid), map[string][]string{
		"objectClass": {"inetOrgPerson"}, "uid": {uid}, "cn": {uid}, "sn": {uid},
		"userPassword": {ssha(password)},
	})); err != nil {
		s.t.Fatalf("add user %s: %v", uid, err)
	}
}

// SetPassword replaces a user's password.
func (s *Server) SetPassword(uid, password string) {
	s.t.Helper()
	c := s.Root()
	defer func() { _ = c.Close() }()
	m := ldap.NewModifyRequest(UserDN(uid), nil)
	m.Replace("userPassword", []string{ssha(password)})
	if err := c.Modify(m); err != nil {
		s.t.Fatalf("set password of %s: %v", uid, err)
	}
}

// AddGroup adds a groupOfNames with the given member uids (the memberof overlay then
// lists it in the members' memberOf).
func (s *Server) AddGroup(cn string, uids ...string) {
	s.t.Helper()
	c := s.Root()
	defer func() { _ = c.Close() }()
	members := make([]string, 0, len(uids))
	for _, u := range uids {
		members = append(members, UserDN(u))
	}
	if err := c.Add(entry(GroupDN(cn), map[string][]string{
		"objectClass": {"groupOfNames"}, "cn": {cn}, "member": members,
	})); err != nil {
		s.t.Fatalf("add group %s: %v", cn, err)
	}
}

func entry(dn string, attrs map[string][]string) *ldap.AddRequest {
	r := ldap.NewAddRequest(dn, nil)
	for k, v := range attrs {
		r.Attribute(k, v)
	}
	return r
}

func ssha(password string) string {
	salt := make([]byte, 8)
	_, _ = rand.Read(salt)
	h := sha1.New() //nolint:gosec // see import
	h.Write([]byte(password))
	h.Write(salt)
	return "{SSHA}" + base64.StdEncoding.EncodeToString(append(h.Sum(nil), salt...))
}

func freePort(t TB) int {
	t.Helper()
	p, err := testfixture.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// makeCerts writes a CA and a server certificate for 127.0.0.1 and localhost.
func (s *Server) makeCerts() {
	f, err := testfixture.Write(s.Dir)
	if err != nil {
		s.t.Fatal(err)
	}
	s.CAPEM, s.CAFile = f.CAPEM, f.CAFile
}
