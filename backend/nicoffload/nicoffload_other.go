//go:build !linux

package nicoffload

import (
	"net"
	"runtime"

	"github.com/ktls-go/ktls/backend"
)

var (
	_ backend.Backend = engine{}
	_ backend.Checker = engine{}
)

type engine struct{}

// New returns an engine that serves nothing: kTLS device offload is
// Linux's.
func New(Options) backend.Backend { return engine{} }

func errPlatform() error {
	return backend.NotSupported(backend.NIC, "kTLS device offload needs Linux; this is %s/%s", runtime.GOOS, runtime.GOARCH)
}

// Name returns backend.NIC.
func (engine) Name() string { return backend.NIC }

// Check reports that kTLS device offload needs Linux.
func (engine) Check(tx bool, version, suite uint16) error { return errPlatform() }

// NewSealer reports that kTLS device offload needs Linux.
func (engine) NewSealer(backend.Link, backend.Params) (backend.Sealer, error) {
	return nil, errPlatform()
}

// NewOpener reports that kTLS device offload needs Linux.
func (engine) NewOpener(backend.Link, backend.Params) (backend.Opener, error) {
	return nil, errPlatform()
}

// Interfaces reports that kTLS device offload needs Linux.
func Interfaces() ([]Interface, error) { return nil, errPlatform() }

// DeviceFeatures reports that kTLS device offload needs Linux.
func DeviceFeatures(index int) (Features, error) { return Features{}, errPlatform() }

// Egress reports that kTLS device offload needs Linux.
func Egress(c *net.TCPConn) (string, error) { return "", errPlatform() }
