package access

import (
	"bufio"
	"bytes"
	"fmt"
	"sort"
	"strings"

	"golang.org/x/crypto/bcrypt"
)

// Users is one parsed snapshot of the htpasswd and groups files.
type Users struct {
	// hashes maps a user name to its bcrypt hash.
	hashes map[string][]byte
	// groups maps a user name to the groups it belongs to.
	groups map[string][]string
	// rawHtpasswd and rawGroups are the file contents this snapshot was parsed from.
	rawHtpasswd, rawGroups []byte
	// costs holds the bcrypt cost of every user's hash, sorted: unknown user names are
	// checked at a cost drawn from this distribution (see Controller.dummyCost).
	costs []int
}

// hashCosts lists the bcrypt cost of every hash, sorted.
func hashCosts(hashes map[string][]byte) []int {
	out := make([]int, 0, len(hashes))
	for _, h := range hashes {
		if c, err := bcrypt.Cost(h); err == nil {
			out = append(out, c)
		}
	}
	sort.Ints(out)
	return out
}

// Problem is a line that was skipped while parsing a users or groups file.
type Problem struct {
	File string
	Line int
	User string
	Msg  string
}

func (p Problem) String() string {
	if p.User != "" {
		return fmt.Sprintf("%s:%d: user %q: %s", p.File, p.Line, p.User, p.Msg)
	}
	return fmt.Sprintf("%s:%d: %s", p.File, p.Line, p.Msg)
}

// isBcrypt reports whether hash looks like a bcrypt hash ($2a$, $2b$, $2y$).
func isBcrypt(hash string) bool {
	return len(hash) == 60 && (strings.HasPrefix(hash, "$2a$") || strings.HasPrefix(hash, "$2b$") ||
		strings.HasPrefix(hash, "$2y$"))
}

// ParseHtpasswd parses `user:hash` lines. Only bcrypt hashes are accepted: a line with any
// other hash (MD5-crypt, SHA1, crypt, plain text) is skipped and reported as a Problem so
// the user cannot log in with it.
func ParseHtpasswd(name string, data []byte) (map[string][]byte, []Problem) {
	users := map[string][]byte{}
	var problems []Problem
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		user, hash, ok := strings.Cut(line, ":")
		if !ok || user == "" {
			problems = append(problems, Problem{File: name, Line: n, Msg: "not in user:hash form, skipped"})
			continue
		}
		if !isBcrypt(hash) {
			problems = append(problems, Problem{File: name, Line: n, User: user,
				Msg: "hash is not bcrypt (create it with `htpasswd -nbB user password`), user disabled"})
			continue
		}
		if _, dup := users[user]; dup {
			problems = append(problems, Problem{File: name, Line: n, User: user, Msg: "duplicate user, later line wins"})
		}
		users[user] = []byte(hash)
	}
	return users, problems
}

// ParseGroups parses `group: user1, user2` lines (comments start with #) into a map from
// user to groups.
func ParseGroups(name string, data []byte) (map[string][]string, []Problem) {
	groups := map[string][]string{}
	var problems []Problem
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		group, members, ok := strings.Cut(line, ":")
		group = strings.TrimSpace(group)
		if !ok || group == "" {
			problems = append(problems, Problem{File: name, Line: n, Msg: "not in `group: user1, user2` form, skipped"})
			continue
		}
		for _, m := range strings.FieldsFunc(members, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }) {
			groups[m] = append(groups[m], group)
		}
	}
	return groups, problems
}
