package admission

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/go-logr/logr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dockyard-dev/dockyard/internal/ssa"
)

// The configuration is the operator's to create; it may change and delete only its own.
// (Server-side apply of a missing object is a create.)
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=validatingwebhookconfigurations,verbs=create
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=validatingwebhookconfigurations,resourceNames=dockyard-compliance,verbs=get;patch;update;delete

// ConfigName is the ValidatingWebhookConfiguration the operator keeps.
const ConfigName = "dockyard-compliance"

// Configurer keeps the ValidatingWebhookConfiguration ConfigName: present only while some
// Registry has spec.scanning.policy, and written so the API server calls the webhook only
// for objects that name an image of one of those Registries (matchConditions on the image
// hosts) and were not created by Kubernetes' own controllers. Everything else never waits
// for the webhook, so an operator that is down can only delay people applying images of
// Registries with a policy (failurePolicy Fail: refused with the API server's message),
// never a node's pods or an unrelated rollout.
type Configurer struct {
	Client client.Client
	// Reader reads the configuration (uncached: the operator may read only its own).
	Reader client.Reader
	// Certs gives the CA bundle the API server trusts.
	Certs *Certs
	// Service is where the API server reaches the webhook; URL replaces it when set
	// (tests that serve the webhook on 127.0.0.1).
	Service *admissionregistrationv1.ServiceReference
	URL     string
	// Namespace is the operator's own, never checked.
	Namespace     string
	ClusterDomain string
	// FailurePolicy when the webhook cannot be reached (default Fail).
	FailurePolicy admissionregistrationv1.FailurePolicyType
	// Targets forgets Registries that lost their policy.
	Targets *Targets
	Log     logr.Logger

	applier *ssa.Applier
}

// Reconcile writes or deletes the configuration from the Registries' policies (whatever
// the request: there is one configuration).
func (c *Configurer) Reconcile(ctx context.Context, _ ctrl.Request) (ctrl.Result, error) {
	regs, err := withPolicy(ctx, c.Client)
	if err != nil {
		return ctrl.Result{}, err
	}
	var hosts []string
	keep := map[types.UID]bool{}
	for _, reg := range regs {
		keep[reg.UID] = true
		hosts = append(hosts, hostsOf(reg, c.ClusterDomain)...)
	}
	if c.Targets != nil {
		c.Targets.Forget(keep)
	}
	if len(hosts) == 0 {
		// Read first: a reconcile that finds nothing to change writes nothing.
		vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{}
		if err := c.Reader.Get(ctx, client.ObjectKey{Name: ConfigName}, vwc); err != nil {
			return ctrl.Result{}, client.IgnoreNotFound(err)
		}
		err := c.Client.Delete(ctx, vwc)
		if err == nil {
			c.Log.Info("No Registry has a compliance policy: removed the admission webhook's configuration", "name", ConfigName)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	bundle := c.Certs.CABundle()
	if len(bundle) == 0 {
		return ctrl.Result{RequeueAfter: 2 * time.Second}, nil // the certificate is being issued
	}
	slices.Sort(hosts)
	if c.applier == nil {
		c.applier = ssa.NewApplier(c.Client, "dockyard")
	}
	// The resourceVersion it has now lets the applier skip a write that changes nothing.
	rv := ""
	current := &admissionregistrationv1.ValidatingWebhookConfiguration{}
	switch err := c.Reader.Get(ctx, client.ObjectKey{Name: ConfigName}, current); {
	case err == nil:
		rv = current.ResourceVersion
	case !apierrors.IsNotFound(err):
		return ctrl.Result{}, err
	}
	if _, err := c.applier.Apply(ctx, c.Desired(slices.Compact(hosts), bundle), rv); err != nil {
		if apierrors.IsForbidden(err) {
			return ctrl.Result{}, fmt.Errorf("the operator may not write ValidatingWebhookConfiguration %s (see its ClusterRole): %w", ConfigName, err)
		}
		return ctrl.Result{}, err
	}
	// Re-applied hourly: a renewed CA reaches the caBundle, and a hand edit is undone.
	return ctrl.Result{RequeueAfter: time.Hour}, nil
}

// Desired is the configuration for Registries known by hosts.
func (c *Configurer) Desired(hosts []string, caBundle []byte) *admissionregistrationv1.ValidatingWebhookConfiguration {
	cc := admissionregistrationv1.WebhookClientConfig{CABundle: caBundle}
	if c.URL != "" {
		u := c.URL
		cc.URL = &u
	} else {
		svc := *c.Service
		cc.Service = &svc
	}
	fail := c.FailurePolicy
	if fail == "" {
		fail = admissionregistrationv1.Fail
	}
	none := admissionregistrationv1.SideEffectClassNone
	timeout := int32(10)
	scope := admissionregistrationv1.NamespacedScope
	ops := []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update}
	nsSel := &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
		{Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpNotIn, Values: append(slices.Clone(SystemNamespaces), c.Namespace)},
		{Key: IgnoreLabel, Operator: metav1.LabelSelectorOpNotIn, Values: []string{"ignore"}},
	}}
	users := make([]string, len(ControllerUsers))
	for i, u := range ControllerUsers {
		users[i] = "'" + u + "'"
	}
	notController := admissionregistrationv1.MatchCondition{Name: "not-created-by-a-kubernetes-controller",
		Expression: "!(request.userInfo.username in [" + strings.Join(users, ", ") + "] && has(object.metadata.ownerReferences) && " +
			"object.metadata.ownerReferences.exists(o, has(o.controller) && o.controller))"}
	webhook := func(name, spec string, rules ...admissionregistrationv1.RuleWithOperations) admissionregistrationv1.ValidatingWebhook {
		return admissionregistrationv1.ValidatingWebhook{
			Name: name, ClientConfig: cc, Rules: rules, FailurePolicy: &fail, SideEffects: &none,
			TimeoutSeconds: &timeout, AdmissionReviewVersions: []string{"v1"}, NamespaceSelector: nsSel,
			MatchConditions: []admissionregistrationv1.MatchCondition{notController,
				{Name: "creates-or-changes-images", Expression: "request.operation == 'CREATE' || " +
					imagesList("object."+spec) + " != " + imagesList("oldObject."+spec)},
				{Name: "names-an-image-of-a-registry-with-a-policy", Expression: imagesExpression("object."+spec, hosts)}},
		}
	}
	rule := func(group string, resources ...string) admissionregistrationv1.RuleWithOperations {
		return admissionregistrationv1.RuleWithOperations{Operations: ops, Rule: admissionregistrationv1.Rule{
			APIGroups: []string{group}, APIVersions: []string{"v1"}, Resources: resources, Scope: &scope}}
	}
	return &admissionregistrationv1.ValidatingWebhookConfiguration{
		TypeMeta: metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "ValidatingWebhookConfiguration"},
		ObjectMeta: metav1.ObjectMeta{Name: ConfigName, Labels: map[string]string{
			"app.kubernetes.io/name": "dockyard", "app.kubernetes.io/component": "admission-webhook", "app.kubernetes.io/managed-by": "dockyard"}},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{
			webhook("pods.compliance.dockyard.dev", "spec", rule("", "pods", "pods/ephemeralcontainers")),
			webhook("workloads.compliance.dockyard.dev", "spec.template.spec",
				rule("apps", "deployments", "statefulsets", "daemonsets", "replicasets"), rule("batch", "jobs"),
				rule("", "replicationcontrollers")),
			webhook("cronjobs.compliance.dockyard.dev", "spec.jobTemplate.spec.template.spec", rule("batch", "cronjobs")),
		},
	}
}

