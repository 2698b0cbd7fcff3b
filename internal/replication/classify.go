package replication

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"syscall"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/dockyard-dev/dockyard/api/v1alpha1"
)

// Reason names the kind of a run's failure with a ReplicationRule condition reason.
func Reason(err error) string {
	var (
		unknownCA x509.UnknownAuthorityError
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
		verifyErr *tls.CertificateVerificationError
		recordErr tls.RecordHeaderError
		te        *transport.Error
		netErr    net.Error
		dnsErr    *net.DNSError
		opErr     *net.OpError
	)
	switch {
	case err == nil:
		return ""
	case errors.As(err, &unknownCA), errors.As(err, &hostname), errors.As(err, &invalid), errors.As(err, &verifyErr),
		errors.As(err, &recordErr):
		return v1alpha1.ReasonTLSUntrusted
	case errors.As(err, &te):
		switch {
		case te.StatusCode == http.StatusUnauthorized:
			return v1alpha1.ReasonAuthenticationFailed
		case te.StatusCode == http.StatusForbidden, te.StatusCode == http.StatusTooManyRequests:
			return v1alpha1.ReasonPermissionDenied
		case te.StatusCode >= 500:
			return v1alpha1.ReasonRemoteUnreachable
		}
		for _, d := range te.Errors {
			switch d.Code {
			case transport.UnauthorizedErrorCode:
				return v1alpha1.ReasonAuthenticationFailed
			case transport.DeniedErrorCode, transport.TooManyRequestsErrorCode:
				return v1alpha1.ReasonPermissionDenied
			}
		}
	case errors.As(err, &dnsErr), errors.As(err, &opErr), errors.Is(err, syscall.ECONNREFUSED),
		errors.Is(err, context.DeadlineExceeded):
		return v1alpha1.ReasonRemoteUnreachable
	case errors.As(err, &netErr) && netErr.Timeout():
		return v1alpha1.ReasonRemoteUnreachable
	}
	return v1alpha1.ReasonSyncFailed
}
