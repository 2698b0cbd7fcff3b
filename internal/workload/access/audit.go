package access

import (
	"errors"
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
)

// audit logs and counts every failed authentication and every denied action, with the
// user, the repository and action, and the source address — never a password or a token.
type audit struct {
	log      *slog.Logger
	failures *prometheus.CounterVec
	denials  *prometheus.CounterVec
	issued   *prometheus.CounterVec
}

func newAudit(log *slog.Logger) *audit {
	return &audit{
		log: log,
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dockyard_registry_auth_failures_total",
			Help: "Failed authentications by identity provider and reason (bad_credentials, expired_credentials, unknown_user, provider_unavailable, invalid_token).",
		}, []string{"provider", "reason"}),
		denials: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dockyard_registry_access_denied_total",
			Help: "Actions refused to authenticated callers by the access rules, by action.",
		}, []string{"action"}),
		issued: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dockyard_registry_tokens_issued_total",
			Help: "Registry tokens issued by the token endpoint, by identity provider.",
		}, []string{"provider"}),
	}
}

func (a *audit) collectors() []prometheus.Collector {
	return []prometheus.Collector{a.failures, a.denials, a.issued}
}

// failureReason classifies an authentication error for logs and metrics.
func failureReason(err error) string {
	switch {
	case errors.Is(err, errProviderUnavailable):
		return "provider_unavailable"
	case errors.Is(err, errCredentialExpired):
		return "expired_credentials"
	case errors.Is(err, errUnknownUser):
		return "unknown_user"
	case errors.Is(err, errBadPassword):
		return "bad_credentials"
	}
	return "invalid_token"
}

func (a *audit) authFailed(r *http.Request, user, provider string, err error) {
	reason := failureReason(err)
	if provider == "" {
		provider = "none"
	}
	a.failures.WithLabelValues(provider, reason).Inc()
	attrs := []any{"user", user, "provider", provider, "reason", reason, "source", r.RemoteAddr,
		"method", r.Method, "path", r.URL.Path}
	if reason == "provider_unavailable" || reason == "invalid_token" {
		// The error names the directory or the token problem; it holds no secret.
		attrs = append(attrs, "err", err.Error())
	}
	a.log.Info("Authentication failed", attrs...)
}

func (a *audit) denied(r *http.Request, id Identity, access []string, reason string) {
	for _, s := range access {
		a.denials.WithLabelValues(actionOf(s)).Inc()
	}
	attrs := []any{"user", id.User, "provider", id.Provider, "access", access,
		"source", r.RemoteAddr, "method", r.Method, "path", r.URL.Path}
	if reason != "" {
		attrs = append(attrs, "reason", reason)
	}
	a.log.Info("Access denied", attrs...)
}

// actionOf returns the action of a "type:name:action" string.
func actionOf(s string) string {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == ':' {
			return s[i+1:]
		}
	}
	return s
}
