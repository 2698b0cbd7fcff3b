package controller

import (
	"bytes"
	"cmp"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dockyard-dev/dockyard/api/v1alpha1"
	"github.com/dockyard-dev/dockyard/internal/registryconfig"
	resources "github.com/dockyard-dev/dockyard/internal/resources/registry"
	"github.com/dockyard-dev/dockyard/internal/scan"
)

// scannerStatusInterval is how often the status of a Registry with a scanner is refreshed
// from the scanner (its counts and database age change without any object changing).
const scannerStatusInterval = time.Minute

// scannerTimeout bounds one call to a scanner.
const scannerTimeout = 5 * time.Second

// scannerSecret is what ensureScannerSecret found or created, read once per reconcile
// (the registry's compliance policy and the scanner's children both need its key).
type scannerSecret struct {
	uid string
	pub []byte
	err error
}

// readScannerSecret ensures the scanner Secret of a Registry with spec.scanning (the zero
// value without it).
func (r *RegistryReconciler) readScannerSecret(ctx context.Context, reg *v1alpha1.Registry) scannerSecret {
	if reg.Spec.Scanning == nil {
		return scannerSecret{}
	}
	var ss scannerSecret
	ss.uid, ss.pub, ss.err = r.ensureScannerSecret(ctx, reg, true)
	return ss
}

// reconcileScanner applies the scanner's children (spec.scanning) or deletes them, and
// returns when to look again (the credential's renewal). keys are the Registry's token
// keys as ensureTokenKeys left them; secret is readScannerSecret's answer.
func (r *RegistryReconciler) reconcileScanner(ctx context.Context, reg *v1alpha1.Registry, in resources.Inputs, keys registryconfig.TokenKeys, secret scannerSecret) (time.Duration, error) {
	if reg.Spec.Scanning == nil {
		for _, del := range []struct {
			obj  client.Object
			name string
		}{{&appsv1.Deployment{}, reg.ScannerName()}, {&corev1.Service{}, reg.ScannerName()}, {&corev1.ConfigMap{}, reg.ScannerName()},
			{&corev1.ServiceAccount{}, reg.ScannerName()}} {
			if err := r.applyOrDelete(ctx, reg, nil, del.obj, del.name); err != nil {
				return 0, err
			}
		}
		// The signing key stays (until the Registry goes): reports it signed stay trusted
		// if scanning is switched on again.
		return 0, r.deleteSecret(ctx, reg, reg.ScannerCredentialsSecretName())
	}
	if secret.err != nil {
		return 0, secret.err
	}
	uid, pub := secret.uid, secret.pub
	renewIn, err := r.renewScannerCredential(ctx, reg, keys)
	if err != nil {
		return 0, err
	}
	cm, err := resources.ScannerConfigMap(reg, pub)
	if err != nil {
		return 0, fmt.Errorf("render the scanner config of Registry %s/%s: %w", reg.Namespace, reg.Name, err)
	}
	if err := r.apply(ctx, cm, &corev1.ConfigMap{}); err != nil {
		return 0, err
	}
	if err := r.apply(ctx, resources.ScannerServiceAccount(reg), &corev1.ServiceAccount{}); err != nil {
		return 0, err
	}
	if err := r.apply(ctx, resources.ScannerService(reg), &corev1.Service{}); err != nil {
		return 0, err
	}
	hash := shortHash(cm.Data[resources.ScannerConfigKey], uid)
	if err := r.apply(ctx, resources.ScannerDeployment(reg, in, hash), &appsv1.Deployment{}); err != nil {
		return 0, err
	}
	return renewIn, nil
}

