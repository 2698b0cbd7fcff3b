package controller

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dockyard-dev/dockyard/api/v1alpha1"
	"github.com/dockyard-dev/dockyard/internal/registryconfig"
	"github.com/dockyard-dev/dockyard/internal/scan"
)

// Bounds of the scan forwarder.
const (
	// scanForwardMaxPending bounds the pushes held per Registry while its scanner is away;
	// beyond it the oldest are dropped (the scanner's sweep finds them).
	scanForwardMaxPending = 10000
	// scanForwardRetry is the wait after a failed delivery.
	scanForwardRetry = 10 * time.Second
)

// ScanForwarder hands the pushes the registries report (see EventReceiver) to the
// scanners of Registries with spec.scanning: one event path for replication and scanning.
// It holds what a scanner could not take yet (bounded, in memory) and retries; what is lost
// (a restart, an overflow) the scanner's own sweep catches up. It runs in the leader only,
// as the receiver does.
type ScanForwarder struct {
	// Client reads Registries (from the cache); Reader the scanner Secret (not cached).
	Client client.Client
	Reader client.Reader
	// Address and HTTP as in RegistryReconciler.ScannerAddress / ScannerHTTP.
	Address func(*v1alpha1.Registry) string
	HTTP    *http.Client

	mu      sync.Mutex
	pending map[types.NamespacedName][]scan.JobSpec
	// retryAt holds, per Registry whose scanner failed, when to try it again: a scanner
	// that is away never delays the others.
	retryAt map[types.NamespacedName]time.Time
	wake    chan struct{}
	// delivered counts jobs handed over (tests and metrics read it).
	delivered int
}

// NeedLeaderElection is true: the events arrive at the leader.
func (f *ScanForwarder) NeedLeaderElection() bool { return true }

func (f *ScanForwarder) init() {
	if f.pending == nil {
		f.pending = map[types.NamespacedName][]scan.JobSpec{}
		f.retryAt = map[types.NamespacedName]time.Time{}
		f.wake = make(chan struct{}, 1)
	}
}

// Add queues the pushes of one batch of a Registry for its scanner (deletes and pushes
// without a digest are of no interest).
func (f *ScanForwarder) Add(key types.NamespacedName, events []registryconfig.Event) {
	var jobs []scan.JobSpec
	for _, ev := range events {
		// What the scanner would refuse (a sha512 digest, a malformed name) never blocks the rest.
		if ev.Action == registryconfig.EventPush && scan.ValidJob(ev.Repository, ev.Digest) {
			jobs = append(jobs, scan.JobSpec{Repository: ev.Repository, Digest: ev.Digest, Cause: scan.CausePush})
		}
	}
	if len(jobs) == 0 {
		return
	}
	f.mu.Lock()
	f.init()
	q := append(append([]scan.JobSpec(nil), f.pending[key]...), jobs...)
	if over := len(q) - scanForwardMaxPending; over > 0 {
		q = q[over:]
	}
	f.pending[key] = q
	f.mu.Unlock()
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// Start delivers until ctx ends.
func (f *ScanForwarder) Start(ctx context.Context) error {
	f.mu.Lock()
	f.init()
	f.mu.Unlock()
	log := ctrl.LoggerFrom(ctx).WithName("scan-forwarder")
	for {
		retry := f.flush(ctx, log)
		var timer <-chan time.Time
		if retry {
			timer = time.After(scanForwardRetry)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-f.wake:
		case <-timer:
		}
	}
}

// flush delivers what is pending; it says whether something is left to retry.
func (f *ScanForwarder) flush(ctx context.Context, log logr.Logger) bool {
	f.mu.Lock()
	batch := f.pending
	f.pending = map[types.NamespacedName][]scan.JobSpec{}
	f.mu.Unlock()
	retry := false
	sc := &scannerClient{Reader: f.Reader, Address: f.Address, HTTP: f.HTTP}
	now := time.Now()
	for key, jobs := range batch {
		f.mu.Lock()
		wait := f.retryAt[key].After(now)
		f.mu.Unlock()
		if wait {
			f.putBack(key, jobs)
			retry = true
			continue
		}
		reg := &v1alpha1.Registry{}
		if err := f.Client.Get(ctx, key, reg); err != nil {
			if !apierrors.IsNotFound(err) {
				log.Error(err, "Read the Registry, holding its pushes", "registry", key.String())
				f.putBack(key, jobs)
				retry = true
			}
			continue
		}
		if reg.Spec.Scanning == nil || !reg.DeletionTimestamp.IsZero() {
			// Not scanning: nothing to hand over.
			continue
		}
		for len(jobs) > 0 {
			n := min(len(jobs), scan.MaxJobsPerRequest)
			var resp scan.JobResponse
			if err := sc.call(ctx, reg, http.MethodPost, scan.ScanPath, scan.JobRequest{Jobs: jobs[:n]}, &resp); err != nil {
				var refused *scannerRefused
				if errors.As(err, &refused) && refused.permanent() {
					// Retrying would block every later push of this Registry; the sweep
					// finds these images.
					log.Error(err, "Scanner refused pushes, dropping them", "registry", key.String(), "pushes", n)
					jobs = jobs[n:]
					continue
				}
				log.Info("Scanner not reachable, holding pushes", "registry", key.String(), "pushes", len(jobs), "err", err.Error())
				f.putBack(key, jobs)
				f.mu.Lock()
				f.retryAt[key] = time.Now().Add(scanForwardRetry)
				f.mu.Unlock()
				retry = true
				break
			}
			f.mu.Lock()
			f.delivered += resp.Accepted
			delete(f.retryAt, key)
			f.mu.Unlock()
			if resp.Refused > 0 {
				log.Info("Scanner queue full; its sweep will find the refused pushes", "registry", key.String(), "refused", resp.Refused)
			}
			jobs = jobs[n:]
		}
	}
	return retry
}

// putBack returns undelivered jobs ahead of those that arrived meanwhile.
func (f *ScanForwarder) putBack(key types.NamespacedName, jobs []scan.JobSpec) {
	f.mu.Lock()
	defer f.mu.Unlock()
	q := append(append([]scan.JobSpec(nil), jobs...), f.pending[key]...)
	if over := len(q) - scanForwardMaxPending; over > 0 {
		q = q[over:]
	}
	f.pending[key] = q
}

// Delivered is the number of jobs the scanners accepted.
func (f *ScanForwarder) Delivered() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.delivered
}
