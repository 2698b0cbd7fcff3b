// Package manager wires the Dockyard operator: flags, scheme, cache, controllers.
package manager

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/discovery"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/source"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/dockyard-dev/dockyard/api/v1alpha1"
	"github.com/dockyard-dev/dockyard/internal/admission"
	"github.com/dockyard-dev/dockyard/internal/controller"
	resources "github.com/dockyard-dev/dockyard/internal/resources/registry"
)

// DefaultImage is the registry image when neither --registry-image nor DOCKYARD_IMAGE is set.
const DefaultImage = "dockyard:dev"

// Options configure the operator.
type Options struct {
	MetricsAddr string
	// MetricsSecure serves metrics over HTTPS and lets only callers that authenticate (a
	// TokenReview) and are authorized (a SubjectAccessReview for GET on the /metrics
	// non-resource URL) read them. On by default; off only for local runs and tests.
	MetricsSecure bool
	// MetricsCertDir holds tls.crt and tls.key for the metrics endpoint (reloaded when they
	// change); empty means a self-signed certificate generated at start.
	MetricsCertDir          string
	ProbeAddr               string
	LeaderElection          bool
	LeaderElectionNamespace string
	Image                   string
	ClusterDomain           string
	MaxConcurrentReconciles int
	// RegistryAddress, when set, is where the manager reaches a Registry's API for
	// replication (tests that run registries on 127.0.0.1); its Service otherwise.
	RegistryAddress func(*v1alpha1.Registry) string
	// ScannerAddress, when set, is where the manager reaches a Registry's scanner (tests
	// that run scanners on 127.0.0.1); its Service otherwise.
	ScannerAddress func(*v1alpha1.Registry) string
	// EventsAddr is where the leader receives registry events (onPush replication); empty
	// or "0" turns the receiver off.
	EventsAddr string
	// EventsURL is the URL registries send events to (rendered into their config); empty:
	// registries send none.
	EventsURL string
	// PprofAddr serves Go's pprof profiles (for measuring; off by default: "0" or empty).
	PprofAddr string
	// WebhookAddr serves the compliance admission webhook (host:port, e.g. :9443); empty
	// or "0" turns the webhook off (Registries' spec.scanning.policy is then not enforced).
	WebhookAddr string
	// WebhookService is the Service in front of WebhookAddr, in Namespace.
	WebhookService string
	// WebhookURL, when set, is the URL the API server calls instead of the Service
	// (tests serving the webhook on 127.0.0.1); the certificate is then for its host.
	WebhookURL string
	// WebhookFailurePolicy is Fail (default) or Ignore.
	WebhookFailurePolicy string
	// Namespace is the operator's namespace (env POD_NAMESPACE): the webhook's Secret
	// lives there, and it is never checked.
	Namespace string
}

// NewScheme returns the scheme with every type the operator reads or writes.
func NewScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(v1alpha1.AddToScheme(s))
	utilruntime.Must(cmapi.AddToScheme(s))
	utilruntime.Must(monitoringv1.AddToScheme(s))
	return s
}

