package workload

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"golang.org/x/crypto/bcrypt"
)

// runHtpasswd prints one `user:bcrypt-hash` line, the format of the users Secret's
// htpasswd key, for a password read from the first line of stdin (so it never appears in
// the process list or shell history):
//
//	printf '%s' "$PASSWORD" | dockyard registry htpasswd alice >> htpasswd
func runHtpasswd(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("htpasswd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cost := fs.Int("cost", bcrypt.DefaultCost, fmt.Sprintf("bcrypt cost (%d-%d)", bcrypt.MinCost, bcrypt.MaxCost))
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %w", ErrUsage, err)
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("%w: htpasswd takes exactly one user name, got %d arguments", ErrUsage, fs.NArg())
	}
	user := fs.Arg(0)
	if user == "" || strings.ContainsAny(user, ": \t\r\n") {
		return fmt.Errorf("%w: user name %q must be non-empty without ':' or whitespace", ErrUsage, user)
	}
	if *cost < bcrypt.MinCost || *cost > bcrypt.MaxCost {
		return fmt.Errorf("%w: --cost %d is outside %d-%d", ErrUsage, *cost, bcrypt.MinCost, bcrypt.MaxCost)
	}
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("read password from stdin: %w", err)
	}
	password := strings.TrimRight(line, "\r\n")
	if password == "" {
		return errors.New("no password on stdin: pipe it in, e.g. printf '%s' \"$PASSWORD\" | dockyard registry htpasswd " + user)
	}
	if len(password) > 72 {
		return errors.New("password is longer than 72 bytes, bcrypt's limit")
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), *cost)
	if err != nil {
		return fmt.Errorf("hash password: %w", err)
	}
	_, err = fmt.Fprintf(stdout, "%s:%s\n", user, hash)
	return err
}
