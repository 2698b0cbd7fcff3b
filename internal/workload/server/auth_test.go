package server_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/dockyard-dev/dockyard/internal/registryconfig"
)

// secretDir mimics a mounted Secret: files are symlinks through ..data, and an update
// swaps ..data to a new directory in one rename.
type secretDir struct {
	t   testing.TB
	dir string
	gen int
}

func newSecretDir(t testing.TB, files map[string][]byte) *secretDir {
	s := &secretDir{t: t, dir: filepath.Join(t.TempDir(), "users")}
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	s.update(files)
	for name := range files {
		if err := os.Symlink(filepath.Join("..data", name), filepath.Join(s.dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

func (s *secretDir) update(files map[string][]byte) {
	s.gen++
	gen := filepath.Join(s.dir, fmt.Sprintf("..%d", s.gen))
	if err := os.MkdirAll(gen, 0o755); err != nil {
		s.t.Fatal(err)
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(gen, name), data, 0o600); err != nil {
			s.t.Fatal(err)
		}
	}
	tmp := filepath.Join(s.dir, "..data_tmp")
	if err := os.Symlink(filepath.Base(gen), tmp); err != nil {
		s.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(s.dir, "..data")); err != nil {
		s.t.Fatal(err)
	}
}

func (s *secretDir) path(name string) string { return filepath.Join(s.dir, name) }

var testUsers = map[string]string{
	"alice": "alice-pw", // Manager on team-a/**
	"bob":   "bob-pw",   // Viewer on team-a/** through group "readers"
	"carol": "carol-pw", // no rule
	"admin": "admin-pw", // Manager on **
}

const testGroups = "# readers may pull team-a\nreaders: bob\n"

func authFixture(t testing.TB, users map[string]string) (*secretDir, *registryconfig.Auth) {
	files := map[string][]byte{
		registryconfig.UsersHtpasswdKey: htpasswd(t, users),
		registryconfig.UsersGroupsKey:   []byte(testGroups),
	}
	sd := newSecretDir(t, files)
	return sd, &registryconfig.Auth{
		HtpasswdFile: sd.path(registryconfig.UsersHtpasswdKey),
		GroupsFile:   sd.path(registryconfig.UsersGroupsKey),
		Realm:        "dockyard-test",
		Access: []registryconfig.AccessRule{
			{Subjects: []registryconfig.Subject{{Kind: registryconfig.SubjectUser, Name: "alice"}},
				Repositories: []string{"team-a/**"}, Role: registryconfig.RoleManager},
			{Subjects: []registryconfig.Subject{{Kind: registryconfig.SubjectGroup, Name: "readers"}},
				Repositories: []string{"team-a/**"}, Role: registryconfig.RoleViewer},
			{Subjects: []registryconfig.Subject{{Kind: registryconfig.SubjectUser, Name: "admin"}},
				Repositories: []string{"**"}, Role: registryconfig.RoleManager},
		},
	}
}

func mustTag(t testing.TB, s string) name.Tag {
	t.Helper()
	tag, err := name.NewTag(s)
	if err != nil {
		t.Fatal(err)
	}
	return tag
}

func wantStatus(t *testing.T, what string, err error, status int, code string) {
	t.Helper()
	got, gotCode := statusOf(err)
	if got != status || (code != "" && gotCode != code) {
		t.Errorf("%s: want HTTP %d %s, got %d %s (err: %v)", what, status, code, got, gotCode, err)
	}
}

func TestAccessMatrix(t *testing.T) {
	_, auth := authFixture(t, testUsers)
	reg := startRegistry(t, auth, nil)
	ctx := context.Background()

	img, err := random.Image(64<<10, 2)
	if err != nil {
		t.Fatal(err)
	}
	appTag := mustTag(t, reg.host+"/team-a/app:v1")

	// Manager: push, pull, multi-arch index, delete.
	if err := remote.Write(appTag, img, reg.opts("alice", "alice-pw")...); err != nil {
		t.Fatalf("alice push: %v", err)
	}
	pulled, err := remote.Image(appTag, reg.opts("alice", "alice-pw")...)
	if err != nil {
		t.Fatalf("alice pull: %v", err)
	}
	if err := verifyImage(pulled); err != nil {
		t.Fatalf("alice pulled a broken image: %v", err)
	}
	idx, err := random.Index(32<<10, 1, 3)
	if err != nil {
		t.Fatal(err)
	}
	idxTag := mustTag(t, reg.host+"/team-a/multi:v1")
	if err := remote.WriteIndex(idxTag, idx, reg.opts("alice", "alice-pw")...); err != nil {
		t.Fatalf("alice push index: %v", err)
	}
	gotIdx, err := remote.Index(idxTag, reg.opts("bob", "bob-pw")...)
	if err != nil {
		t.Fatalf("bob pull index: %v", err)
	}
	if err := validate.Index(gotIdx); err != nil {
		t.Fatalf("pulled a broken index: %v", err)
	}
	other := mustTag(t, reg.host+"/team-b/tool:v1")
	if err := remote.Write(other, img, reg.opts("admin", "admin-pw")...); err != nil {
		t.Fatalf("admin push team-b: %v", err)
	}

	// Viewer: pull yes, push and delete 403 DENIED.
	if _, err := remote.Image(appTag, reg.opts("bob", "bob-pw")...); err != nil {
		t.Errorf("bob pull: %v", err)
	}
	img2, _ := random.Image(1024, 1)
	err = remote.Write(mustTag(t, reg.host+"/team-a/app:bob"), img2, reg.opts("bob", "bob-pw")...)
	wantStatus(t, "bob push", err, http.StatusForbidden, "DENIED")
	err = remote.Delete(appTag, reg.opts("bob", "bob-pw")...)
	wantStatus(t, "bob delete", err, http.StatusForbidden, "DENIED")

	// Known users outside their rules get 403; unknown credentials and anonymous get 401.
	_, err = remote.Image(other, reg.opts("alice", "alice-pw")...)
	wantStatus(t, "alice pull team-b", err, http.StatusForbidden, "DENIED")
	_, err = remote.Image(appTag, reg.opts("carol", "carol-pw")...)
	wantStatus(t, "carol pull", err, http.StatusForbidden, "DENIED")
	_, err = remote.Image(appTag, reg.opts("alice", "wrong")...)
	wantStatus(t, "wrong password", err, http.StatusUnauthorized, "UNAUTHORIZED")
	_, err = remote.Image(appTag, reg.opts("mallory", "x")...)
	wantStatus(t, "unknown user", err, http.StatusUnauthorized, "UNAUTHORIZED")
	_, err = remote.Image(appTag, reg.opts("", "")...)
	wantStatus(t, "anonymous pull", err, http.StatusUnauthorized, "UNAUTHORIZED")

	// A raw 401 carries a Basic challenge; a 403 does not.
	req, _ := http.NewRequest(http.MethodGet, "https://"+reg.host+"/v2/team-a/app/tags/list", nil)
	resp, err := reg.transport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("WWW-Authenticate"); resp.StatusCode != http.StatusUnauthorized || got != `Basic realm="dockyard-test"` {
		t.Errorf("anonymous tags list: got %d %q, want 401 with Basic realm", resp.StatusCode, got)
	}

	// Catalog lists only what the caller may pull, across pages.
	regName, _ := name.NewRegistry(reg.host)
	for user, want := range map[string][]string{
		"alice": {"team-a/app", "team-a/multi"},
		"admin": {"team-a/app", "team-a/multi", "team-b/tool"},
		"carol": {},
	} {
		got, err := remote.Catalog(ctx, regName, reg.opts(user, testUsers[user])...)
		if err != nil {
			t.Errorf("%s catalog: %v", user, err)
			continue
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("%s catalog = %v, want %v", user, got, want)
		}
	}
	page, err := remote.CatalogPage(regName, "", 1, reg.opts("admin", "admin-pw")...)
	if err != nil || len(page) != 1 || page[0] != "team-a/app" {
		t.Errorf("admin catalog page 1 (n=1) = %v, %v; want [team-a/app]", page, err)
	}
	page, err = remote.CatalogPage(regName, "team-a/multi", 5, reg.opts("alice", "alice-pw")...)
	if err != nil || len(page) != 0 {
		t.Errorf("alice catalog after team-a/multi = %v, %v; want []", page, err)
	}

	// Manager delete works.
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Delete(appTag.Context().Digest(d.String()), reg.opts("alice", "alice-pw")...); err != nil {
		t.Errorf("alice delete: %v", err)
	}
	_, err = remote.Image(appTag, reg.opts("alice", "alice-pw")...)
	wantStatus(t, "pull after delete", err, http.StatusNotFound, "")
}

func TestUserRemovalAndBadHashes(t *testing.T) {
	sd, auth := authFixture(t, testUsers)
	reg := startRegistry(t, auth, nil)
	tag := mustTag(t, reg.host+"/team-a/app:v1")
	img, _ := random.Image(1024, 1)
	if err := remote.Write(tag, img, reg.opts("alice", "alice-pw")...); err != nil {
		t.Fatal(err)
	}
	if _, err := remote.Image(tag, reg.opts("bob", "bob-pw")...); err != nil {
		t.Fatalf("bob pull before removal: %v", err)
	}

	// Remove bob; give dave a non-bcrypt (Apache MD5) hash, which must not log in.
	users := map[string]string{"alice": "alice-pw"}
	data := append(htpasswd(t, users), []byte("dave:$apr1$Vb1h1kZB$0jJ6tSb3dtl0xQ0m3hE6j.\n")...)
	sd.update(map[string][]byte{
		registryconfig.UsersHtpasswdKey: data,
		registryconfig.UsersGroupsKey:   []byte(testGroups),
	})
	deadline := time.Now().Add(10 * time.Second)
	var err error
	for time.Now().Before(deadline) {
		_, err = remote.Image(tag, reg.opts("bob", "bob-pw")...)
		if status, _ := statusOf(err); status == http.StatusUnauthorized {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	wantStatus(t, "bob after removal", err, http.StatusUnauthorized, "UNAUTHORIZED")
	_, err = remote.Image(tag, reg.opts("dave", "dave")...)
	wantStatus(t, "non-bcrypt user", err, http.StatusUnauthorized, "UNAUTHORIZED")
	if _, err := remote.Image(tag, reg.opts("alice", "alice-pw")...); err != nil {
		t.Errorf("alice after reload: %v", err)
	}
}

func TestAnonymousPull(t *testing.T) {
	_, auth := authFixture(t, testUsers)
	auth.AnonymousPull = true
	reg := startRegistry(t, auth, nil)
	tag := mustTag(t, reg.host+"/team-b/public:v1")
	img, _ := random.Image(1024, 1)
	if err := remote.Write(tag, img, reg.opts("admin", "admin-pw")...); err != nil {
		t.Fatal(err)
	}
	got, err := remote.Image(tag, reg.opts("", "")...)
	if err != nil {
		t.Fatalf("anonymous pull: %v", err)
	}
	if err := verifyImage(got); err != nil {
		t.Fatal(err)
	}
	// carol has no rule but anonymous pull covers every authenticated user too.
	if _, err := remote.Image(tag, reg.opts("carol", "carol-pw")...); err != nil {
		t.Errorf("carol pull with anonymousPull: %v", err)
	}
	err = remote.Write(mustTag(t, reg.host+"/team-b/public:v2"), img, reg.opts("", "")...)
	wantStatus(t, "anonymous push", err, http.StatusUnauthorized, "UNAUTHORIZED")
	_, err = remote.Image(tag, reg.opts("admin", "wrong")...)
	wantStatus(t, "wrong password with anonymousPull", err, http.StatusUnauthorized, "")
}

// Copying an image between repositories normally mounts its blobs. A mount from a
// repository the pusher cannot pull must not leak the blob, and must not fail the push
// either: it becomes a plain upload of bytes the pusher has.
func TestMountFromUnreadableRepositoryBecomesUpload(t *testing.T) {
	_, auth := authFixture(t, testUsers)
	reg := startRegistry(t, auth, nil)
	src := mustTag(t, reg.host+"/team-b/tool:v1")
	img, _ := random.Image(32<<10, 2)
	if err := remote.Write(src, img, reg.opts("admin", "admin-pw")...); err != nil {
		t.Fatal(err)
	}
	// The image as fetched by admin: its layers know they can be mounted from team-b/tool.
	fetched, err := remote.Image(src, reg.opts("admin", "admin-pw")...)
	if err != nil {
		t.Fatal(err)
	}
	dst := mustTag(t, reg.host+"/team-a/copy:v1")
	if err := remote.Write(dst, fetched, reg.opts("alice", "alice-pw")...); err != nil {
		t.Fatalf("alice copy with a mount from team-b: %v", err)
	}
	got, err := remote.Image(dst, reg.opts("alice", "alice-pw")...)
	if err != nil {
		t.Fatal(err)
	}
	if err := verifyImage(got); err != nil {
		t.Errorf("copied image broken: %v", err)
	}
	// A direct mount attempt by alice is answered as a new upload (202), not a mount (201).
	layers, _ := img.Layers()
	d, _ := layers[0].Digest()
	req, _ := http.NewRequest(http.MethodPost, fmt.Sprintf("https://%s/v2/team-a/other/blobs/uploads/?mount=%s&from=team-b/tool", reg.host, d), nil)
	req.SetBasicAuth("alice", "alice-pw")
	resp, err := reg.transport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Errorf("mount from an unreadable repository = %d, want 202 (plain upload)", resp.StatusCode)
	}
}

// Access rules apply to the real repository name, also when it contains the API's route
// words: `team-b/blobs/team-a` is a team-b repository, `team-a/manifests/x` a team-a one.
func TestAccessWithRouteWordsInNames(t *testing.T) {
	_, auth := authFixture(t, testUsers)
	reg := startRegistry(t, auth, nil)
	img, _ := random.Image(4<<10, 1)
	for _, tc := range []struct {
		repo      string
		user      string
		push      bool
		pullAsBob bool
	}{
		{"team-a/manifests/x", "alice", true, true},
		{"team-a/blobs/uploads/y", "alice", true, true},
		{"team-b/blobs/team-a", "alice", false, false},
		{"team-b/manifests/team-a/app", "alice", false, false},
	} {
		tag := mustTag(t, reg.host+"/"+tc.repo+":v1")
		err := remote.Write(tag, img, reg.opts(tc.user, testUsers[tc.user])...)
		if tc.push && err != nil {
			t.Errorf("%s push to %s: %v", tc.user, tc.repo, err)
		}
		if !tc.push {
			wantStatus(t, tc.user+" push to "+tc.repo, err, http.StatusForbidden, "") // HEAD: no body
			if err := remote.Write(tag, img, reg.opts("admin", "admin-pw")...); err != nil {
				t.Fatal(err)
			}
		}
		_, err = remote.Image(tag, reg.opts("bob", "bob-pw")...)
		if tc.pullAsBob && err != nil {
			t.Errorf("bob (viewer on team-a/**) pull of %s: %v", tc.repo, err)
		}
		if !tc.pullAsBob {
			wantStatus(t, "bob pull of "+tc.repo, err, http.StatusForbidden, "DENIED")
		}
	}
}