// Run parses flags and runs the manager until ctx is done.
func Run(ctx context.Context, args []string, version string) error {
	fs := flag.NewFlagSet("manager", flag.ContinueOnError)
	var o Options
	fs.StringVar(&o.MetricsAddr, "metrics-bind-address", ":8443", "address of the Prometheus metrics endpoint; 0 disables it")
	fs.BoolVar(&o.MetricsSecure, "metrics-secure", true, "serve metrics over HTTPS to authenticated and authorized callers only (false: plain HTTP, for local runs)")
	fs.StringVar(&o.MetricsCertDir, "metrics-cert-dir", "", "directory with tls.crt and tls.key for the metrics endpoint (default: a self-signed certificate)")
	fs.StringVar(&o.ProbeAddr, "health-probe-bind-address", ":8081", "address of /healthz and /readyz")
	fs.BoolVar(&o.LeaderElection, "leader-elect", false, "elect a leader so only one replica reconciles")
	fs.StringVar(&o.LeaderElectionNamespace, "leader-election-namespace", "", "namespace of the leader-election Lease (default: the pod's)")
	fs.StringVar(&o.Image, "registry-image", envOr("DOCKYARD_IMAGE", DefaultImage), "image of registry pods and GC jobs when a Registry sets none (env DOCKYARD_IMAGE)")
	fs.StringVar(&o.ClusterDomain, "cluster-domain", v1alpha1.DefaultClusterDomain, "the cluster's DNS domain, for certificate names")
	fs.IntVar(&o.MaxConcurrentReconciles, "max-concurrent-reconciles", 4, "Registries reconciled in parallel")
	fs.StringVar(&o.EventsAddr, "events-bind-address", "0", "address the leader receives registry events on (onPush replication), e.g. :8082; 0 disables it")
	fs.StringVar(&o.PprofAddr, "pprof-bind-address", "0", "address of Go's pprof endpoints (/debug/pprof), for profiling; 0 disables it")
	fs.StringVar(&o.WebhookAddr, "webhook-bind-address", "0", "address of the compliance admission webhook (spec.scanning.policy), e.g. :9443; 0 disables it")
	fs.StringVar(&o.WebhookService, "webhook-service", "dockyard-webhook", "the Service in front of --webhook-bind-address, in the operator's namespace")
	fs.StringVar(&o.WebhookFailurePolicy, "webhook-failure-policy", "Fail", "what the API server does when the compliance webhook cannot be reached: Fail (refuse; only objects naming images of Registries with a policy are ever sent) or Ignore (admit)")
	fs.StringVar(&o.Namespace, "namespace", os.Getenv("POD_NAMESPACE"), "the operator's namespace (default env POD_NAMESPACE): the webhook's certificate Secret lives there; it is never checked")
	fs.StringVar(&o.EventsURL, "events-url", "", "URL registries send events to, e.g. http://dockyard-events.dockyard-system.svc:8082/v1/events (the Service in front of --events-bind-address); empty: registries send none")
	zapOpts := zap.Options{}
	zapOpts.BindFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.WebhookFailurePolicy != "Fail" && o.WebhookFailurePolicy != "Ignore" {
		return fmt.Errorf("--webhook-failure-policy must be Fail or Ignore, not %q", o.WebhookFailurePolicy)
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	log := ctrl.Log.WithName("setup")
	log.Info("Starting dockyard manager", "version", version, "registryImage", o.Image, "goMemoryLimit", SetMemoryLimit())

	cfg, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("load kubeconfig: %w", err)
	}
	mgr, err := New(cfg, o)
	if err != nil {
		return err
	}
	return mgr.Start(ctx)
}

// MetricsOptions serves the manager's metrics as kubebuilder scaffolds it: HTTPS (HTTP/1.1
// only, against the HTTP/2 stream-reset attacks) with authentication and authorization
// through the API server, unless Options.MetricsSecure is false.
func MetricsOptions(o Options) metricsserver.Options {
	m := metricsserver.Options{BindAddress: o.MetricsAddr}
	if !o.MetricsSecure {
		return m
	}
	m.SecureServing = true
	m.FilterProvider = filters.WithAuthenticationAndAuthorization
	m.TLSOpts = []func(*tls.Config){func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} }}
	if o.MetricsCertDir != "" {
		// controller-runtime watches the files (certwatcher) and serves renewals.
		m.CertDir, m.CertName, m.KeyName = o.MetricsCertDir, "tls.crt", "tls.key"
	}
	return m
}

