//go:build !linux

package afalg

import (
	"errors"
	"runtime"

	"github.com/ktls-go/ktls/backend"
)

var (
	_ backend.Backend     = engine{}
	_ backend.Checker     = engine{}
	_ backend.Accelerator = engine{}
)

type engine struct{}

// New returns an engine that serves nothing: AF_ALG is Linux's.
func New() backend.Backend { return engine{} }

func errPlatform() error {
	return backend.NotSupported(backend.AFALG, "AF_ALG needs Linux; this is %s/%s", runtime.GOOS, runtime.GOARCH)
}

// Name returns backend.AFALG.
func (engine) Name() string { return backend.AFALG }

// Check reports that AF_ALG needs Linux.
func (engine) Check(tx bool, version, suite uint16) error { return errPlatform() }

// NewSealer reports that AF_ALG needs Linux.
func (engine) NewSealer(backend.Link, backend.Params) (backend.Sealer, error) {
	return nil, errPlatform()
}

// NewOpener reports that AF_ALG needs Linux.
func (engine) NewOpener(backend.Link, backend.Params) (backend.Opener, error) {
	return nil, errPlatform()
}

// Hardware reports that AF_ALG needs Linux.
func (engine) Hardware(version, suite uint16) (bool, string) {
	return false, "AF_ALG needs Linux; this is " + runtime.GOOS + "/" + runtime.GOARCH
}

// Probe reports that AF_ALG needs Linux.
func Probe(alg string) error { return errPlatform() }

// ProbeSocket reports that AF_ALG needs Linux.
func ProbeSocket() error { return errPlatform() }

// Restriction reports no af_alg_restrict: there is no Linux kernel.
func Restriction() (n int, ok bool, err error) { return 0, false, nil }

// ReadRegistry reports that the kernel crypto API is Linux's.
func ReadRegistry() (Registry, error) {
	return Registry{Source: "none"}, errors.New("afalg: the kernel crypto API needs Linux; this is " + runtime.GOOS + "/" + runtime.GOARCH)
}

// Implementations reports that the kernel crypto API is Linux's.
func Implementations(name string) ([]Implementation, error) {
	_, err := ReadRegistry()
	return nil, err
}
