package registryconfig

import (
	"strings"
	"testing"
	"time"
)

func valid() *Config {
	return &Config{
		APIVersion: APIVersion,
		HTTP:       HTTP{Addr: ":5000"},
		Storage:    Storage{Filesystem: &FilesystemStorage{RootDirectory: "/var/lib/registry"}},
	}
}

func TestValidate(t *testing.T) {
	cases := map[string]struct {
		mutate  func(*Config)
		wantErr string
	}{
		"minimal":          {func(*Config) {}, ""},
		"wrong apiVersion": {func(c *Config) { c.APIVersion = "v2" }, "apiVersion: must be"},
		"no listen addr":   {func(c *Config) { c.HTTP.Addr = "" }, "http.addr: required"},
		"tls without key":  {func(c *Config) { c.HTTP.TLS = &TLS{CertFile: "c"} }, "certFile and keyFile are both required"},
		"no storage":       {func(c *Config) { c.Storage = Storage{} }, "exactly one of filesystem"},
		"two storages":     {func(c *Config) { c.Storage.InMemory = &InMemoryStorage{} }, "found 2"},
		"s3 without bucket": {func(c *Config) {
			c.Storage = Storage{S3: &S3Storage{Region: "r"}}
		}, "bucket and region are required"},
		"s3 half credentials": {func(c *Config) {
			c.Storage = Storage{S3: &S3Storage{Bucket: "b", Region: "r", AccessKeyIDEnv: "A"}}
		}, "must be set together"},
		"auth without users file": {func(c *Config) { c.Auth = &Auth{} }, "auth: at least one of htpasswdFile, ldap, oidc, robotsFile and kubernetes.serviceAccounts is required"},
		"bad subject kind": {func(c *Config) {
			c.Auth = &Auth{HtpasswdFile: "f", Access: []AccessRule{{Subjects: []Subject{{Kind: "Team", Name: "a"}}, Repositories: []string{"**"}, Role: RoleViewer}}}
		}, "must be User or Group"},
		"bad pattern": {func(c *Config) {
			c.Auth = &Auth{HtpasswdFile: "f", Access: []AccessRule{{Subjects: []Subject{{Kind: SubjectUser, Name: "a"}}, Repositories: []string{"/x"}, Role: RoleViewer}}}
		}, "is not a repository pattern"},
		"bad role": {func(c *Config) {
			c.Auth = &Auth{HtpasswdFile: "f", Access: []AccessRule{{Subjects: []Subject{{Kind: SubjectUser, Name: "a"}}, Repositories: []string{"**"}, Role: "Owner"}}}
		}, "must be Manager or Viewer"},
		"bad log format": {func(c *Config) { c.Log.Format = "xml" }, "log.format"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			c := valid()
			tc.mutate(c)
			err := c.Validate()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("error = %v, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	c := &Config{}
	err := c.Validate()
	for _, want := range []string{"apiVersion", "http.addr", "storage"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not mention %s", err, want)
		}
	}
}

func TestRepositoryPatterns(t *testing.T) {
	good := []string{"**", "team-a/*", "team-a/**", "base/debian-*", "a/b/c", "x.y/z__w", "team-a/**/cache"}
	bad := []string{"", "/team-a", "team-a/", "team-a//x", "Team-A/*", "team a", "a/-b", "a/b_"}
	for _, p := range good {
		if !ValidRepositoryPattern(p) {
			t.Errorf("%q should be valid", p)
		}
	}
	for _, p := range bad {
		if ValidRepositoryPattern(p) {
			t.Errorf("%q should be invalid", p)
		}
	}
}

func TestParseRoundTripAndDefaults(t *testing.T) {
	c := valid()
	c.Auth = &Auth{HtpasswdFile: "/u/htpasswd"}
	b, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := Parse(b)
	if err != nil {
		t.Fatalf("parse: %v\n%s", err, b)
	}
	if got.HTTP.DrainTimeout.Duration != 30*time.Second || got.GC.GracePeriod.Duration != time.Hour || got.Auth.Realm != "dockyard" || got.Log.Format != "json" {
		t.Errorf("defaults not applied: %+v", got)
	}
	if _, err := Parse([]byte("apiVersion: " + APIVersion + "\nhttp: {addr: ':5000'}\nstorage: {inmemory: {}}\nsurprise: 1\n")); err == nil || !strings.Contains(err.Error(), "surprise") {
		t.Errorf("unknown fields must be rejected, got %v", err)
	}
	if _, err := Parse([]byte("apiVersion: " + APIVersion + "\nhttp: {addr: ':5000', drainTimeout: 'soon'}\nstorage: {inmemory: {}}\n")); err == nil {
		t.Error("a bad duration must be rejected")
	}
}

func TestParseShutdownDelay(t *testing.T) {
	for _, tc := range []struct {
		yaml string
		want time.Duration
	}{
		{"", 0},
		{", shutdownDelay: 5s", 5 * time.Second},
		{", shutdownDelay: 1m30s", 90 * time.Second},
	} {
		c, err := Parse([]byte("apiVersion: " + APIVersion + "\nhttp: {addr: ':5000'" + tc.yaml + "}\nstorage: {inmemory: {}}\n"))
		if err != nil {
			t.Fatalf("%q: %v", tc.yaml, err)
		}
		if c.HTTP.ShutdownDelay.Duration != tc.want {
			t.Errorf("%q: shutdownDelay = %v, want %v", tc.yaml, c.HTTP.ShutdownDelay.Duration, tc.want)
		}
	}
	if _, err := Parse([]byte("apiVersion: " + APIVersion + "\nhttp: {addr: ':5000', shutdownDelay: later}\nstorage: {inmemory: {}}\n")); err == nil {
		t.Error("a bad shutdownDelay must be rejected")
	}
}
