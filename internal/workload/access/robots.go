package access

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/dockyard-dev/dockyard/internal/registryconfig"
)

// ProviderRobot names robot accounts in logs, metrics and tokens.
const ProviderRobot = "robot"

// errCredentialExpired marks a robot credential past its expiry (a wrong password, for
// the client; a reason of its own in the audit log).
var errCredentialExpired = fmt.Errorf("%w: the credential has expired", errBadPassword)

// robotSet is one parsed robots file.
type robotSet struct {
	raw    []byte
	byUser map[string]registryconfig.Robot
}

// reloadRobots re-reads the robots file; a file that cannot be read or parsed keeps the
// previous robots (and is an error on first load).
func (c *Controller) reloadRobots() (bool, error) {
	raw, err := os.ReadFile(c.cfg.RobotsFile)
	if err != nil {
		return false, fmt.Errorf("read robots file: %w", err)
	}
	if old := c.robots.Load(); old != nil && bytes.Equal(old.raw, raw) {
		return false, nil
	}
	var rs registryconfig.Robots
	if err := json.Unmarshal(raw, &rs); err != nil {
		return false, fmt.Errorf("parse robots file: %w", err)
	}
	set := &robotSet{raw: raw, byUser: map[string]registryconfig.Robot{}}
	for _, r := range rs.Robots {
		if !strings.HasPrefix(r.User, registryconfig.RobotUserPrefix) {
			return false, fmt.Errorf("robots file: %q does not start with %q", r.User, registryconfig.RobotUserPrefix)
		}
		set.byUser[r.User] = r
	}
	c.robots.Store(set)
	c.log.Info("Loaded robot accounts", "robots", len(set.byUser), "file", c.cfg.RobotsFile)
	return true, nil
}

// robotLogin checks a robot's password against its credentials' hashes (in constant time,
// all of them) and their expiry.
func (c *Controller) robotLogin(user, pass string) (Identity, error) {
	rs := c.robots.Load()
	if rs == nil {
		return Identity{}, errUnknownUser
	}
	r, ok := rs.byUser[user]
	if !ok {
		return Identity{}, errUnknownUser
	}
	sum := sha256.Sum256([]byte(pass))
	var match *registryconfig.RobotToken
	for i := range r.Credentials {
		want, err := hex.DecodeString(r.Credentials[i].SHA256)
		if err == nil && subtle.ConstantTimeCompare(want, sum[:]) == 1 {
			match = &r.Credentials[i]
		}
	}
	switch {
	case match == nil:
		return Identity{}, errBadPassword
	case !c.now().Before(match.ExpiresAt):
		return Identity{}, errCredentialExpired
	}
	return Identity{User: user, Provider: ProviderRobot}, nil
}

// robotAllows reports whether a robot's own grant (its role on its repositories) allows
// action on repository. A robot no longer in the file is allowed nothing, so removing a
// robot revokes the tokens it holds too.
func (c *Controller) robotAllows(user, repository, action string) bool {
	rs := c.robots.Load()
	if rs == nil {
		return false
	}
	r, ok := rs.byUser[user]
	if !ok || !roleAllows(r.Role, action) {
		return false
	}
	for _, p := range r.Repositories {
		if MatchRepository(p, repository) {
			return true
		}
	}
	return false
}

// robotKnown reports whether user is a robot in the current file.
func (c *Controller) robotKnown(user string) bool {
	rs := c.robots.Load()
	if rs == nil {
		return false
	}
	_, ok := rs.byUser[user]
	return ok
}