// ensureScannerSecret creates the scanner Secret once (its signing key must outlive pods:
// reports it signed stay trusted) and returns its UID and public key.
func (r *RegistryReconciler) ensureScannerSecret(ctx context.Context, reg *v1alpha1.Registry, create bool) (string, []byte, error) {
	key := client.ObjectKey{Namespace: reg.Namespace, Name: reg.ScannerSecretName()}
	sec := &corev1.Secret{}
	err := r.APIReader.Get(ctx, key, sec)
	if err == nil {
		if len(sec.Data[resources.ScannerSigningKeyKey]) == 0 || len(sec.Data[resources.ScannerPublicKeyKey]) == 0 {
			return "", nil, fmt.Errorf("the scanner Secret %s lacks its keys (edited by hand?): delete it and the operator generates new ones "+
				"(reports signed so far stop being trusted, and images are scanned again)", key)
		}
		return string(sec.UID), sec.Data[resources.ScannerPublicKeyKey], nil
	}
	if !apierrors.IsNotFound(err) || !create {
		return "", nil, fmt.Errorf("get Secret %s: %w", key, err)
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", nil, fmt.Errorf("generate the scanner's signing key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return "", nil, err
	}
	pubDER, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", nil, err
	}
	token := make([]byte, 32)
	if _, err := rand.Read(token); err != nil {
		return "", nil, fmt.Errorf("generate the scanner's job token: %w", err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	sec = resources.ScannerSecret(reg, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), pubPEM, hex.EncodeToString(token))
	ctrl.LoggerFrom(ctx).Info("Creating the scanner's signing key and job token", "secret", key)
	if err := r.Client.Create(ctx, sec, client.FieldOwner(FieldOwner)); err != nil {
		if apierrors.IsAlreadyExists(err) {
			// Created meanwhile: use that one.
			return r.ensureScannerSecret(ctx, reg, false)
		}
		return "", nil, fmt.Errorf("create Secret %s: %w", key, err)
	}
	return string(sec.UID), pubPEM, nil
}

// renewScannerCredential keeps the scanner's registry credential valid (with spec.auth):
// a new one at half its lifetime, and at once when the token keys sign with a new key.
// It returns when to look again.
func (r *RegistryReconciler) renewScannerCredential(ctx context.Context, reg *v1alpha1.Registry, keys registryconfig.TokenKeys) (time.Duration, error) {
	if reg.Spec.Auth == nil {
		return 0, r.deleteSecret(ctx, reg, reg.ScannerCredentialsSecretName())
	}
	now := r.now()
	signing, err := registryconfig.SigningKey(keys, now)
	if err != nil {
		return 0, err
	}
	pm := &metav1.PartialObjectMetadata{}
	pm.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
	renewAt := now
	switch err := r.Client.Get(ctx, client.ObjectKey{Namespace: reg.Namespace, Name: reg.ScannerCredentialsSecretName()}, pm); {
	case err == nil:
		renewAt = resources.PullSecretRenewAt(pm.Annotations, signing.ID, "", now)
	case !apierrors.IsNotFound(err):
		return 0, fmt.Errorf("get the scanner's credentials Secret: %w", err)
	}
	if !renewAt.After(now) {
		cred, kid, err := registryconfig.SignScannerCredential(keys, reg.TokenIssuer(), reg.TokenService(),
			reg.Namespace+"/"+reg.Name, now, resources.ScannerCredentialLifetime)
		if err != nil {
			return 0, fmt.Errorf("sign the scanner's credential: %w", err)
		}
		desired := resources.ScannerCredentialsSecret(reg, cred, kid, now, now.Add(resources.ScannerCredentialLifetime))
		// Applied without the cache's view: its data changes with every renewal.
		if _, err := r.applier.Apply(ctx, desired, ""); err != nil {
			return 0, fmt.Errorf("write the scanner's credentials Secret: %w", err)
		}
		renewAt = now.Add(resources.ScannerCredentialLifetime / 2)
	}
	next := renewAt.Sub(now)
	// A key that starts signing later makes the credential stale then.
	for _, k := range keys.Keys {
		if k.SignFrom.After(now) && k.SignFrom.Sub(now) < next {
			next = k.SignFrom.Sub(now) + time.Second
		}
	}
	return max(next, time.Second), nil
}

