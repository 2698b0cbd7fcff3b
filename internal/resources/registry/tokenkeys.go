package registry

import (
	"encoding/json"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/dockyard-dev/dockyard/api/v1alpha1"
	"github.com/dockyard-dev/dockyard/internal/registryconfig"
)

// TokenKeyPublishLead is how long a new token signing key is published before replicas
// sign with it. Token signing keys rotate in three phases, so that no replica ever sees a token signed
// with a key it does not know yet, and no token is refused before it expires:
//  1. a new key is published TokenKeyPublishLead before its SignFrom (the kubelet refreshes
//     Secret volumes within about a minute, and the workload re-reads the file every few
//     seconds);
//  2. from SignFrom on, replicas sign with it and still accept the previous key;
//  3. the previous key is dropped TokenKeyRetireAfter(sessionTTL) after its successor's
//     SignFrom: when every access token (at most 1h) and refresh token (the session TTL)
//     it signed has expired, plus a margin for slow kubelets.
const TokenKeyPublishLead = 10 * time.Minute

// TokenKeyRetireAfter is how long a replaced key stays: the longest lifetime of a token it
// may have signed, plus 10 minutes.
func TokenKeyRetireAfter(sessionTTL time.Duration) time.Duration {
	return max(time.Hour, sessionTTL) + 10*time.Minute
}

// RotateTokenKeys returns the keys the token keys Secret should hold at now, given the
// keys it holds (in any order) and the rotation interval: a first key when there is none,
// a successor when the newest key has signed for interval, and without the keys whose
// successor has signed for TokenKeyRetireAfter. changed reports whether that differs from
// current; next is when the answer changes by itself (the time to look again).
func RotateTokenKeys(now time.Time, current []registryconfig.TokenKey, interval, retireAfter time.Duration,
	newKey func(signFrom time.Time) (registryconfig.TokenKey, error)) (keys []registryconfig.TokenKey, changed bool, next time.Time, err error) {
	keys = append([]registryconfig.TokenKey(nil), current...)
	sort.SliceStable(keys, func(i, j int) bool { return keys[i].SignFrom.Before(keys[j].SignFrom) })
	if len(keys) == 0 {
		// No replica signs yet (the Secret is created before the pods that mount it).
		k, err := newKey(now)
		if err != nil {
			return nil, false, time.Time{}, err
		}
		keys, changed = []registryconfig.TokenKey{k}, true
	}
	if newest := keys[len(keys)-1]; !newest.SignFrom.After(now) && now.Sub(newest.SignFrom) >= interval {
		k, err := newKey(now.Add(TokenKeyPublishLead))
		if err != nil {
			return nil, false, time.Time{}, err
		}
		keys, changed = append(keys, k), true
	}
	drop := 0
	for i := 0; i+1 < len(keys); i++ {
		if !now.Before(keys[i+1].SignFrom.Add(retireAfter)) {
			drop = i + 1
		}
	}
	if drop > 0 {
		keys, changed = keys[drop:], true
	}
	next = keys[len(keys)-1].SignFrom.Add(interval)
	for i := 0; i+1 < len(keys); i++ {
		if t := keys[i+1].SignFrom.Add(retireAfter); t.Before(next) {
			next = t
		}
	}
	return keys, changed, next, nil
}

// TokenKeysSecret holds the token service's keys (registryconfig.TokenKeys as JSON). The
// controller creates it and rotates its keys; the registry pods mount it.
func TokenKeysSecret(reg *v1alpha1.Registry, keys []registryconfig.TokenKey) (*corev1.Secret, error) {
	data, err := json.Marshal(registryconfig.TokenKeys{Keys: keys})
	if err != nil {
		return nil, err
	}
	return &corev1.Secret{
		TypeMeta:   typeMeta("v1", "Secret"),
		ObjectMeta: objectMeta(reg, reg.TokenKeysSecretName(), ComponentServer),
		Type:       corev1.SecretTypeOpaque,
		Data:       map[string][]byte{registryconfig.TokenKeysKey: data},
	}, nil
}
