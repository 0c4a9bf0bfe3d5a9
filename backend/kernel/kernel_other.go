//go:build !linux

package kernel

import (
	"runtime"

	"github.com/ktls-go/ktls/backend"
)

var (
	_ backend.Backend = engine{}
	_ backend.Checker = engine{}
)

type engine struct{}

// New returns an engine that serves nothing: kTLS is Linux's.
func New(Options) backend.Backend { return engine{} }

func errPlatform() error {
	return backend.NotSupported(backend.Kernel, "kTLS needs Linux; this is %s/%s", runtime.GOOS, runtime.GOARCH)
}

// Name returns backend.Kernel.
func (engine) Name() string { return backend.Kernel }

// Check reports that kTLS needs Linux.
func (engine) Check(tx bool, version, suite uint16) error { return errPlatform() }

// NewSealer reports that kTLS needs Linux.
func (engine) NewSealer(backend.Link, backend.Params) (backend.Sealer, error) {
	return nil, errPlatform()
}

// NewOpener reports that kTLS needs Linux.
func (engine) NewOpener(backend.Link, backend.Params) (backend.Opener, error) {
	return nil, errPlatform()
}

// Probe reports that kTLS needs Linux.
func Probe(tx bool, version, suite uint16) error { return errPlatform() }

// ProbeRekey reports that kTLS needs Linux.
func ProbeRekey() error { return errPlatform() }
