// Package admission is the operator's compliance gate: a validating admission webhook
// that refuses Pods and workload templates whose image from a Dockyard Registry breaks
// that Registry's spec.scanning.policy, with a message that names the image, what is
// wrong and how to get past it. It also keeps the webhook's configuration (only present
// while some Registry has a policy, and only called for images of those Registries) and
// its serving certificate.
package admission

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/distribution/reference"
	"github.com/go-logr/logr"
	"github.com/google/go-containerregistry/pkg/name"
	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/dockyard-dev/dockyard/api/v1alpha1"
)

// Path is where the webhook is served.
const Path = "/validate-compliance"

// IgnoreLabel on a namespace turns the gate off there (value "ignore").
const IgnoreLabel = "dockyard.dev/compliance"

// AuditExempted is the audit annotation listing the exemptions an admitted object needed.
const AuditExempted = "exempted"

// AuditRefused is the audit annotation of a refusal (or, with action Warn, of an
// admission that Deny would have refused).
const AuditRefused = "refused"

// SystemNamespaces are never checked (with the operator's own).
var SystemNamespaces = []string{"kube-system", "kube-public", "kube-node-lease"}

// maxImages bounds the images of one object that are checked.
const maxImages = 64

// Handler decides admission requests.
type Handler struct {
	// Targets finds the Registry (with a policy) an image host belongs to.
	Targets *Targets
	// Namespace is the operator's own namespace, never checked.
	Namespace string
	// Timeout bounds one decision (all its images); 8 s when zero, inside the
	// webhook's 10 s.
	Timeout time.Duration
	Log     logr.Logger
}

var _ admission.Handler = &Handler{}

// Handle implements admission.Handler.
func (h *Handler) Handle(ctx context.Context, req admission.Request) admission.Response {
	if req.Operation != admissionv1.Create && req.Operation != admissionv1.Update {
		return admission.Allowed("")
	}
	if req.Namespace == h.Namespace || slices.Contains(SystemNamespaces, req.Namespace) {
		return admission.Allowed("")
	}
	if IsControllerUser(req.UserInfo.Username) && hasControllerOwner(req.Object.Raw) {
		// Created from a template that was checked when it was applied: an image found
		// non-compliant later must never stop a running workload from scaling or healing.
		return admission.Allowed("")
	}
	images, err := podImages(req.Kind.Kind, req.Object.Raw)
	if err != nil {
		return admission.Errored(http.StatusBadRequest, err)
	}
	if req.Operation == admissionv1.Update && len(req.OldObject.Raw) > 0 {
		// Only what the update brings in: an unchanged image was checked when it came.
		old, err := podImages(req.Kind.Kind, req.OldObject.Raw)
		if err == nil {
			images = slices.DeleteFunc(images, func(i string) bool { return slices.Contains(old, i) })
		}
	}
	if len(images) == 0 {
		return admission.Allowed("")
	}
	timeout := h.Timeout
	if timeout <= 0 {
		timeout = 8 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	regs, err := h.Targets.Registries(ctx)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, err)
	}
	var denials, warnings, exempted, refused []string
	what := fmt.Sprintf("%s %s/%s", req.Kind.Kind, req.Namespace, objectName(req))
	for i, img := range images {
		if i == maxImages {
			denials = append(denials, fmt.Sprintf("more than %d images: the rest were not checked", maxImages))
			break
		}
		ref, host, ok := parseImage(img)
		if host == "" {
			continue // no reference at all; the API server and the kubelet say what is wrong
		}
		targets, err := h.Targets.ForHost(ctx, regs, host)
		if err != nil {
			denials = append(denials, fmt.Sprintf("image %s could not be checked: %v", img, err))
			continue
		}
		// Every Registry known by this host decides (two claiming one name: the stricter wins).
		for _, t := range targets {
			if t.Namespace == req.Namespace && img == t.ScannerImage {
				continue // the Registry's own scanner
			}
			var msg string
			var warns, ex []string
			if !ok {
				msg = fmt.Sprintf("image %s names Registry %s/%s but is not a reference the compliance check can read", img, t.Namespace, t.Name)
			} else {
				msg, warns, ex = h.check(ctx, t, img, ref)
			}
			warnings = append(warnings, warns...)
			exempted = append(exempted, ex...)
			if msg == "" {
				continue
			}
			refused = append(refused, img)
			if t.Action == v1alpha1.ComplianceWarn {
				warnings = append(warnings, msg+" (the policy's action is Warn: admitted)")
			} else {
				denials = append(denials, msg)
			}
		}
	}
	resp := admission.Allowed("")
	if len(denials) > 0 {
		resp = admission.Denied(strings.Join(denials, "; "))
		h.Log.Info("Refused by the compliance policy", "object", what, "user", req.UserInfo.Username, "images", refused)
	} else if len(refused) > 0 {
		h.Log.Info("Admitted with action Warn although non-compliant", "object", what, "user", req.UserInfo.Username, "images", refused)
	}
	resp.Warnings = warnings
	if len(exempted) > 0 || len(refused) > 0 {
		resp.AuditAnnotations = map[string]string{}
	}
	if len(exempted) > 0 {
		resp.AuditAnnotations[AuditExempted] = strings.Join(exempted, "; ")
		h.Log.Info("Admitted with exemptions", "object", what, "user", req.UserInfo.Username, "exemptions", exempted)
	}
	if len(refused) > 0 {
		resp.AuditAnnotations[AuditRefused] = strings.Join(refused, " ")
	}
	return resp
}

