//go:build !linux

package handshake

import (
	"context"
	"errors"
	"fmt"
	"runtime"
)

func errPlatform() error {
	return fmt.Errorf("handshake: the kernel's handshake upcall is Linux's; this is %s/%s: %w", runtime.GOOS, runtime.GOARCH, errors.ErrUnsupported)
}

// Serve is Linux's; elsewhere it fails at once, naming the platform.
func Serve(ctx context.Context, cfg *Config) error { return errPlatform() }

// Probe is Linux's; elsewhere it fails, naming the platform.
func Probe() (Info, error) { return Info{}, errPlatform() }
