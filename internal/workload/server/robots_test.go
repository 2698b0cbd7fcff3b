package server_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/dockyard-dev/dockyard/internal/registryconfig"
)

func robotsFile(t testing.TB, robots ...registryconfig.Robot) []byte {
	t.Helper()
	b, err := json.Marshal(registryconfig.Robots{Robots: robots})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func robotCred(password string, created, expires time.Time) registryconfig.RobotToken {
	sum := sha256.Sum256([]byte(password))
	return registryconfig.RobotToken{SHA256: hex.EncodeToString(sum[:]), CreatedAt: created, ExpiresAt: expires}
}

func TestRobotAccounts(t *testing.T) {
	now := time.Now()
	ci := registryconfig.Robot{User: "robot+ci", Repositories: []string{"team-a/**"}, Role: registryconfig.RoleManager,
		Credentials: []registryconfig.RobotToken{
			robotCred("old-secret", now.Add(-20*24*time.Hour), now.Add(10*24*time.Hour)), // rotated, still valid
			robotCred("new-secret", now.Add(-time.Hour), now.Add(30*24*time.Hour)),
		}}
	stale := registryconfig.Robot{User: "robot+stale", Repositories: []string{"**"}, Role: registryconfig.RoleManager,
		Credentials: []registryconfig.RobotToken{robotCred("stale-secret", now.Add(-31*24*time.Hour), now.Add(-time.Hour))}}
	robots := newSecretDir(t, map[string][]byte{"robots.json": robotsFile(t, ci, stale)})
	_, auth := authFixture(t, testUsers)
	auth.RobotsFile = robots.path("robots.json")
	withTokens(t, auth, newKey(t, time.Now().Add(-time.Minute)))
	reg := startRegistry(t, auth, nil)

	img, _ := random.Image(4<<10, 1)
	tag := mustTag(t, reg.host+"/team-a/app:v1")
	for _, pw := range []string{"new-secret", "old-secret"} {
		if err := remote.Write(tag, img, reg.opts("robot+ci", pw)...); err != nil {
			t.Fatalf("robot push with credential %s: %v", pw, err)
		}
	}
	err := remote.Write(mustTag(t, reg.host+"/team-b/app:v1"), img, reg.opts("robot+ci", "new-secret")...)
	wantStatus(t, "robot push outside its repositories", err, http.StatusForbidden, "")
	_, err = remote.Image(tag, reg.opts("robot+stale", "stale-secret")...)
	wantStatus(t, "expired robot credential", err, http.StatusUnauthorized, "")
	_, err = remote.Image(tag, reg.opts("robot+ci", "wrong")...)
	wantStatus(t, "robot with a wrong password", err, http.StatusUnauthorized, "")
	_, err = remote.Image(tag, reg.opts("robot+nobody", "new-secret")...)
	wantStatus(t, "unknown robot", err, http.StatusUnauthorized, "")
	if !strings.Contains(scrape(t, reg), `dockyard_registry_auth_failures_total{provider="robot",reason="expired_credentials"}`) {
		t.Error("the expired credential is not counted")
	}

	// Removing the robot revokes it, tokens already issued included.
	tok, code := reg.token(t, "robot+ci", "new-secret", "repository:team-a/app:pull")
	if code != http.StatusOK {
		t.Fatalf("robot token: %d", code)
	}
	const manifest = "/v2/team-a/app/manifests/v1"
	if got := reg.do(t, http.MethodHead, manifest, "Bearer "+tok); got.StatusCode != http.StatusOK {
		t.Fatalf("robot token: %d", got.StatusCode)
	}
	robots.update(map[string][]byte{"robots.json": robotsFile(t, stale)})
	deadline := time.Now().Add(10 * time.Second)
	for reg.do(t, http.MethodHead, manifest, "Bearer "+tok).StatusCode == http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatal("a removed robot's token still works after 10s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, code := reg.token(t, "robot+ci", "new-secret", "repository:team-a/app:pull"); code != http.StatusUnauthorized {
		t.Errorf("removed robot at the token endpoint: %d, want 401", code)
	}
}
