package workload_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/dockyard-dev/dockyard/internal/workload"
	"github.com/dockyard-dev/dockyard/internal/workload/access"
)

// The line `dockyard registry htpasswd` prints is accepted by the registry's own htpasswd
// parser and verifies the password that was piped in, and nothing else.
func TestHtpasswdLineLogsIn(t *testing.T) {
	var stdout, stderr bytes.Buffer
	err := workload.RunIO(context.Background(), []string{"htpasswd", "--cost", "4", "alice"},
		strings.NewReader("s3cret pass\n"), &stdout, &stderr)
	if err != nil {
		t.Fatalf("htpasswd: %v\n%s", err, stderr.String())
	}
	users, problems := access.ParseHtpasswd("htpasswd", stdout.Bytes())
	if len(problems) != 0 {
		t.Fatalf("registry rejects the printed line %q: %v", stdout.String(), problems)
	}
	hash, ok := users["alice"]
	if !ok {
		t.Fatalf("printed line %q has no user alice", stdout.String())
	}
	if err := bcrypt.CompareHashAndPassword(hash, []byte("s3cret pass")); err != nil {
		t.Errorf("hash does not verify the piped password (trailing newline must be dropped): %v", err)
	}
	if bcrypt.CompareHashAndPassword(hash, []byte("s3cret pass\n")) == nil {
		t.Error("hash verifies the password with its newline")
	}
	if cost, _ := bcrypt.Cost(hash); cost != 4 {
		t.Errorf("cost = %d, want 4", cost)
	}
}

func TestHtpasswdRejectsBadInput(t *testing.T) {
	for _, tc := range []struct {
		name, stdin string
		args        []string
		usage       bool
	}{
		{"no user", "pw\n", []string{"htpasswd"}, true},
		{"two users", "pw\n", []string{"htpasswd", "a", "b"}, true},
		{"colon in user", "pw\n", []string{"htpasswd", "a:b"}, true},
		{"cost too low", "pw\n", []string{"htpasswd", "--cost", "2", "a"}, true},
		{"empty password", "\n", []string{"htpasswd", "a"}, false},
		{"no stdin", "", []string{"htpasswd", "a"}, false},
		{"over 72 bytes", strings.Repeat("x", 73), []string{"htpasswd", "a"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := workload.RunIO(context.Background(), tc.args, strings.NewReader(tc.stdin), &stdout, &stderr)
			if err == nil {
				t.Fatalf("accepted; printed %q", stdout.String())
			}
			if got := errors.Is(err, workload.ErrUsage); got != tc.usage {
				t.Errorf("usage error = %v, want %v (%v)", got, tc.usage, err)
			}
			if stdout.Len() != 0 {
				t.Errorf("printed %q on error", stdout.String())
			}
		})
	}
}
