// Package events is the registry's one event path: what the registry acknowledges (a
// manifest pushed, a manifest or tag deleted) is published here, off the request path, and
// delivered to the operator in batches. Delivery is best effort with a bounded queue: when
// the operator is away longer than the queue lasts, the oldest events are dropped and the
// next batch says so (Lost), and the operator compares everything instead. Nothing a
// client does ever waits for, or fails because of, a delivery.
package events

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dockyard-dev/dockyard/internal/registryconfig"
)

// Bounds of delivery.
const (
	// QueueSize events wait at most; past it the oldest are dropped.
	QueueSize = 4096
	// linger gathers the events of a burst into one delivery.
	linger = 50 * time.Millisecond
	// firstBackoff and maxBackoff bound the wait between failed deliveries.
	firstBackoff = 500 * time.Millisecond
	maxBackoff   = 30 * time.Second
	// requestTimeout bounds one delivery.
	requestTimeout = 10 * time.Second
)

// Notifier delivers events to the operator.
type Notifier struct {
	cfg    registryconfig.Events
	client *http.Client
	log    *slog.Logger
	now    func() time.Time

	mu    sync.Mutex
	queue []registryconfig.Event
	lost  bool
	// ndropped counts drops from the front of queue, so a delivery knows how much of its
	// batch is still queued.
	ndropped int
	wake     chan struct{}
	closed   bool

	delivered, dropped, failures prometheus.Counter
}

// New returns a notifier for cfg; client is http.DefaultClient when nil.
func New(cfg registryconfig.Events, client *http.Client, log *slog.Logger) *Notifier {
	if client == nil {
		client = &http.Client{Timeout: requestTimeout}
	}
	return &Notifier{cfg: cfg, client: client, log: log, now: time.Now, wake: make(chan struct{}, 1),
		delivered: prometheus.NewCounter(prometheus.CounterOpts{Name: "dockyard_registry_events_delivered_total",
			Help: "Events (pushes, deletes) delivered to the operator."}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "dockyard_registry_events_dropped_total",
			Help: "Events dropped because the queue was full while the operator was unreachable (the operator then compares everything)."}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{Name: "dockyard_registry_events_delivery_failures_total",
			Help: "Failed deliveries of events to the operator (retried with backoff)."}),
	}
}

// Collectors are the notifier's metrics.
func (n *Notifier) Collectors() []prometheus.Collector {
	return []prometheus.Collector{n.delivered, n.dropped, n.failures}
}

// Publish queues an event; it never blocks.
func (n *Notifier) Publish(e registryconfig.Event) {
	if e.Time.IsZero() {
		e.Time = n.now()
	}
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return
	}
	if len(n.queue) >= QueueSize {
		n.queue = n.queue[1:]
		n.ndropped++
		n.lost = true
		n.dropped.Inc()
	}
	n.queue = append(n.queue, e)
	n.mu.Unlock()
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// Run delivers events until ctx ends, then makes one last attempt for what is queued.
func (n *Notifier) Run(ctx context.Context) {
	backoff := firstBackoff
	for {
		select {
		case <-ctx.Done():
			n.mu.Lock()
			n.closed = true
			n.mu.Unlock()
			last, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			_ = n.flush(last)
			cancel()
			return
		case <-n.wake:
		}
		// Let a burst (an image's manifests, a multi-arch index) gather.
		select {
		case <-ctx.Done():
			continue
		case <-time.After(linger):
		}
		for {
			err := n.flush(ctx)
			if err == nil {
				backoff = firstBackoff
				break
			}
			n.failures.Inc()
			n.log.Warn("Deliver registry events to the operator, retrying", "err", err, "retryIn", backoff)
			select {
			case <-ctx.Done():
			case <-time.After(backoff):
			}
			if ctx.Err() != nil {
				break
			}
			backoff = min(2*backoff, maxBackoff)
		}
	}
}

// flush delivers everything queued, a batch at a time; what fails stays queued.
func (n *Notifier) flush(ctx context.Context) error {
	for {
		n.mu.Lock()
		if len(n.queue) == 0 && !n.lost {
			n.mu.Unlock()
			return nil
		}
		k := min(len(n.queue), registryconfig.MaxEventBatch)
		batch := registryconfig.EventBatch{Registry: n.cfg.Registry, Events: append([]registryconfig.Event(nil), n.queue[:k]...), Lost: n.lost}
		snap := n.ndropped
		n.mu.Unlock()
		if err := n.deliver(ctx, batch); err != nil {
			return err
		}
		n.mu.Lock()
		// Publish only appends and drops from the front: what is left of the batch is
		// still the front (drops during the delivery set lost again).
		drop := max(0, min(k-(n.ndropped-snap), len(n.queue)))
		n.queue = n.queue[drop:]
		if batch.Lost && n.ndropped == snap {
			n.lost = false
		}
		n.mu.Unlock()
		n.delivered.Add(float64(k))
	}
}

func (n *Notifier) deliver(ctx context.Context, batch registryconfig.EventBatch) error {
	token, err := os.ReadFile(n.cfg.TokenFile)
	if err != nil {
		return fmt.Errorf("read the events token: %w", err)
	}
	body, err := json.Marshal(batch)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	resp, err := n.client.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("operator answered %s", resp.Status)
	}
	return nil
}
