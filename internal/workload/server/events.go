package server

import (
	"net/http"

	"github.com/opencontainers/go-digest"

	"github.com/dockyard-dev/dockyard/internal/registryconfig"
	"github.com/dockyard-dev/dockyard/internal/workload/route"
)

// publisher is where acknowledged pushes and deletes go (events.Notifier).
type publisher interface{ Publish(registryconfig.Event) }

// eventsMiddleware publishes every manifest push (201) and delete (202) the registry
// acknowledged, after the response is decided and without delaying it.
func eventsMiddleware(p publisher, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rt, ok := route.Of(r)
		if !ok || rt.Kind != route.Manifest || (r.Method != http.MethodPut && r.Method != http.MethodDelete) {
			next.ServeHTTP(w, r)
			return
		}
		sw := &pullWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		e := registryconfig.Event{Repository: rt.Name}
		switch {
		case r.Method == http.MethodPut && sw.status == http.StatusCreated:
			e.Action = registryconfig.EventPush
			e.Digest = sw.Header().Get("Docker-Content-Digest")
		case r.Method == http.MethodDelete && sw.status == http.StatusAccepted:
			e.Action = registryconfig.EventDelete
		default:
			return
		}
		if d, err := digest.Parse(rt.Reference); err == nil {
			e.Digest = d.String()
		} else {
			e.Tag = rt.Reference
		}
		p.Publish(e)
	})
}
