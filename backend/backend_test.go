package backend

import (
	"errors"
	"syscall"
	"testing"
)

func TestNotSupported(t *testing.T) {
	err := NotSupported(Kernel, "setsockopt(TCP_ULP): %w", syscall.ENOENT)
	var ns *NotSupportedError
	if !errors.As(err, &ns) {
		t.Fatalf("errors.As(%v) found no *NotSupportedError", err)
	}
	if ns.Engine != Kernel || ns.Reason != "setsockopt(TCP_ULP): no such file or directory" {
		t.Errorf("Engine, Reason = %q, %q", ns.Engine, ns.Reason)
	}
	if !errors.Is(err, ErrNotSupported) || !errors.Is(err, syscall.ENOENT) {
		t.Errorf("%v: errors.Is ErrNotSupported %v, ENOENT %v; want both", err, errors.Is(err, ErrNotSupported), errors.Is(err, syscall.ENOENT))
	}
	if got, want := err.Error(), "kernel: setsockopt(TCP_ULP): no such file or directory: backend: not supported"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}

	plain := NotSupported(NIC, "devices offload AES-GCM only")
	if !errors.As(plain, &ns) || ns.Err != nil || !errors.Is(plain, ErrNotSupported) {
		t.Errorf("%v: want a refusal without a cause that is ErrNotSupported", plain)
	}
	if errors.Is(plain, syscall.ENOENT) {
		t.Errorf("%v is ENOENT", plain)
	}

	two := NotSupported(AFALG, "bind: %w: %w", syscall.ENOENT, syscall.EPERM)
	if !errors.Is(two, syscall.ENOENT) || !errors.Is(two, syscall.EPERM) {
		t.Errorf("%v: the causes of a reason with two %%w are lost", two)
	}
}
