package main

import (
	"errors"
	"fmt"
	"testing"

	"github.com/ktls-go/ktls/backend"
	"github.com/ktls-go/ktls/backend/afalg"
)

// The parsing and classification of the kernel's implementations are
// backend/afalg's, and tested there (registry_test.go, with the captured
// /proc/crypto files); here, only what the doctor makes of them.

func TestDriverOf(t *testing.T) {
	flags := uint32(afalg.FlagKernDriverOnly | 0x403)
	d := driverOf(afalg.Implementation{Name: "gcm(aes)", Driver: "gcm-aes-caam", Module: "caamalg", Priority: 3000, Flags: flags, HasFlags: true})
	if d.Driver != "gcm-aes-caam" || d.Module != "caamalg" || d.Priority != 3000 || d.Kind != kindHardware || d.Flags == nil || *d.Flags != flags {
		t.Errorf("driverOf = %+v, want gcm-aes-caam, hardware, with the flags", d)
	}
	d = driverOf(afalg.Implementation{Name: "gcm(aes)", Driver: "generic-gcm-aesni", Priority: 400})
	if d.Kind != kindCPU || d.Flags != nil || d.Signal == "" {
		t.Errorf("driverOf = %+v, want cpu, no flags, a signal", d)
	}
}

func TestAFALGStatus(t *testing.T) {
	for _, tc := range []struct {
		err    error
		state  string
		reason string
	}{
		{nil, stateAvailable, ""},
		{backend.NotSupported(backend.AFALG, "bind(aead, gcm(aes)): ENOENT"), stateUnavailable, "bind(aead, gcm(aes)): ENOENT"},
		{fmt.Errorf("afalg: probe: %w", backend.NotSupported(backend.AFALG, "bind(aead, gcm(aes)): %w", errors.New("ENOENT"))), stateUnavailable, "bind(aead, gcm(aes)): ENOENT"},
		{errors.New("afalg: socket(AF_ALG): EMFILE"), stateError, "socket(AF_ALG): EMFILE"},
	} {
		if got := afalgStatus(tc.err); got.State != tc.state || got.Reason != tc.reason {
			t.Errorf("afalgStatus(%v) = %+v, want %s %q", tc.err, got, tc.state, tc.reason)
		}
	}
}