// observeScanner reads the scanner Deployment and asks the scanner how it is doing.
func (r *RegistryReconciler) observeScanner(ctx context.Context, s *scope) (ctrl.Result, error) {
	reg := s.reg
	if reg.Spec.Scanning == nil {
		return ctrl.Result{}, nil
	}
	dep := &appsv1.Deployment{}
	switch err := r.Client.Get(ctx, client.ObjectKey{Namespace: reg.Namespace, Name: reg.ScannerName()}, dep); {
	case err == nil:
		s.scanner = dep
	case !apierrors.IsNotFound(err):
		return ctrl.Result{}, fmt.Errorf("get Deployment %s/%s: %w", reg.Namespace, reg.ScannerName(), err)
	}
	s.scanStatus, s.scanErr = nil, nil
	// Only when a pod runs: not-ready pods answer too (the Service publishes them).
	if s.scanner != nil && s.scanner.Status.Replicas > 0 {
		var st scan.Status
		if err := r.scannerClient().call(ctx, reg, http.MethodGet, scan.StatusPath, nil, &st); err != nil {
			s.scanErr = err
		} else {
			s.scanStatus = &st
		}
	}
	if s.scanStatus != nil && !r.requestScans(ctx, s) {
		return ctrl.Result{RequeueAfter: scanForwardRetry}, nil
	}
	return ctrl.Result{RequeueAfter: scannerStatusInterval}, nil
}

// scanRequestTimeout bounds the scanner's resolution of a scan request.
const scanRequestTimeout = 30 * time.Second

// requestKey is what status.scanning.lastHandledScanRequest records for an annotation
// value: the value itself, or its digest when it is too long for the status.
func requestKey(value string) string {
	if len(value) <= 4096 {
		return value
	}
	return fmt.Sprintf("sha256:%x", sha256.Sum256([]byte(value)))
}

// parseScanRequest splits a ScanRequestAnnotation value into its references (spaces or
// commas between them, anything after "#" ignored).
func parseScanRequest(value string) []string {
	value, _, _ = strings.Cut(value, "#")
	return strings.FieldsFunc(value, func(r rune) bool { return r == ',' || unicode.IsSpace(r) })
}

// requestScans hands a new ScanRequestAnnotation value to the scanner, once; false when
// the scanner could not take it now (it is tried again soon).
func (r *RegistryReconciler) requestScans(ctx context.Context, s *scope) bool {
	reg := s.reg
	value := reg.Annotations[v1alpha1.ScanRequestAnnotation]
	key := requestKey(value)
	if value == "" || (reg.Status.Scanning != nil && reg.Status.Scanning.LastHandledScanRequest == key) {
		return true
	}
	refs := parseScanRequest(value)
	var bad []string
	for _, ref := range refs {
		if _, _, _, ok := scan.ParseRequestReference(ref); !ok {
			bad = append(bad, ref)
		}
	}
	if len(refs) == 0 || len(refs) > scan.MaxRequestReferences || len(bad) > 0 {
		// Nothing the scanner would take: say why, and do not try again until it changes.
		msg := fmt.Sprintf("%s names %d references; it takes 1 to %d", v1alpha1.ScanRequestAnnotation, len(refs), scan.MaxRequestReferences)
		if len(bad) > 0 {
			msg = fmt.Sprintf("%s: %s is not a repository, repository:tag or repository@sha256:digest; nothing was queued",
				v1alpha1.ScanRequestAnnotation, truncate(strings.Join(bad, ", "), 512))
		}
		r.Recorder.Eventf(reg, nil, corev1.EventTypeWarning, "ScanRequestInvalid", "RequestScan", "%s", eventNote(msg))
		s.scanRequestHandled = key
		return true
	}
	sc := r.scannerClient()
	sc.Timeout = scanRequestTimeout
	var resp scan.ScanRequestResponse
	if err := sc.call(ctx, reg, http.MethodPost, scan.RequestPath, scan.ScanRequest{References: refs}, &resp); err != nil {
		var refused *scannerRefused
		// Only a request the scanner judged bad is final: a scanner that does not know the
		// path yet (an upgrade in progress) or is unwell is asked again.
		if errors.As(err, &refused) && (refused.code == http.StatusBadRequest || refused.code == http.StatusRequestEntityTooLarge) {
			r.Recorder.Eventf(reg, nil, corev1.EventTypeWarning, "ScanRequestRefused", "RequestScan", "%s", eventNote(fmt.Sprintf(
				"the scanner refused the scans asked for with %s: %s", v1alpha1.ScanRequestAnnotation, err.Error())))
			s.scanRequestHandled = key
			return true
		}
		ctrl.LoggerFrom(ctx).Info("Scanner could not take the scan request now; trying again", "err", err.Error())
		return false
	}
	s.scanRequestHandled = key
	msg := fmt.Sprintf("%d images queued for scanning", resp.Queued)
	if resp.Refused > 0 {
		msg += fmt.Sprintf("; %d refused: the scanner's queue is half full (the rest is kept for pushes), ask again later", resp.Refused)
	}
	r.Recorder.Eventf(reg, nil, corev1.EventTypeNormal, "ScanRequested", "RequestScan", "%s", eventNote(msg))
	if len(resp.Errors) > 0 {
		r.Recorder.Eventf(reg, nil, corev1.EventTypeWarning, "ScanRequestIncomplete", "RequestScan", "%s",
			eventNote("not queued: "+strings.Join(resp.Errors, "; ")))
	}
	return true
}

