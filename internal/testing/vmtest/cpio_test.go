package main

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// record is one parsed newc record.
type record struct {
	name         string
	mode         uint32
	rmajor, rmin uint32
	data         string
}

// readNewc parses newc archives, one or several one after the other, the way
// the kernel's init/initramfs.c does, checking the alignment of every header.
func readNewc(t *testing.T, b []byte) []record {
	t.Helper()
	var recs []record
	off := 0
	for {
		if off%4 != 0 {
			t.Fatalf("header at offset %d is not 4-byte aligned", off)
		}
		if off+110 > len(b) || string(b[off:off+6]) != "070701" {
			t.Fatalf("no newc header at offset %d", off)
		}
		field := func(i int) uint32 {
			v, err := strconv.ParseUint(string(b[off+6+8*i:off+14+8*i]), 16, 32)
			if err != nil {
				t.Fatalf("field %d at %d: %v", i, off, err)
			}
			return uint32(v)
		}
		mode, size, rmajor, rminor, namesize := field(1), field(6), field(9), field(10), field(11)
		name := string(b[off+110 : off+110+int(namesize)-1])
		if b[off+110+int(namesize)-1] != 0 {
			t.Fatalf("name %q is not NUL-terminated", name)
		}
		off += 110 + int(namesize)
		off = (off + 3) &^ 3
		if name == "TRAILER!!!" {
			if off == len(b) {
				return recs
			}
			continue // the next archive
		}
		recs = append(recs, record{name, mode, rmajor, rminor, string(b[off : off+int(size)])})
		off += int(size)
		off = (off + 3) &^ 3
	}
}

func TestArchiveWrite(t *testing.T) {
	a := newArchive()
	must(t, a.addBytes("init", 0o755, []byte("#!/bin/busybox sh\necho hi\n")))
	must(t, a.addCharDev("dev/console", 0o600, 5, 1))
	must(t, a.addSymlink("lib", "usr/lib"))
	must(t, a.addBytes("usr/lib/x/libz.so.1", 0o644, []byte("odd")))
	must(t, a.addDir("tmp", 0o1777))
	var buf bytes.Buffer
	must(t, a.writeTo(&buf))
	recs := readNewc(t, buf.Bytes())
	var names []string
	for _, r := range recs {
		names = append(names, r.name)
	}
	want := []string{"dev", "dev/console", "init", "lib", "tmp", "usr", "usr/lib", "usr/lib/x", "usr/lib/x/libz.so.1"}
	if !slices.Equal(names, want) {
		t.Fatalf("names %v, want %v", names, want)
	}
	byName := map[string]record{}
	for _, r := range recs {
		byName[r.name] = r
	}
	if r := byName["dev/console"]; r.mode != sIFCHR|0o600 || r.rmajor != 5 || r.rmin != 1 {
		t.Errorf("dev/console = %+v", r)
	}
	if r := byName["lib"]; r.mode != sIFLNK|0o777 || r.data != "usr/lib" {
		t.Errorf("lib = %+v", r)
	}
	if r := byName["init"]; r.mode != sIFREG|0o755 || !strings.HasPrefix(r.data, "#!") {
		t.Errorf("init = %+v", r)
	}
	if r := byName["tmp"]; r.mode != sIFDIR|0o1777 {
		t.Errorf("tmp mode %o", r.mode)
	}
}

// The initramfs is the common archive followed by each kernel's own: the
// kernel unpacks both into one tree.
func TestArchivesConcatenate(t *testing.T) {
	common, own := newArchive(), newArchive()
	must(t, common.addBytes("vmtest/bin/a.test", 0o755, []byte("odd length")))
	must(t, own.addBytes("vmtest/plan.json", 0o644, []byte("{}")))
	must(t, own.addBytes("init", 0o755, []byte("#!/bin/busybox sh\n")))
	var buf bytes.Buffer
	must(t, common.writeTo(&buf))
	if buf.Len()%4 != 0 {
		t.Fatalf("archive length %d is not a multiple of 4", buf.Len())
	}
	must(t, own.writeTo(&buf))
	var names []string
	for _, r := range readNewc(t, buf.Bytes()) {
		names = append(names, r.name)
	}
	want := []string{"vmtest", "vmtest/bin", "vmtest/bin/a.test", "init", "vmtest", "vmtest/plan.json"}
	if !slices.Equal(names, want) {
		t.Errorf("names %v, want %v", names, want)
	}
}

