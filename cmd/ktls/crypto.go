package main

import (
	"errors"
	"strings"

	"github.com/ktls-go/ktls/backend"
	"github.com/ktls-go/ktls/backend/afalg"
)

// The kernel crypto API's implementations, which of them the kernel hands
// out and whether each runs on the CPU or on a hardware engine are the afalg
// engine's knowledge (backend/afalg, registry.go): the doctor shows what the
// engine itself decides from.

// Driver kinds, as afalg.Implementation.Classify names them.
const (
	kindCPU      = afalg.KindCPU
	kindHardware = afalg.KindHardware
	kindUnknown  = afalg.KindUnknown
)

// driverOf turns an implementation into the report's Driver.
func driverOf(a afalg.Implementation) Driver {
	d := Driver{Driver: a.Driver, Module: a.Module, Priority: a.Priority}
	if a.HasFlags {
		f := a.Flags
		d.Flags = &f
	}
	d.Kind, d.Signal = a.Classify()
	return d
}

// afalgStatus turns an afalg probe's three outcomes into a Status: nil, an
// error wrapping backend.ErrNotSupported (conclusive), or another
// (inconclusive). The engine's name in front and the sentinel at the end
// say nothing the report does not say already.
func afalgStatus(err error) Status {
	if err == nil {
		return Status{State: stateAvailable}
	}
	msg := strings.TrimPrefix(err.Error(), backend.AFALG+": ")
	msg = strings.TrimSuffix(msg, ": "+backend.ErrNotSupported.Error())
	if errors.Is(err, backend.ErrNotSupported) {
		return Status{State: stateUnavailable, Reason: msg}
	}
	return Status{State: stateError, Reason: msg}
}