// guarded is a CEL condition that every field on the path to spec (object.a.b…) is set.
func guarded(spec string) string {
	parts := strings.Split(spec, ".")
	var guard []string
	for i := 2; i <= len(parts); i++ {
		guard = append(guard, "has("+strings.Join(parts[:i], ".")+")")
	}
	return strings.Join(guard, " && ")
}

// imageLists are where a pod spec names images: x.image in the container lists, and
// x.image.reference in image volumes.
var imageLists = []struct{ list, field string }{
	{"containers", "image"}, {"initContainers", "image"}, {"ephemeralContainers", "image"}, {"volumes", "image.reference"},
}

// imagesList is a CEL list of every image the pod spec at spec names (empty when it is
// absent), to compare an update's images with the old object's.
func imagesList(spec string) string {
	var parts []string
	for _, l := range imageLists {
		f := "x." + l.field
		parts = append(parts, fmt.Sprintf("(has(%s.%s) ? %s.%s.map(x, %s ? %s : '') : [])", spec, l.list, spec, l.list, guarded(f), f))
	}
	return "(" + guarded(spec) + " ? " + strings.Join(parts, " + ") + " : [])"
}

// imagesExpression is a CEL expression true when the pod spec at spec names an image on
// one of hosts (host names: any port; *.wildcards), every field guarded with has() (an
// evaluation error would count as a failure of the webhook).
func imagesExpression(spec string, hosts []string) string {
	var lists []string
	for _, l := range imageLists {
		f := "x." + l.field
		var m []string
		for _, h := range hosts {
			if suffix, ok := strings.CutPrefix(h, "*."); ok {
				m = append(m, fmt.Sprintf("%s.lowerAscii().matches(r'^[a-z0-9-]+\\.%s[:/]')", f, strings.ReplaceAll(suffix, ".", "\\.")))
			} else {
				m = append(m, fmt.Sprintf("%s.lowerAscii().startsWith('%s/') || %s.lowerAscii().startsWith('%s:')", f, h, f, h))
			}
		}
		lists = append(lists, fmt.Sprintf("(has(%s.%s) && %s.%s.exists(x, %s && (%s)))", spec, l.list, spec, l.list, guarded(f), strings.Join(m, " || ")))
	}
	return guarded(spec) + " && (" + strings.Join(lists, " || ") + ")"
}
