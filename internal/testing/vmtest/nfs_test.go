package main

import (
	"slices"
	"strings"
	"testing"
)

func TestParseDependsRecurse(t *testing.T) {
	// apt-cache depends --recurse, shortened: each package once at the
	// start of a line, its dependencies indented, virtual ones in <>.
	const out = `nfs-kernel-server
  Depends: libc6
  Depends: nfs-common
 |Depends: <debconf-2.0>
    cdebconf
ktls-utils
  Depends: libgnutls30t64
nfs-common
  Depends: libc6
<debconf-2.0>
libc6
  Depends: libgcc-s1
zlib1g
libc6
`
	got := parseDependsRecurse(strings.NewReader(out))
	want := []string{"ktls-utils", "libc6", "nfs-common", "nfs-kernel-server", "zlib1g"}
	if !slices.Equal(got, want) {
		t.Errorf("parseDependsRecurse = %v, want %v", got, want)
	}
}

func TestNeedsNFS(t *testing.T) {
	if needsNFS([]testPkg{{rel: "."}, {rel: "interop"}}) {
		t.Error("needsNFS without interop/nfs = true")
	}
	if !needsNFS([]testPkg{{rel: "conn"}, {rel: "interop/nfs"}}) {
		t.Error("needsNFS with interop/nfs = false")
	}
}

func TestTestBedModulesFor(t *testing.T) {
	if got := testBedModulesFor([]testPkg{{rel: "."}, {rel: "interop"}}); len(got) != 0 {
		t.Errorf("testBedModulesFor without the test bed = %v", got)
	}
	got := testBedModulesFor([]testPkg{{rel: "interop/nvme"}, {rel: "conn"}})
	if !slices.Equal(got, nvmeModules) {
		t.Errorf("testBedModulesFor(interop/nvme) = %v, want %v", got, nvmeModules)
	}
	got = testBedModulesFor([]testPkg{{rel: "interop/nfs"}, {rel: "interop/nvme"}})
	if want := append(slices.Clone(nfsModules), nvmeModules...); !slices.Equal(got, want) {
		t.Errorf("testBedModulesFor(both) = %v, want %v", got, want)
	}
}

func TestAddUnder(t *testing.T) {
	sub := newArchive()
	for _, err := range []error{
		sub.addBytes("usr/sbin/tlshd", 0o755, []byte("elf")),
		sub.addSymlink("lib64", "usr/lib64"),
		sub.addSymlink("usr/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/x86_64-linux-gnu/libc-2.41.so"),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	a := newArchive()
	if err := a.addBytes("usr/sbin/tlshd", 0o755, []byte("wrapper")); err != nil {
		t.Fatal(err)
	}
	if err := a.addUnder("/vmtest/trixie", sub); err != nil {
		t.Fatal(err)
	}
	if e := a.entries["usr/sbin/tlshd"]; e == nil || string(e.data) != "wrapper" {
		t.Errorf("the archive's own /usr/sbin/tlshd was replaced: %+v", e)
	}
	if e := a.entries["vmtest/trixie/usr/sbin/tlshd"]; e == nil || string(e.data) != "elf" {
		t.Errorf("vmtest/trixie/usr/sbin/tlshd = %+v", e)
	}
	if e := a.entries["vmtest/trixie/lib64"]; e == nil || e.target != "usr/lib64" {
		t.Errorf("a relative link changed: %+v", e)
	}
	if e := a.entries["vmtest/trixie/usr/lib/x86_64-linux-gnu/libc.so.6"]; e == nil || e.target != "/vmtest/trixie/usr/lib/x86_64-linux-gnu/libc-2.41.so" {
		t.Errorf("an absolute link left the tree: %+v", e)
	}
	if e := a.entries["vmtest/trixie/usr/sbin"]; e == nil || e.mode&sIFMT != sIFDIR {
		t.Errorf("no directory above the tree's files: %+v", e)
	}
}

func TestNFSWrapper(t *testing.T) {
	got := string(nfsWrapper("/vmtest/trixie/lib64/ld-linux-x86-64.so.2", "/vmtest/trixie/lib/x86_64-linux-gnu:/vmtest/trixie/usr/lib/x86_64-linux-gnu", "/usr/sbin/tlshd"))
	want := `exec /vmtest/trixie/lib64/ld-linux-x86-64.so.2 --library-path /vmtest/trixie/lib/x86_64-linux-gnu:/vmtest/trixie/usr/lib/x86_64-linux-gnu --argv0 /usr/sbin/tlshd /vmtest/trixie/usr/sbin/tlshd "$@"` + "\n"
	if !strings.HasPrefix(got, "#!/bin/sh\n") || !strings.HasSuffix(got, "\n"+want) {
		t.Errorf("nfsWrapper:\n%s\nwant its last line:\n%s", got, want)
	}
}
