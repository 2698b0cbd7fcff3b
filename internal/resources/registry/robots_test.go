package registry

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dockyard-dev/dockyard/api/v1alpha1"
	"github.com/dockyard-dev/dockyard/internal/registryconfig"
)

func TestPlanRobot(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	spec := v1alpha1.RobotAccount{Name: "ci", Repositories: []string{"team-a/**"}, Role: v1alpha1.RoleManager,
		CredentialLifetime: &metav1.Duration{Duration: 30 * time.Hour}}
	n := 0
	gen := func() (string, error) { n++; return fmt.Sprintf("pw%d", n), nil }
	var robot *registryconfig.Robot
	var pw RobotPasswords
	step := func(at time.Duration) time.Duration {
		t.Helper()
		r, p, next, err := PlanRobot(t0.Add(at), spec, robot, pw, gen)
		if err != nil {
			t.Fatal(err)
		}
		robot, pw = &r, p
		return next.Sub(t0)
	}
	valid := func(at time.Duration, password string) bool {
		c := credentialFor(robot.Credentials, password)
		return c != nil && t0.Add(at).Before(c.ExpiresAt)
	}

	if next := step(0); pw.Current != "pw1" || pw.Pending != "" || robot.User != "robot+ci" || next != 20*time.Hour {
		t.Fatalf("first plan: %+v %+v next %s", pw, robot, next)
	}
	if next := step(time.Hour); pw.Current != "pw1" || n != 1 || next != 20*time.Hour {
		t.Fatalf("nothing due: %+v, %d passwords generated, next %s", pw, n, next)
	}
	// Two thirds in: pw2 is published as a hash, but clients keep pw1 for now.
	if next := step(20 * time.Hour); pw.Current != "pw1" || pw.Pending != "pw2" || !valid(20*time.Hour, "pw2") || next != 20*time.Hour+RobotPublishLead {
		t.Fatalf("rotation: %+v next %s", pw, next)
	}
	// After the publication lead, pw2 is what the Secret hands out; pw1 still works.
	step(20*time.Hour + RobotPublishLead)
	if pw.Current != "pw2" || pw.Pending != "" || !valid(21*time.Hour, "pw1") {
		t.Fatalf("after the lead: %+v", pw)
	}
	// pw1 expires at 30h and is dropped a day later.
	step(31 * time.Hour)
	if valid(31*time.Hour, "pw1") || credentialFor(robot.Credentials, "pw1") == nil {
		t.Fatalf("pw1 must be expired but still listed at 31h: %+v", robot.Credentials)
	}
	// pw1 is dropped a day after it expired (and pw2, two thirds through by then, rotates).
	step(30*time.Hour + RobotExpiredKept)
	if credentialFor(robot.Credentials, "pw1") != nil || pw.Current != "pw2" || pw.Pending != "pw3" {
		t.Fatalf("pw1 must be gone and pw3 pending: %+v %+v", pw, robot.Credentials)
	}

	// The Secret was deleted: every credential is revoked and a new one issued.
	pw = RobotPasswords{}
	step(31*time.Hour + RobotExpiredKept)
	if pw.Current != "pw4" || len(robot.Credentials) != 1 || credentialFor(robot.Credentials, "pw2") != nil {
		t.Fatalf("after the Secret was deleted: %+v %+v", pw, robot.Credentials)
	}

	// expiresAt caps the credential and stops rotation.
	end := metav1.NewTime(t0.Add(100 * time.Hour))
	spec.ExpiresAt = &end
	robot, pw = nil, RobotPasswords{}
	step(90 * time.Hour)
	if c := credentialFor(robot.Credentials, pw.Current); c == nil || !c.ExpiresAt.Equal(end.Time) {
		t.Fatalf("capped credential: %+v", robot.Credentials)
	}
	step(101 * time.Hour)
	if valid(101*time.Hour, pw.Current) || pw.Pending != "" {
		t.Fatalf("an ended robot must have no valid credential: %+v %+v", pw, robot.Credentials)
	}

	// expiresAt set (or moved earlier) on a robot with a long-lived credential ends it then.
	spec.ExpiresAt = nil
	robot, pw = nil, RobotPasswords{}
	step(200 * time.Hour)
	stop := metav1.NewTime(t0.Add(201 * time.Hour))
	spec.ExpiresAt = &stop
	step(200*time.Hour + time.Minute)
	if c := credentialFor(robot.Credentials, pw.Current); c == nil || !c.ExpiresAt.Equal(stop.Time) {
		t.Fatalf("a new expiresAt must cap the existing credential: %+v", robot.Credentials)
	}
}

func TestRobotSecret(t *testing.T) {
	r := reg()
	s, err := RobotSecret(r, "ci", RobotPasswords{Current: "dyr_x", Pending: "dyr_y"}, "cluster.local")
	if err != nil {
		t.Fatal(err)
	}
	if s.Type != "kubernetes.io/dockerconfigjson" || s.Name != "main-robot-ci" || s.Labels[LabelRobot] != "ci" || s.OwnerReferences[0].Name != "main" {
		t.Fatalf("secret meta: %+v %s", s.ObjectMeta, s.Type)
	}
	var cfg struct {
		Auths map[string]struct{ Username, Password, Auth string } `json:"auths"`
	}
	if err := json.Unmarshal(s.Data[".dockerconfigjson"], &cfg); err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"main.platform.svc:5000", "main.platform.svc.cluster.local:5000"} {
		a := cfg.Auths[h]
		if a.Username != "robot+ci" || a.Password != "dyr_x" || a.Auth != "cm9ib3QrY2k6ZHlyX3g=" {
			t.Errorf("auths[%s] = %+v", h, a)
		}
	}
	if string(s.Data["username"]) != "robot+ci" || string(s.Data["password"]) != "dyr_x" ||
		string(s.Data["registry"]) != "main.platform.svc:5000" || string(s.Data["pending-password"]) != "dyr_y" {
		t.Errorf("CI keys: %q", s.Data)
	}
	p, err := NewRobotPassword()
	if err != nil || len(p) != 47 || p[:4] != "dyr_" {
		t.Errorf("password %q %v", p, err)
	}
}
