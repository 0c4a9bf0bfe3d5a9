package handshake

import (
	"context"
	"errors"
	"net"
	"os"

	"github.com/ktls-go/ktls"
)

// Status is the outcome a DONE message reports to the kernel consumer. The
// consumer's completion callback receives it as a negative errno
// (Documentation/networking/tls-handshake.rst, "Handshake Completion", whose
// table this follows; net/handshake/tlshd.c, tls_handshake_done).
type Status int

const (
	// StatusOK: the session is established; both directions are in kTLS.
	StatusOK Status = iota
	// StatusRejected (EACCES): the peer rejected the handshake, or
	// authentication failed. As tlshd does, every failure of the TLS
	// handshake itself is reported so: a refusal must block access.
	StatusRejected
	// StatusNoKey (ENOKEY): authentication material is missing: no
	// certificate or key where the request needs one, a key serial this
	// process cannot read, or a PSK request (see [Serve]).
	StatusNoKey
	// StatusInvalid (EINVAL): the request is malformed (an unknown message
	// type or auth mode).
	StatusInvalid
	// StatusFault (EIO): an unexpected fault of the agent or the host: the
	// kernel would not take the session's keys in both directions, a
	// socket option could not be read or restored.
	StatusFault
	// StatusTimedOut (ETIMEDOUT): the handshake did not end within the
	// request's timeout, or the agent was stopped.
	StatusTimedOut
)

func (s Status) String() string {
	switch s {
	case StatusOK:
		return "ok"
	case StatusRejected:
		return "EACCES"
	case StatusNoKey:
		return "ENOKEY"
	case StatusInvalid:
		return "EINVAL"
	case StatusFault:
		return "EIO"
	case StatusTimedOut:
		return "ETIMEDOUT"
	}
	return "status?"
}

// statusError is a failure whose status is known where it happens.
type statusError struct {
	status Status
	err    error
}

func (e *statusError) Error() string { return e.err.Error() }
func (e *statusError) Unwrap() error { return e.err }

func withStatus(s Status, err error) error { return &statusError{s, err} }

// StatusOf says what DONE reports for err, the outcome of one request:
// a status set where the failure happened first; then timeouts; then
// ktls's refusal to put both directions in the kernel (a *ktls.StrictError:
// EIO, since the consumer cannot use a session whose keys stay in user
// space, and nothing about the peer is wrong); every other failure of the
// handshake is EACCES.
func StatusOf(err error) Status {
	if err == nil {
		return StatusOK
	}
	var se *statusError
	if errors.As(err, &se) {
		return se.status
	}
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) ||
		errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return StatusTimedOut
	}
	var strict *ktls.StrictError
	if errors.As(err, &strict) {
		return StatusFault
	}
	// Alerts, certificate verification, protocol errors, a peer that
	// hung up: tlshd reports every handshake failure as EACCES too, so that
	// a refusal blocks access.
	return StatusRejected
}
