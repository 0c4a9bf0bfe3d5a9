package main

import (
	"slices"
	"strings"
	"testing"
)

func TestPackagesOf(t *testing.T) {
	// dpkg-query -S over ldd's paths and their other spellings on Debian 12
	// (merged /usr: the packages list /lib/... for some libraries and
	// /usr/lib/... for others); the spellings dpkg does not know go to
	// stderr and are not here.
	const search = `openssl: /usr/bin/openssl
gnutls-bin: /usr/bin/gnutls-cli
libssl3:amd64: /usr/lib/x86_64-linux-gnu/libssl.so.3
libc6:amd64: /lib/x86_64-linux-gnu/libc.so.6
libc6:amd64: /lib64/ld-linux-x86-64.so.2
libgnutls30:amd64: /usr/lib/x86_64-linux-gnu/libgnutls.so.30
libfoo1:amd64, libfoo1:i386: /usr/share/doc/libfoo1
diversion by libc6 from: /lib64/ld-linux-x86-64.so.2
zlib1g:amd64: /lib/x86_64-linux-gnu/libz.so.1.2.13
`
	owners := parseDpkgSearch(strings.NewReader(search))
	if got := owners["/usr/share/doc/libfoo1"]; !slices.Equal(got, []string{"libfoo1"}) {
		t.Errorf("a path of two architectures' packages: %v", got)
	}
	realpath := func(p string) string {
		if p == "/lib/x86_64-linux-gnu/libz.so.1" {
			return "/usr/lib/x86_64-linux-gnu/libz.so.1.2.13"
		}
		return p
	}
	files := []string{
		"/usr/bin/openssl", "/usr/bin/gnutls-cli",
		"/lib/x86_64-linux-gnu/libssl.so.3",   // ldd's spelling; dpkg has /usr/lib
		"/usr/lib/x86_64-linux-gnu/libc.so.6", // and the other way round
		"/lib64/ld-linux-x86-64.so.2",
		"/lib/x86_64-linux-gnu/libgnutls.so.30",
		"/lib/x86_64-linux-gnu/libz.so.1", // a link, whose target dpkg has under /lib
		"/usr/local/lib/libmine.so.1",
	}
	pkgs, unowned := packagesOf(files, owners, realpath)
	if want := []string{"gnutls-bin", "libc6", "libgnutls30", "libssl3", "openssl", "zlib1g"}; !slices.Equal(pkgs, want) {
		t.Errorf("packages %v, want %v", pkgs, want)
	}
	if !slices.Equal(unowned, []string{"/usr/local/lib/libmine.so.1"}) {
		t.Errorf("unowned %v", unowned)
	}
}

func TestForeignPackages(t *testing.T) {
	got := foreignPackages([]string{"openssl", "libc6", "busybox-static", "curl"}, "bookworm")
	want := []string{"busybox-static/bookworm", "curl/bookworm", "libc6/bookworm", "openssl/bookworm"}
	if !slices.Equal(got, want) {
		t.Errorf("foreignPackages = %v, want %v", got, want)
	}
}

func TestUsrToggled(t *testing.T) {
	for in, want := range map[string]string{
		"/lib/x86_64-linux-gnu/libc.so.6":     "/usr/lib/x86_64-linux-gnu/libc.so.6",
		"/usr/lib/x86_64-linux-gnu/libc.so.6": "/lib/x86_64-linux-gnu/libc.so.6",
		"/bin/busybox":                        "/usr/bin/busybox",
	} {
		if got := usrToggled(in); got != want {
			t.Errorf("usrToggled(%s) = %s, want %s", in, got, want)
		}
	}
}

func TestOSReleaseCodename(t *testing.T) {
	const bookworm = `PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
VERSION_CODENAME=bookworm
ID=debian
`
	if got := osReleaseCodename(bookworm); got != "bookworm" {
		t.Errorf("codename %q", got)
	}
	if got := osReleaseCodename("ID=debian\nVERSION_CODENAME=\"trixie\"\n"); got != "trixie" {
		t.Errorf("quoted codename %q", got)
	}
	if got := osReleaseCodename("ID=arch\n"); got != "" {
		t.Errorf("no codename: %q", got)
	}
}