// maxEventNote is the longest note the Events API accepts.
const maxEventNote = 1024

// eventNote fits msg in an event's note: cut on a character boundary, with "…" (3 bytes)
// when cut.
func eventNote(msg string) string {
	if len(msg) <= maxEventNote {
		return msg
	}
	cut := maxEventNote - len("…")
	for cut > 0 && !utf8.RuneStart(msg[cut]) {
		cut--
	}
	return msg[:cut] + "…"
}

func (r *RegistryReconciler) scannerClient() *scannerClient {
	return &scannerClient{Reader: r.APIReader, Address: r.ScannerAddress, HTTP: r.ScannerHTTP}
}

// scannerClient calls a Registry's scanner with the job token from the scanner Secret.
type scannerClient struct {
	Reader client.Reader
	// Address is where the scanner of reg listens (tests); its Service when nil.
	Address func(*v1alpha1.Registry) string
	// HTTP is the client (default: a plain one with scannerTimeout).
	HTTP *http.Client
	// Timeout bounds one call (default scannerTimeout).
	Timeout time.Duration
}

// call sends body (JSON, when not nil) with method to path and decodes the answer into out.
func (c *scannerClient) call(ctx context.Context, reg *v1alpha1.Registry, method, path string, body, out any) error {
	sec := &corev1.Secret{}
	if err := c.Reader.Get(ctx, client.ObjectKey{Namespace: reg.Namespace, Name: reg.ScannerSecretName()}, sec); err != nil {
		return fmt.Errorf("read the scanner's job token: %w", err)
	}
	token := strings.TrimSpace(string(sec.Data[resources.ScannerTokenKey]))
	if token == "" {
		return errors.New("the scanner Secret has no job token")
	}
	addr := resources.ScannerAddress(reg)
	if c.Address != nil {
		addr = c.Address(reg)
	}
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(data)
	}
	timeout := cmp.Or(c.Timeout, scannerTimeout)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, "http://"+addr+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: timeout}
	}
	resp, err := hc.Do(req)
	if err != nil {
		// The URL holds no secret; the error names the address, which helps.
		return fmt.Errorf("reach the scanner: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("read the scanner's answer: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		return &scannerRefused{code: resp.StatusCode, msg: fmt.Sprintf("the scanner answered %s: %s", resp.Status, truncate(strings.TrimSpace(string(data)), 256))}
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("decode the scanner's answer: %w", err)
		}
	}
	return nil
}

// scannerRefused is an answer of the scanner other than 2xx.
type scannerRefused struct {
	code int
	msg  string
}

func (e *scannerRefused) Error() string { return e.msg }

// permanent is true for a request the scanner will never take (4xx but 429), as opposed to
// one it could not take now.
func (e *scannerRefused) permanent() bool {
	return e.code/100 == 4 && e.code != http.StatusTooManyRequests && e.code != http.StatusUnauthorized
}

