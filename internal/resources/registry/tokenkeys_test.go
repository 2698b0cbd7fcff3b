package registry

import (
	"fmt"
	"testing"
	"time"

	"github.com/dockyard-dev/dockyard/internal/registryconfig"
)

func TestRotateTokenKeys(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	const interval = 24 * time.Hour
	retire := TokenKeyRetireAfter(0)
	n := 0
	gen := func(signFrom time.Time) (registryconfig.TokenKey, error) {
		n++
		return registryconfig.TokenKey{ID: fmt.Sprintf("k%d", n), SignFrom: signFrom}, nil
	}
	ids := func(keys []registryconfig.TokenKey) string {
		s := ""
		for _, k := range keys {
			s += k.ID + "@" + k.SignFrom.Sub(t0).String() + " "
		}
		return s
	}
	// Walk a clock through two rotations, reconciling at each step like the controller
	// (which looks again at next).
	var keys []registryconfig.TokenKey
	steps := []struct {
		at      time.Duration
		want    string
		changed bool
		next    time.Duration
	}{
		{0, "k1@0s ", true, interval},
		{time.Hour, "k1@0s ", false, interval},
		// Due: k2 is published 10 minutes ahead of signing.
		{interval, "k1@0s k2@24h10m0s ", true, interval + TokenKeyPublishLead + retire},
		// k2 signs from 24h10m; k1 stays until every token it signed has expired.
		{interval + TokenKeyPublishLead + time.Hour, "k1@0s k2@24h10m0s ", false, interval + TokenKeyPublishLead + retire},
		{interval + TokenKeyPublishLead + retire, "k2@24h10m0s ", true, 2*interval + TokenKeyPublishLead},
		{2*interval + TokenKeyPublishLead, "k2@24h10m0s k3@48h20m0s ", true, 2*interval + 2*TokenKeyPublishLead + retire},
	}
	for _, st := range steps {
		got, changed, next, err := RotateTokenKeys(t0.Add(st.at), keys, interval, retire, gen)
		if err != nil {
			t.Fatal(err)
		}
		if ids(got) != st.want || changed != st.changed || !next.Equal(t0.Add(st.next)) {
			t.Errorf("at %s: keys %s changed %v next %s; want %s %v %s", st.at, ids(got), changed, next.Sub(t0), st.want, st.changed, st.next)
		}
		keys = got
	}

	// An operator that was down for a long time catches up in one reconcile: a successor is
	// published and every key but the newest signing one and its successor goes.
	stale := []registryconfig.TokenKey{{ID: "a", SignFrom: t0}, {ID: "b", SignFrom: t0.Add(time.Hour)}, {ID: "c", SignFrom: t0.Add(3 * time.Hour)}}
	got, changed, _, _ := RotateTokenKeys(t0.Add(100*24*time.Hour), stale, interval, retire, gen)
	if !changed || len(got) != 2 || got[0].ID != "c" {
		t.Errorf("after a long outage: %s, want c and its successor", ids(got))
	}
}