// New builds a manager with the Registry controller registered.
func New(cfg *rest.Config, o Options) (ctrl.Manager, error) {
	scheme := NewScheme()
	certManager, err := certManagerInstalled(cfg)
	if err != nil {
		return nil, err
	}
	promOperator, err := prometheusOperatorInstalled(cfg)
	if err != nil {
		return nil, err
	}
	webhookOn := o.WebhookAddr != "" && o.WebhookAddr != "0"
	var certs *admission.Certs
	var webhookServer webhook.Server
	if webhookOn {
		if o.Namespace == "" {
			return nil, errors.New("the compliance webhook needs the operator's namespace (--namespace or env POD_NAMESPACE)")
		}
		host, port, err := splitHostPort(o.WebhookAddr)
		if err != nil {
			return nil, fmt.Errorf("--webhook-bind-address: %w", err)
		}
		names := []string{o.WebhookService + "." + o.Namespace + ".svc", o.WebhookService + "." + o.Namespace + ".svc." + o.ClusterDomain}
		if o.WebhookURL != "" {
			u, err := url.Parse(o.WebhookURL)
			if err != nil {
				return nil, fmt.Errorf("webhook URL: %w", err)
			}
			names = []string{u.Hostname()}
		}
		certs = &admission.Certs{Namespace: o.Namespace, Name: o.WebhookService + "-tls", Hosts: names,
			Log: ctrl.Log.WithName("admission-certs")}
		webhookServer = webhook.NewServer(webhook.Options{Host: host, Port: port, TLSOpts: []func(*tls.Config){func(c *tls.Config) {
			c.GetCertificate = certs.GetCertificate
			c.MinVersion = tls.VersionTLS12
			c.NextProtos = []string{"http/1.1"} // as the metrics endpoint: no HTTP/2 stream-reset exposure
		}}})
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		WebhookServer:           webhookServer,
		Scheme:                  scheme,
		Metrics:                 MetricsOptions(o),
		HealthProbeBindAddress:  o.ProbeAddr,
		LeaderElection:          o.LeaderElection,
		LeaderElectionID:        "dockyard.registry.dockyard.dev",
		LeaderElectionNamespace: o.LeaderElectionNamespace,
		Cache:                   CacheOptions(certManager, promOperator),
		PprofBindAddress:        o.PprofAddr,
	})
	if err != nil {
		return nil, fmt.Errorf("create manager: %w", err)
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return nil, fmt.Errorf("add health check: %w", err)
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return nil, fmt.Errorf("add ready check: %w", err)
	}
	if !promOperator {
		ctrl.Log.WithName("setup").Info("Prometheus Operator CRDs not found: Registries report MonitoringReady=False (PrometheusOperatorNotInstalled); restart the manager after installing them")
	}
	if !certManager {
		ctrl.Log.WithName("setup").Info("cert-manager CRDs not found: Registries with tls.issuerRef will report CertManagerNotInstalled; restart the manager after installing cert-manager")
	}
	r := &controller.RegistryReconciler{
		Image:                   o.Image,
		ClusterDomain:           o.ClusterDomain,
		CertManager:             certManager,
		PrometheusOperator:      promOperator,
		MaxConcurrentReconciles: o.MaxConcurrentReconciles,
		EventsURL:               o.EventsURL,
		ScannerAddress:          o.ScannerAddress,
	}
	if err := r.SetupWithManager(context.Background(), mgr); err != nil {
		return nil, fmt.Errorf("set up Registry controller: %w", err)
	}
	if err := (&controller.AccessReconciler{ClusterDomain: o.ClusterDomain}).SetupWithManager(mgr); err != nil {
		return nil, fmt.Errorf("set up Registry access controller: %w", err)
	}
	if err := (&controller.RetentionPolicyReconciler{Image: o.Image, ClusterDomain: o.ClusterDomain}).SetupWithManager(context.Background(), mgr); err != nil {
		return nil, fmt.Errorf("set up RetentionPolicy controller: %w", err)
	}
	if err := controller.RegisterRegistryMetrics(mgr.GetCache()); err != nil {
		return nil, fmt.Errorf("register Registry metrics: %w", err)
	}
	events := o.EventsAddr
	if events == "0" {
		events = ""
	}
	var scans *controller.ScanForwarder
	if events != "" {
		// Pushes reach the scanners through the same receiver as replication.
		scans = &controller.ScanForwarder{Client: mgr.GetClient(), Reader: mgr.GetAPIReader(), Address: o.ScannerAddress}
		if err := mgr.Add(scans); err != nil {
			return nil, fmt.Errorf("add the scan forwarder: %w", err)
		}
	}
	if err := (&controller.ReplicationReconciler{RegistryAddress: o.RegistryAddress, EventsAddr: events, Scans: scans}).SetupWithManager(context.Background(), mgr); err != nil {
		return nil, fmt.Errorf("set up ReplicationRule controller: %w", err)
	}
	if webhookOn {
		if err := setupCompliance(mgr, o, certs); err != nil {
			return nil, err
		}
	}
	return mgr, nil
}

