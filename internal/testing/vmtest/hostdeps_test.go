package main

import (
	"slices"
	"strings"
	"testing"
)

func TestWithoutCandidate(t *testing.T) {
	// apt-cache policy busybox-static gnutls-bin qemu-system-x86 nosuchpkg,
	// with qemu-system-x86 known only from a removed source.
	const policy = `busybox-static:
  Installed: (none)
  Candidate: 1:1.35.0-4+deb12u1+b1
  Version table:
     1:1.35.0-4+deb12u1+b1 500
        500 http://deb.debian.org/debian bookworm/main amd64 Packages
gnutls-bin:
  Installed: 3.7.9-2+deb12u7
  Candidate: 3.7.9-2+deb12u7
  Version table:
 *** 3.7.9-2+deb12u7 500
        500 http://deb.debian.org/debian bookworm/main amd64 Packages
        100 /var/lib/dpkg/status
qemu-system-x86:
  Installed: (none)
  Candidate: (none)
  Version table:
`
	got := withoutCandidate(strings.NewReader(policy), []string{"busybox-static", "gnutls-bin", "qemu-system-x86", "nosuchpkg"})
	if want := []string{"qemu-system-x86", "nosuchpkg"}; !slices.Equal(got, want) {
		t.Errorf("withoutCandidate = %v, want %v", got, want)
	}
}

func TestMissingPackages(t *testing.T) {
	have := map[string]bool{"qemu-system-x86_64": true, "gnutls-cli": true, "/bin/busybox": true}
	needs := []hostNeed{
		{"qemu-system-x86", []string{"qemu-system-x86_64"}},
		{"busybox-static", []string{"/bin/busybox"}},
		{"gnutls-bin", []string{"gnutls-cli", "gnutls-serv"}},
		{"curl", []string{"curl"}},
	}
	got := missingPackages(needs, func(f string) bool { return have[f] })
	if want := []string{"gnutls-bin", "curl"}; !slices.Equal(got, want) {
		t.Errorf("missingPackages = %v, want %v", got, want)
	}
}
