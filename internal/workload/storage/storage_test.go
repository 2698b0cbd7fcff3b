package storage

import (
	"strings"
	"testing"

	rc "github.com/dockyard-dev/dockyard/internal/registryconfig"
)

func TestParams(t *testing.T) {
	env := map[string]string{"AK": "id", "SK": "secret", "AZ": "key"}
	getenv := func(k string) string { return env[k] }
	for _, tc := range []struct {
		name    string
		s       rc.Storage
		driver  string
		want    map[string]any
		wantErr string
	}{
		{name: "filesystem", s: rc.Storage{Filesystem: &rc.FilesystemStorage{RootDirectory: "/data"}},
			driver: "filesystem", want: map[string]any{"rootdirectory": "/data"}},
		{name: "s3 static creds", s: rc.Storage{S3: &rc.S3Storage{Bucket: "b", Region: "r", Endpoint: "http://127.0.0.1:9000",
			ForcePathStyle: true, AccessKeyIDEnv: "AK", SecretAccessKeyEnv: "SK"}},
			driver: "s3aws", want: map[string]any{"bucket": "b", "region": "r", "regionendpoint": "http://127.0.0.1:9000",
				"forcepathstyle": true, "accesskey": "id", "secretkey": "secret"}},
		{name: "s3 default chain", s: rc.Storage{S3: &rc.S3Storage{Bucket: "b", Region: "r"}},
			driver: "s3aws", want: map[string]any{"bucket": "b"}},
		{name: "s3 env unset", s: rc.Storage{S3: &rc.S3Storage{Bucket: "b", Region: "r", AccessKeyIDEnv: "NOPE", SecretAccessKeyEnv: "SK"}},
			wantErr: "NOPE is empty or unset"},
		{name: "gcs", s: rc.Storage{GCS: &rc.GCSStorage{Bucket: "b", KeyFile: "/k.json"}},
			driver: "gcs", want: map[string]any{"bucket": "b", "keyfile": "/k.json"}},
		{name: "azure key", s: rc.Storage{Azure: &rc.AzureStorage{AccountName: "a", Container: "c", AccountKeyEnv: "AZ"}},
			driver: "azure", want: map[string]any{"accountname": "a", "container": "c", "accountkey": "key"}},
		{name: "inmemory", s: rc.Storage{InMemory: &rc.InMemoryStorage{}}, driver: "inmemory", want: map[string]any{}},
		{name: "none", wantErr: "no backend"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, p, err := Params(tc.s, getenv)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || d != tc.driver {
				t.Fatalf("Params = %q, %v; want %q", d, err, tc.driver)
			}
			for k, v := range tc.want {
				if p[k] != v {
					t.Errorf("param %s = %v, want %v", k, p[k], v)
				}
			}
			for k := range p {
				if strings.Contains(strings.ToLower(k), "secret") || k == "accesskey" || k == "accountkey" {
					if _, expected := tc.want[k]; !expected {
						t.Errorf("unexpected credential parameter %s", k)
					}
				}
			}
		})
	}
}