// check decides one image of target t; msg is empty when it may run.
func (h *Handler) check(ctx context.Context, t *Target, img string, ref name.Reference) (msg string, warnings, exempted []string) {
	where := fmt.Sprintf("Registry %s/%s", t.Namespace, t.Name)
	if t.PolicyErr != nil {
		return fmt.Sprintf("image %s: the compliance policy of %s cannot be applied (%v); fix spec.scanning.policy", img, where, t.PolicyErr), nil, nil
	}
	d, err := t.Checker.Check(ctx, t.Rewrite(ref), t.Policy)
	if err != nil {
		return fmt.Sprintf("image %s could not be checked against the compliance policy of %s: %v", img, where, err), nil, nil
	}
	for _, e := range d.Exempted {
		exempted = append(exempted, fmt.Sprintf("%s %s until %s", img, e.Vulnerability.ID, e.Exemption.Expires.UTC().Format(time.RFC3339)))
		warnings = append(warnings, fmt.Sprintf("image %s: %s is accepted by an exemption of %s until %s: %s",
			img, e.Vulnerability, where, e.Exemption.Expires.UTC().Format(time.DateOnly), e.Exemption.Reason))
	}
	if d.Allowed {
		return "", warnings, exempted
	}
	return d.Verdict.Message(img+" ("+d.Digest+")", t.Policy), warnings, exempted
}

// ControllerUsers are the identities Kubernetes' controllers create Pods, ReplicaSets and
// Jobs as (kube-controller-manager with and without --use-service-account-credentials).
var ControllerUsers = []string{
	"system:kube-controller-manager",
	"system:serviceaccount:kube-system:replicaset-controller",
	"system:serviceaccount:kube-system:deployment-controller",
	"system:serviceaccount:kube-system:statefulset-controller",
	"system:serviceaccount:kube-system:daemon-set-controller",
	"system:serviceaccount:kube-system:job-controller",
	"system:serviceaccount:kube-system:cronjob-controller",
	"system:serviceaccount:kube-system:replication-controller",
}

// IsControllerUser is true for the identities Kubernetes' controllers create objects as.
func IsControllerUser(user string) bool { return slices.Contains(ControllerUsers, user) }

