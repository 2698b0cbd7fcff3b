package v1alpha1

import "strings"

// Replication run results and triggers, as status.lastRun reports them.
const (
	ReplicationSucceeded       = "Succeeded"
	ReplicationPartiallyFailed = "PartiallyFailed"
	ReplicationFailed          = "Failed"

	ReplicationTriggerSpec     = "Spec"
	ReplicationTriggerSchedule = "Schedule"
	ReplicationTriggerRequest  = "Request"
	ReplicationTriggerRetry    = "Retry"
	ReplicationTriggerPush     = "Push"
	ReplicationTriggerStartup  = "Startup"
)

// DefaultOnPushSchedule is the backstop schedule of onPush rules without one.
const DefaultOnPushSchedule = "*/15 * * * *"

// EffectiveSchedule is spec.schedule with its onPush default.
func (r *ReplicationRule) EffectiveSchedule() string {
	if r.Spec.Schedule == "" && r.Spec.OnPush {
		return DefaultOnPushSchedule
	}
	return r.Spec.Schedule
}

// IncludeReferrers is spec.filters.includeReferrers with its default (true).
func (r *ReplicationRule) IncludeReferrers() bool {
	return r.Spec.Filters.IncludeReferrers == nil || *r.Spec.Filters.IncludeReferrers
}

// RemoteHost is spec.remote.url without its scheme and trailing '/'.
func (r *ReplicationRule) RemoteHost() string {
	u := strings.TrimPrefix(strings.TrimPrefix(r.Spec.Remote.URL, "https://"), "http://")
	return strings.TrimSuffix(u, "/")
}

// RemotePlainHTTP reports an http:// remote.
func (r *ReplicationRule) RemotePlainHTTP() bool {
	return strings.HasPrefix(r.Spec.Remote.URL, "http://")
}

// DestinationRepository maps a source repository to its destination name ("" when
// stripSegments leaves nothing).
func (r *ReplicationRule) DestinationRepository(source string) string {
	d := r.Spec.Destination
	if d == nil {
		return source
	}
	segs := strings.Split(source, "/")
	if int(d.StripSegments) >= len(segs) {
		return ""
	}
	rest := strings.Join(segs[d.StripSegments:], "/")
	if d.Prefix == "" {
		return rest
	}
	return d.Prefix + "/" + rest
}

// ReferencedSecrets are the Secrets the rule reads (credentials, CA bundle).
func (r *ReplicationRule) ReferencedSecrets() []string {
	var out []string
	if ref := r.Spec.Remote.CredentialsSecretRef; ref != nil {
		out = append(out, ref.Name)
	}
	if ca := r.Spec.Remote.CABundle; ca != nil && ca.SecretKeyRef != nil {
		out = append(out, ca.SecretKeyRef.Name)
	}
	return out
}