// scanningStatus is status.scanning from what the scanner said (the previous one when it
// could not be asked).
func scanningStatus(reg *v1alpha1.Registry, s *scope) *v1alpha1.ScanningStatus {
	if reg.Spec.Scanning == nil {
		return nil
	}
	if s.scanStatus == nil {
		// scanRequestHandled is only set after the scanner answered: nothing to add.
		return reg.Status.Scanning.DeepCopy()
	}
	st := s.scanStatus
	out := &v1alpha1.ScanningStatus{Scanned: st.Scanned, Failed: st.Failed, Queue: int32(min(st.Queue, 1<<30)),
		LastError: truncate(st.LastError, 512), Scanner: truncate(st.Scanner, 64)}
	for k, v := range st.Vulnerable {
		if out.Vulnerable == nil {
			out.Vulnerable = map[string]int64{}
		}
		if len(out.Vulnerable) < 8 {
			out.Vulnerable[truncate(string(k), 16)] = v
		}
	}
	if st.LastScanTime != nil {
		out.LastScanTime = &metav1.Time{Time: st.LastScanTime.UTC().Truncate(time.Second)}
	}
	if st.DBUpdatedAt != nil {
		out.DatabaseUpdatedAt = &metav1.Time{Time: st.DBUpdatedAt.UTC().Truncate(time.Second)}
	}
	if reg.Status.Scanning != nil {
		out.LastHandledScanRequest = reg.Status.Scanning.LastHandledScanRequest
	}
	if s.scanRequestHandled != "" {
		out.LastHandledScanRequest = s.scanRequestHandled
	}
	return out
}

// scannerCondition is ScannerReady (nil without spec.scanning).
func scannerCondition(reg *v1alpha1.Registry, s *scope, now time.Time) *metav1.Condition {
	if reg.Spec.Scanning == nil {
		return nil
	}
	c := &metav1.Condition{Type: v1alpha1.ConditionScannerReady}
	if !s.saw(stepScanner) {
		return ptrTo(notObserved(s, v1alpha1.ConditionScannerReady, stepScanner))
	}
	st := s.scanStatus
	switch {
	case st != nil && st.DBUpdatedAt == nil:
		c.Status, c.Reason = metav1.ConditionFalse, v1alpha1.ReasonDatabaseMissing
		c.Message = fmt.Sprintf("the scanner has no vulnerability database yet (from %s); nothing is scanned until it has one",
			resources.ScanDatabaseRef(reg, reg.Spec.Scanning.GetDatabase().GetRepository()))
		if st.LastError != "" {
			c.Message += ": " + truncate(st.LastError, 512)
		}
	case st == nil && (s.scanner == nil || s.scanner.Status.AvailableReplicas < 1):
		c.Status, c.Reason = metav1.ConditionFalse, v1alpha1.ReasonScannerUnavailable
		c.Message = fmt.Sprintf("the scanner pod is not available (kubectl describe pod -l %s=%s,%s=%s says why)",
			resources.LabelInstance, reg.Name, resources.LabelComponent, resources.ComponentScanner)
	case st == nil:
		c.Status, c.Reason = metav1.ConditionFalse, v1alpha1.ReasonScannerUnreachable
		c.Message = "the operator cannot read the scanner's status"
		if s.scanErr != nil {
			c.Message += ": " + truncate(s.scanErr.Error(), 512)
		}
	case now.Sub(*st.DBUpdatedAt) > reg.Spec.Scanning.GetDatabase().GetMaxAge():
		c.Status, c.Reason = metav1.ConditionFalse, v1alpha1.ReasonDatabaseStale
		c.Message = fmt.Sprintf("the vulnerability database was built %s, more than %s ago; scans go on but miss what was published since: "+
			"mirror a newer one into %s", st.DBUpdatedAt.UTC().Format(time.RFC3339), reg.Spec.Scanning.GetDatabase().GetMaxAge(),
			resources.ScanDatabaseRef(reg, reg.Spec.Scanning.GetDatabase().GetRepository()))
	default:
		c.Status, c.Reason = metav1.ConditionTrue, v1alpha1.ReasonScannerAvailable
		c.Message = fmt.Sprintf("%s scans pushed images with a database built %s", st.Scanner, st.DBUpdatedAt.UTC().Format(time.RFC3339))
	}
	return c
}