// hasControllerOwner reports whether the object names a controlling owner (what a
// controller creates from a template always does).
func hasControllerOwner(raw []byte) bool {
	var m struct {
		Metadata struct {
			OwnerReferences []struct {
				Controller *bool `json:"controller"`
			} `json:"ownerReferences"`
		} `json:"metadata"`
	}
	if json.Unmarshal(raw, &m) != nil {
		return false
	}
	for _, o := range m.Metadata.OwnerReferences {
		if o.Controller != nil && *o.Controller {
			return true
		}
	}
	return false
}

// parseImage reads an image reference as the kubelet does (docker.io by default) and
// returns it for go-containerregistry, with its host (lower case, without the port).
// ok is false when go-containerregistry cannot read a reference that has a host.
func parseImage(img string) (ref name.Reference, host string, ok bool) {
	named, err := reference.ParseNormalizedNamed(img)
	if err != nil {
		return nil, "", false
	}
	host = hostname(reference.Domain(named))
	s := reference.TagNameOnly(named).String()
	if c, ok := named.(reference.Canonical); ok {
		s = named.Name() + "@" + c.Digest().String() // by digest, whatever tag it also names
	}
	ref, err = name.ParseReference(s, name.StrictValidation)
	if err != nil {
		return nil, host, false
	}
	return ref, host, true
}

// hostname is host without its port, in lower case.
func hostname(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	return strings.ToLower(strings.Trim(host, "[]"))
}

// podImages lists the images of the pod spec in an object of kind (Pod or a workload
// with a pod template), without repeats.
func podImages(kind string, raw []byte) ([]string, error) {
	var spec *corev1.PodSpec
	switch kind {
	case "Pod":
		var o corev1.Pod
		if err := json.Unmarshal(raw, &o); err != nil {
			return nil, err
		}
		spec = &o.Spec
	case "Deployment":
		var o appsv1.Deployment
		if err := json.Unmarshal(raw, &o); err != nil {
			return nil, err
		}
		spec = &o.Spec.Template.Spec
	case "StatefulSet":
		var o appsv1.StatefulSet
		if err := json.Unmarshal(raw, &o); err != nil {
			return nil, err
		}
		spec = &o.Spec.Template.Spec
	case "DaemonSet":
		var o appsv1.DaemonSet
		if err := json.Unmarshal(raw, &o); err != nil {
			return nil, err
		}
		spec = &o.Spec.Template.Spec
	case "ReplicaSet":
		var o appsv1.ReplicaSet
		if err := json.Unmarshal(raw, &o); err != nil {
			return nil, err
		}
		spec = &o.Spec.Template.Spec
	case "ReplicationController":
		var o corev1.ReplicationController
		if err := json.Unmarshal(raw, &o); err != nil {
			return nil, err
		}
		if o.Spec.Template == nil {
			return nil, nil
		}
		spec = &o.Spec.Template.Spec
	case "Job":
		var o batchv1.Job
		if err := json.Unmarshal(raw, &o); err != nil {
			return nil, err
		}
		spec = &o.Spec.Template.Spec
	case "CronJob":
		var o batchv1.CronJob
		if err := json.Unmarshal(raw, &o); err != nil {
			return nil, err
		}
		spec = &o.Spec.JobTemplate.Spec.Template.Spec
	default:
		return nil, fmt.Errorf("kind %s is not checked by the compliance webhook", kind)
	}
	var out []string
	add := func(img string) {
		if img != "" && !slices.Contains(out, img) {
			out = append(out, img)
		}
	}
	for _, c := range spec.InitContainers {
		add(c.Image)
	}
	for _, c := range spec.Containers {
		add(c.Image)
	}
	for _, c := range spec.EphemeralContainers {
		add(c.Image)
	}
	for _, v := range spec.Volumes {
		if v.Image != nil {
			add(v.Image.Reference)
		}
	}
	return out, nil
}

func objectName(req admission.Request) string {
	if req.Name != "" {
		return req.Name
	}
	var m struct {
		Metadata struct {
			GenerateName string `json:"generateName"`
		} `json:"metadata"`
	}
	_ = json.Unmarshal(req.Object.Raw, &m)
	return m.Metadata.GenerateName + "…"
}
