package access

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"time"
)

// reload re-reads the users files and the token keys; it reports whether anything
// changed. A file that cannot be read keeps the previous snapshot (and is an error on first
// load).
func (c *Controller) reload() (bool, error) {
	// Each file on its own: a broken keys file must not hold back a user's or a robot's
	// removal.
	changed := false
	var errs []error
	if c.tokens != nil {
		ch, err := c.tokens.reload()
		if err != nil {
			errs = append(errs, err)
		}
		if ch {
			c.log.Info("Loaded token keys", "file", c.cfg.Token.KeysFile)
		}
		changed = ch
	}
	if c.cfg.RobotsFile != "" {
		ch, err := c.reloadRobots()
		if err != nil {
			errs = append(errs, err)
		}
		changed = changed || ch
	}
	if c.cfg.HtpasswdFile != "" {
		ch, err := c.reloadUsers()
		if err != nil {
			errs = append(errs, err)
		}
		changed = changed || ch
	}
	return changed, errors.Join(errs...)
}

// reloadUsers re-reads the users and groups files.
func (c *Controller) reloadUsers() (bool, error) {
	htp, err := os.ReadFile(c.cfg.HtpasswdFile)
	if err != nil {
		return false, fmt.Errorf("read users file: %w", err)
	}
	var grp []byte
	if c.cfg.GroupsFile != "" {
		if grp, err = os.ReadFile(c.cfg.GroupsFile); err != nil {
			return false, fmt.Errorf("read groups file: %w", err)
		}
	}
	old := c.users.Load()
	if old != nil && bytes.Equal(old.rawHtpasswd, htp) && bytes.Equal(old.rawGroups, grp) {
		return false, nil
	}
	hashes, problems := ParseHtpasswd(c.cfg.HtpasswdFile, htp)
	u := &Users{hashes: hashes, groups: map[string][]string{}, rawHtpasswd: htp, rawGroups: grp, costs: hashCosts(hashes)}
	if c.cfg.GroupsFile != "" {
		groups, gp := ParseGroups(c.cfg.GroupsFile, grp)
		u.groups = groups
		problems = append(problems, gp...)
	}
	for _, p := range problems {
		c.log.Error("Skipped a line of the users files", "problem", p.String())
	}
	c.users.Store(u)
	c.mu.Lock()
	clear(c.verified)
	c.mu.Unlock()
	c.log.Info("Loaded users", "users", len(hashes), "file", c.cfg.HtpasswdFile, "groupsFile", c.cfg.GroupsFile)
	return true, nil
}

// Watch re-reads the users files and token keys every interval until ctx is done. Mounted Secrets are
// updated by swapping a symlink, so the files are compared by content rather than watched.
func (c *Controller) Watch(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := c.reload(); err != nil {
				c.log.Error("Reload users files or token keys, keeping the previous ones", "err", err)
			}
		}
	}
}
