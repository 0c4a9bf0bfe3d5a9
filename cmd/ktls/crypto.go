package main

import (
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

// afalgStatus is engineStatus for an afalg probe.
func afalgStatus(err error) Status { return engineStatus(backend.AFALG, err) }
