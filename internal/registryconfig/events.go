package registryconfig

import "time"

// Events sends what the registry sees (pushes, deletes) to the operator, which starts the
// work that depends on them (onPush replication). The operator authenticates the sender by
// its projected ServiceAccount token (audience EventsAudience): the token file is mounted
// by the kubelet and re-read for every delivery.
type Events struct {
	// URL is the operator's events endpoint, e.g.
	// http://dockyard-events.dockyard-system.svc:8082/v1/events.
	URL string `json:"url"`
	// TokenFile is the projected ServiceAccount token presented as a Bearer token.
	TokenFile string `json:"tokenFile"`
	// Registry is the sender's "namespace/name".
	Registry string `json:"registry"`
}

// Where the operator mounts the events token and what it is for.
const (
	// EventsTokenDir holds EventsTokenFile, a projected ServiceAccount token.
	EventsTokenDir  = "/var/run/dockyard/events"
	EventsTokenFile = "token"
	// EventsAudience is the token's audience: it is good for nothing but events.
	EventsAudience = "dockyard-events"
	// EventsTokenSeconds is the token's lifetime; the kubelet renews it at 80%.
	EventsTokenSeconds int64 = 600
	// EventsPath is the operator's events endpoint path.
	EventsPath = "/v1/events"
	// EventsPort is the port the operator receives events on.
	EventsPort int32 = 8082
)

// Event actions.
const (
	EventPush   = "push"
	EventDelete = "delete"
)

// Event is one thing the registry saw.
type Event struct {
	// Action is EventPush (a manifest stored, by tag or digest) or EventDelete.
	Action string `json:"action"`
	// Repository, Digest and Tag (empty for a push by digest) of the manifest.
	Repository string `json:"repository"`
	Digest     string `json:"digest,omitempty"`
	Tag        string `json:"tag,omitempty"`
	// Time the registry acknowledged it.
	Time time.Time `json:"time"`
}

// EventBatch is what one delivery carries.
type EventBatch struct {
	// Registry is the sender's "namespace/name".
	Registry string `json:"registry"`
	// Events, oldest first.
	Events []Event `json:"events"`
	// Lost is true when events were dropped (the queue overflowed while the operator was
	// unreachable): the receiver must compare everything, not just these.
	Lost bool `json:"lost,omitempty"`
}

// MaxEventBatch bounds the events of one delivery.
const MaxEventBatch = 256
