package retention

import (
	"fmt"
	"time"
)

// MakeAll plans target over store when others (the other policies of the same registry)
// exist too: an artifact or tag any of them keeps is kept (the safe reading of several
// policies). The plan's actions are what target may carry out; its counts are target's.
func MakeAll(store Store, target Policy, others []Policy, names []string, now time.Time) (Plan, error) {
	target.alsoKeep = map[string]keepSet{}
	target.alsoKeepBy = map[string]map[string]string{}
	for i, o := range others {
		op, err := Make(store, o, now)
		if err != nil {
			return Plan{}, fmt.Errorf("policy %s: %w", names[i], err)
		}
		for repo, ks := range op.keeps {
			cur, ok := target.alsoKeep[repo]
			if !ok {
				cur = keepSet{tags: map[string]bool{}, digests: map[string]bool{}}
				target.alsoKeep[repo] = cur
				target.alsoKeepBy[repo] = map[string]string{}
			}
			for t := range ks.tags {
				cur.tags[t] = true
				if _, seen := target.alsoKeepBy[repo][t]; !seen {
					target.alsoKeepBy[repo][t] = names[i]
				}
			}
			for d := range ks.digests {
				cur.digests[d] = true
			}
		}
	}
	return Make(store, target, now)
}
