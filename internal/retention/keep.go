package retention

import (
	"cmp"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/dockyard-dev/dockyard/internal/registryconfig"
	"github.com/dockyard-dev/dockyard/internal/workload/access"
)

// keepTags applies the rules to a repository's tags. It returns the kept tag names and,
// for the others, why: the first rule whose selector matched and the condition it missed.
func keepTags(tags []Tag, rules []Rule, sel []compiled, byDigest map[string]*Manifest, pulled map[string]time.Time, now time.Time) (map[string]bool, map[string]string) {
	kept := map[string]bool{}
	why := map[string]string{}
	for i, r := range rules {
		var matched []Tag
		for _, t := range tags {
			if sel[i].match(t.Name) {
				matched = append(matched, t)
			}
		}
		// Newest first; ties by name, so the plan is stable.
		slices.SortFunc(matched, func(a, b Tag) int {
			return cmp.Or(b.PushedAt.Compare(a.PushedAt), cmp.Compare(a.Name, b.Name))
		})
		unconditional := r.KeepLast == 0 && r.PushedWithin == 0 && r.PulledWithin == 0
		for n, t := range matched {
			m := byDigest[t.Digest]
			pushed := later(t.PushedAt, m.PushedAt)
			switch {
			case unconditional,
				r.KeepLast > 0 && n < r.KeepLast,
				r.PushedWithin > 0 && now.Sub(pushed) <= r.PushedWithin,
				r.PulledWithin > 0 && !pulled[t.Digest].IsZero() && now.Sub(pulled[t.Digest]) <= r.PulledWithin:
				kept[t.Name] = true
			default:
				if _, seen := why[t.Name]; !seen {
					why[t.Name] = missed(r, n, pushed, pulled[t.Digest], now)
				}
			}
		}
	}
	for _, t := range tags {
		if !kept[t.Name] && why[t.Name] == "" {
			why[t.Name] = "no rule's tag selector matches " + t.Name
		}
	}
	return kept, why
}

// immutable reports whether a rule makes tag of repo immutable.
func immutable(rules []registryconfig.ImmutableTagRule, repo, tag string) bool {
	for _, r := range rules {
		for _, p := range r.Repositories {
			if !access.MatchRepository(p, repo) {
				continue
			}
			for _, t := range r.Tags {
				if ok, _ := path.Match(t, tag); ok {
					return true
				}
			}
		}
	}
	return false
}

// pullTimes is, per manifest, the latest pull of it or of any manifest it contains.
func pullTimes(byDigest map[string]*Manifest) map[string]time.Time {
	out := make(map[string]time.Time, len(byDigest))
	var visit func(d string, depth int) time.Time
	visit = func(d string, depth int) time.Time {
		if t, done := out[d]; done {
			return t
		}
		m := byDigest[d]
		if m == nil || depth > 8 { // indexes of indexes are shallow; a cycle cannot recurse forever
			return time.Time{}
		}
		t := m.PulledAt
		out[d] = t // breaks cycles
		for _, c := range m.Children {
			t = later(t, visit(c, depth+1))
		}
		out[d] = t
		return t
	}
	for d := range byDigest {
		visit(d, 0)
	}
	return out
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// missed explains which condition of rule r tag number n (newest first) did not meet.
func missed(r Rule, n int, pushed, pulled, now time.Time) string {
	var parts []string
	if r.KeepLast > 0 {
		parts = append(parts, fmt.Sprintf("number %d by push time, keepLast %d", n+1, r.KeepLast))
	}
	if r.PushedWithin > 0 {
		parts = append(parts, fmt.Sprintf("pushed %s ago, pushedWithin %s", now.Sub(pushed).Truncate(time.Second), r.PushedWithin))
	}
	if r.PulledWithin > 0 {
		if pulled.IsZero() {
			parts = append(parts, fmt.Sprintf("never pulled, pulledWithin %s", r.PulledWithin))
		} else {
			parts = append(parts, fmt.Sprintf("pulled %s ago, pulledWithin %s", now.Sub(pulled).Truncate(time.Second), r.PulledWithin))
		}
	}
	return r.Name + ": " + strings.Join(parts, "; ")
}