func TestArchiveConflicts(t *testing.T) {
	a := newArchive()
	must(t, a.addSymlink("lib", "usr/lib"))
	if err := a.addBytes("lib/libc.so.6", 0o644, nil); err == nil {
		t.Errorf("a file under a symbolic link was accepted")
	}
	if err := a.addDir("lib", 0o755); err == nil {
		t.Errorf("a directory over a symbolic link was accepted")
	}
}

func TestAddHostPath(t *testing.T) {
	// A small merged-/usr tree: lib -> usr/lib, a versioned library behind
	// a link, and a directory with a link out of it.
	root := t.TempDir()
	mkfile(t, filepath.Join(root, "usr/lib/libssl.so.3.0.9"), "elf")
	mkfile(t, filepath.Join(root, "etc/ssl/openssl.cnf"), "cnf")
	mklink(t, "usr/lib", filepath.Join(root, "lib"))
	mklink(t, "libssl.so.3.0.9", filepath.Join(root, "usr/lib/libssl.so.3"))
	mkfile(t, filepath.Join(root, "usr/lib/ssl/README"), "r")
	mklink(t, "../../../etc/ssl/openssl.cnf", filepath.Join(root, "usr/lib/ssl/openssl.cnf"))

	a := newArchive()
	must(t, a.addHostPath(filepath.Join(root, "lib/libssl.so.3")))
	must(t, a.addHostPath(filepath.Join(root, "usr/lib/ssl")))
	r := key(root)
	for p, want := range map[string]uint32{
		r + "/lib":                     sIFLNK,
		r + "/usr/lib/libssl.so.3":     sIFLNK,
		r + "/usr/lib/libssl.so.3.0.9": sIFREG,
		r + "/usr/lib/ssl":             sIFDIR,
		r + "/usr/lib/ssl/README":      sIFREG,
		r + "/usr/lib/ssl/openssl.cnf": sIFLNK,
		r + "/etc/ssl/openssl.cnf":     sIFREG,
	} {
		e, ok := a.entries[p]
		if !ok {
			t.Errorf("%s missing", p)
			continue
		}
		if e.mode&sIFMT != want {
			t.Errorf("%s has type %o, want %o", p, e.mode&sIFMT, want)
		}
	}
	var buf bytes.Buffer
	must(t, a.writeTo(&buf))
	readNewc(t, buf.Bytes())
}

func TestParseLdd(t *testing.T) {
	const out = `	linux-vdso.so.1 (0x00007ffd2b7e5000)
	libssl.so.3 => /lib/x86_64-linux-gnu/libssl.so.3 (0x00007f3c6b5f0000)
	libcrypto.so.3 => /lib/x86_64-linux-gnu/libcrypto.so.3 (0x00007f3c6b000000)
	libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f3c6ae1f000)
	/lib64/ld-linux-x86-64.so.2 (0x00007f3c6b6e8000)
`
	got, err := parseLdd(strings.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"/lib/x86_64-linux-gnu/libssl.so.3", "/lib/x86_64-linux-gnu/libcrypto.so.3", "/lib/x86_64-linux-gnu/libc.so.6", "/lib64/ld-linux-x86-64.so.2"}
	if !slices.Equal(got, want) {
		t.Errorf("parseLdd = %v, want %v", got, want)
	}
	if _, err := parseLdd(strings.NewReader("\tlibgone.so.1 => not found\n")); err == nil || !strings.Contains(err.Error(), "libgone") {
		t.Errorf("a missing library gave %v", err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func mkfile(t *testing.T, p, content string) {
	t.Helper()
	must(t, os.MkdirAll(filepath.Dir(p), 0o755))
	must(t, os.WriteFile(p, []byte(content), 0o644))
}

func mklink(t *testing.T, target, p string) {
	t.Helper()
	must(t, os.MkdirAll(filepath.Dir(p), 0o755))
	must(t, os.Symlink(target, p))
}
