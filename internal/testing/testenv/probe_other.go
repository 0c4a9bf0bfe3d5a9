//go:build !linux

package testenv

import (
	"fmt"
	"net"
	"runtime"

	"github.com/ktls-go/ktls/backend"
)

func kernelRelease() string { return "" }

// AFALGRestriction reports no restriction: there is no AF_ALG.
func AFALGRestriction() int { return 0 }

// ProbeKTLSWith reports that kernel TLS needs Linux.
func ProbeKTLSWith(version, suite uint16) error { return ProbeKTLS() }

// ProbeKTLS reports that kernel TLS needs Linux.
func ProbeKTLS() error {
	return fmt.Errorf("testenv: kTLS on %s: %w", runtime.GOOS, backend.ErrNotSupported)
}

// ProbeAFALG reports that AF_ALG needs Linux.
func ProbeAFALG() error {
	return fmt.Errorf("testenv: AF_ALG on %s: %w", runtime.GOOS, backend.ErrNotSupported)
}

// KTLSRecSeq reports that kTLS needs Linux.
func KTLSRecSeq(c net.Conn, tx bool) (uint64, error) { return 0, ProbeKTLS() }

// TLSStat reports that kTLS needs Linux.
func TLSStat() (map[string]int64, error) { return nil, ProbeKTLS() }

// TLSStatFile reports that kTLS needs Linux.
func TLSStatFile(string) (map[string]int64, error) { return nil, ProbeKTLS() }

// ProbeHandshake reports that the kernel's handshake upcall needs Linux.
func ProbeHandshake() error {
	return fmt.Errorf("testenv: the handshake netlink family on %s: %w", runtime.GOOS, backend.ErrNotSupported)
}