// setupCompliance serves the compliance admission webhook on every replica and lets the
// leader keep its configuration.
func setupCompliance(mgr ctrl.Manager, o Options, certs *admission.Certs) error {
	certs.Reader, certs.Client = mgr.GetAPIReader(), mgr.GetClient()
	if err := mgr.Add(certs); err != nil {
		return fmt.Errorf("add the webhook's certificate keeper: %w", err)
	}
	targets := &admission.Targets{Client: mgr.GetClient(), Secrets: mgr.GetAPIReader(), ClusterDomain: o.ClusterDomain, Address: o.RegistryAddress}
	mgr.GetWebhookServer().Register(admission.Path, &webhook.Admission{Handler: &admission.Handler{
		Targets: targets, Namespace: o.Namespace, Log: ctrl.Log.WithName("compliance")}})
	port := int32(443)
	conf := &admission.Configurer{Client: mgr.GetClient(), Reader: mgr.GetAPIReader(), Certs: certs, URL: o.WebhookURL, Namespace: o.Namespace,
		ClusterDomain: o.ClusterDomain, Targets: targets, Log: ctrl.Log.WithName("compliance-webhook"),
		FailurePolicy: admissionregistrationv1.FailurePolicyType(o.WebhookFailurePolicy),
		Service:       &admissionregistrationv1.ServiceReference{Namespace: o.Namespace, Name: o.WebhookService, Path: ptr.To(admission.Path), Port: &port}}
	// A new CA bundle (the first, or a rotation) rewrites the configuration at once.
	bundles := make(chan event.GenericEvent, 1)
	certs.OnBundleChange = func() {
		select {
		case bundles <- event.GenericEvent{Object: &v1alpha1.Registry{ObjectMeta: metav1.ObjectMeta{Name: "ca-bundle"}}}:
		default:
		}
	}
	// Spec changes and deletions only: a status update cannot change the configuration.
	if err := ctrl.NewControllerManagedBy(mgr).Named("compliance-webhook").
		For(&v1alpha1.Registry{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		WatchesRawSource(source.Channel(bundles, &handler.EnqueueRequestForObject{})).Complete(conf); err != nil {
		return fmt.Errorf("set up the compliance webhook's configuration: %w", err)
	}
	return nil
}

// splitHostPort reads host:port (host may be empty).
func splitHostPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port <= 0 || port > 65535 {
		return "", 0, fmt.Errorf("bad port %q", p)
	}
	return host, port, nil
}

// CacheOptions restricts the informers of child kinds to objects Dockyard labelled, so the
// operator's memory does not grow with unrelated Deployments, ConfigMaps or Jobs. Secrets
// are watched as metadata only (see the controller). ServiceAccounts and Namespaces are
// cached whole: spec.pullSecrets attaches Secrets to ServiceAccounts the operator did not
// create, in namespaces it learns of from their labels.
func CacheOptions(certManager, prometheusOperator bool) cache.Options {
	managed := labels.SelectorFromSet(labels.Set{resources.LabelManagedBy: resources.ManagedBy})
	by := cache.ByObject{Label: managed}
	opts := cache.Options{DefaultTransform: SlimForCache, ByObject: map[client.Object]cache.ByObject{
		&appsv1.Deployment{}:            by,
		&appsv1.DaemonSet{}:             by,
		&corev1.Service{}:               by,
		&corev1.ConfigMap{}:             by,
		&corev1.PersistentVolumeClaim{}: by,
		&policyv1.PodDisruptionBudget{}: by,
		&networkingv1.NetworkPolicy{}:   by,
		&networkingv1.Ingress{}:         by,
		&batchv1.CronJob{}:              by,
		&batchv1.Job{}:                  by,
	}}
	if certManager {
		opts.ByObject[&cmapi.Certificate{}] = by
	}
	if prometheusOperator {
		opts.ByObject[&monitoringv1.PodMonitor{}] = by
		opts.ByObject[&monitoringv1.PrometheusRule{}] = by
	}
	return opts
}

// SlimForCache drops from every cached object what no controller reads from the cache, so
// the manager's memory grows slowly with the number of Registries (measured with `make
// bench`: at 1,000 Registries managedFields and pod templates were most of the heap):
//   - managedFields (server-side apply's bookkeeping; we apply, we never read them);
//   - the pod templates of Deployments, DaemonSets, CronJobs and Jobs (the controllers read
//     their status, generation and labels; the one reader of a CronJob's job template, the
//     retention controller starting a garbage collection, reads it from the API server);
//   - the data of the ConfigMaps the operator writes (the rendered registry config). User
//     ConfigMaps (CA bundles) are read from the API server, not the cache.
//
// Writes are server-side applies of the full desired object, so nothing stripped here is
// ever written back.
func SlimForCache(obj any) (any, error) {
	if o, ok := obj.(metav1.Object); ok {
		o.SetManagedFields(nil)
	}
	switch t := obj.(type) {
	case *appsv1.Deployment:
		t.Spec.Template = corev1.PodTemplateSpec{}
	case *appsv1.DaemonSet:
		t.Spec.Template = corev1.PodTemplateSpec{}
	case *batchv1.CronJob:
		t.Spec.JobTemplate = batchv1.JobTemplateSpec{}
	case *batchv1.Job:
		t.Spec.Template = corev1.PodTemplateSpec{}
	case *corev1.ConfigMap:
		t.Data, t.BinaryData = nil, nil
	}
	return obj, nil
}

// certManagerInstalled asks discovery whether cert-manager.io/v1 Certificates exist.
func certManagerInstalled(cfg *rest.Config) (bool, error) {
	return kindInstalled(cfg, cmapi.SchemeGroupVersion.String(), "Certificate")
}

// prometheusOperatorInstalled asks discovery whether monitoring.coreos.com/v1
// PodMonitors exist.
func prometheusOperatorInstalled(cfg *rest.Config) (bool, error) {
	return kindInstalled(cfg, monitoringv1.SchemeGroupVersion.String(), monitoringv1.PodMonitorsKind)
}

func kindInstalled(cfg *rest.Config, groupVersion, kind string) (bool, error) {
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return false, fmt.Errorf("create discovery client: %w", err)
	}
	list, err := dc.ServerResourcesForGroupVersion(groupVersion)
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("discover %s: %w", groupVersion, err)
	}
	for _, r := range list.APIResources {
		if r.Kind == kind {
			return true, nil
		}
	}
	return false, nil
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
