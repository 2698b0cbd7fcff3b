package access

import (
	"sync"
	"time"
)

// expiringCache maps 32-byte keys (hashes or HMACs of credentials, never the credentials)
// to values that expire. It holds at most max entries: when full, expired entries are
// dropped and, if that is not enough, it starts over.
type expiringCache[V any] struct {
	max int
	mu  sync.Mutex
	m   map[[32]byte]expiring[V]
}

type expiring[V any] struct {
	v       V
	expires time.Time
}

func newExpiringCache[V any](maxEntries int) *expiringCache[V] {
	return &expiringCache[V]{max: maxEntries, m: map[[32]byte]expiring[V]{}}
}

// get returns the value under key unless it has expired at now.
func (c *expiringCache[V]) get(key [32]byte, now time.Time) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[key]
	if !ok || !now.Before(e.expires) {
		var zero V
		return zero, false
	}
	return e.v, true
}

// put stores v under key until expires.
func (c *expiringCache[V]) put(key [32]byte, v V, expires, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= c.max {
		for k, e := range c.m {
			if !now.Before(e.expires) {
				delete(c.m, k)
			}
		}
		if len(c.m) >= c.max {
			clear(c.m)
		}
	}
	c.m[key] = expiring[V]{v: v, expires: expires}
}

// reset forgets everything.
func (c *expiringCache[V]) reset() {
	c.mu.Lock()
	clear(c.m)
	c.mu.Unlock()
}
