package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"

	"github.com/ktls-go/ktls/internal/testing/vmtest/plan"
)

// commonArchive builds the part of the initramfs that is the same for every
// kernel of an architecture: busybox, the peers, the guest program, the
// test binaries and their package directories, and a minimal /etc and /dev.
// busybox and the peers are the host's on the host's architecture, and
// come from the tree root (fetchForeignRoot) on the others. With an
// nfsRoot, the NFS test bed's programs come from that tree (nfs.go). A run
// of the benchmarks' benchmarks adds the proxies they compare (benchpeers.go).
func commonArchive(guest string, pkgs []testPkg, ga *guestArch, root, nfsRoot string) (*archive, error) {
	a := newArchive()
	// Without /dev/console in the initramfs the kernel starts /init with no
	// stdin, stdout or stderr ("Warning: unable to open an initial
	// console", init/main.c), and nothing would reach the serial port.
	if err := a.addCharDev("dev/console", 0o600, 5, 1); err != nil {
		return nil, err
	}
	for _, d := range []string{"proc", "sys", "run", "root", "vmtest/modules"} {
		if err := a.addDir(d, 0o755); err != nil {
			return nil, err
		}
	}
	if err := a.addDir("tmp", 0o1777); err != nil {
		return nil, err
	}
	// Go's resolver and os/user read these (CGO_ENABLED=0); the peers'
	// glibc reads hosts through nsswitch.conf.
	for name, content := range map[string]string{
		"etc/hosts":         "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
		"etc/nsswitch.conf": "passwd: files\ngroup: files\nhosts: files\n",
		// nobody, for programs that refuse to run as root (hitch's
		// workers, BenchmarkProxy).
		"etc/passwd":      "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
		"etc/group":       "root:x:0:\nnogroup:x:65534:\n",
		"etc/resolv.conf": "",
	} {
		if err := a.addBytes(name, 0o644, []byte(content)); err != nil {
			return nil, err
		}
	}
	if ga.native() {
		if err := a.addProgram("/bin/busybox"); err != nil {
			return nil, err
		}
		if err := addPeers(a); err != nil {
			return nil, err
		}
	} else {
		if err := a.addForeignProgram(root, "/bin/busybox", ga); err != nil {
			return nil, err
		}
		if err := addForeignPeers(a, root, ga); err != nil {
			return nil, err
		}
	}
	if nfsRoot != "" {
		if err := addNFSTools(a, nfsRoot, ga); err != nil {
			return nil, err
		}
	}
	if err := addBenchPeers(a, pkgs, filepath.Dir(guest), ga); err != nil {
		return nil, err
	}
	if err := a.addFile("vmtest/guest", guest); err != nil {
		return nil, err
	}
	for _, p := range pkgs {
		if err := a.addFile(p.guestBinary(), p.binary); err != nil {
			return nil, err
		}
		if err := addPackageDir(a, p); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// addPeers copies the host's peers with their libraries, and what they read
// at run time: OpenSSL's configuration directory (openssl.cnf, and the CA
// certificates through its certs link) and its provider and engine modules,
// which it loads with dlopen and ldd cannot see.
func addPeers(a *archive) error {
	for _, name := range peers {
		p, err := exec.LookPath(name)
		if err != nil {
			return fmt.Errorf("vmtest: peer %s: %w", name, err)
		}
		if err := a.addProgram(p); err != nil {
			return err
		}
	}
	dirs, err := opensslDirs()
	if err != nil {
		return err
	}
	for _, kind := range []string{"OPENSSLDIR", "MODULESDIR", "ENGINESDIR"} {
		dir := dirs[kind]
		if _, err := os.Stat(dir); dir == "" || err != nil {
			continue // an engines directory, say, that the build names but does not ship
		}
		if err := a.addHostPath(dir); err != nil {
			return err
		}
		if kind == "OPENSSLDIR" {
			continue
		}
		sos, _ := filepath.Glob(filepath.Join(dir, "*.so"))
		for _, so := range sos {
			if err := a.addProgram(so); err != nil {
				return err
			}
		}
	}
	return addHostConfig(a)
}

// addForeignPeers copies the peers of another architecture from the tree
// under root, with their libraries and OpenSSL's modules, which lie where
// the host's do with the host's multiarch triplet replaced by ga's. The
// configuration files are the host's: they are the same on every
// architecture.
func addForeignPeers(a *archive, root string, ga *guestArch) error {
	for _, name := range peers {
		p := ""
		for _, d := range []string{"/usr/bin", "/bin"} {
			if _, err := os.Stat(filepath.Join(root, d, name)); err == nil {
				p = path.Join(d, name)
				break
			}
		}
		if p == "" {
			return fmt.Errorf("vmtest: peer %s: not in /usr/bin or /bin under %s", name, root)
		}
		if err := a.addForeignProgram(root, p, ga); err != nil {
			return err
		}
	}
	dirs, err := opensslDirs()
	if err != nil {
		return err
	}
	host := nativeArch()
	if host == nil {
		return fmt.Errorf("vmtest: the host's architecture is none of %s", strings.Join(archNames(allArches), ", "))
	}
	if dir := dirs["OPENSSLDIR"]; dir != "" {
		if _, err := os.Stat(dir); err == nil {
			if err := a.addHostPath(dir); err != nil {
				return err
			}
		}
	}
	for _, kind := range []string{"MODULESDIR", "ENGINESDIR"} {
		dir := strings.ReplaceAll(dirs[kind], "/"+host.triplet+"/", "/"+ga.triplet+"/")
		if _, err := os.Stat(filepath.Join(root, dir)); dir == "" || err != nil {
			continue
		}
		if _, err := a.addRootedPath(root, dir, 0); err != nil {
			return err
		}
		sos, _ := filepath.Glob(filepath.Join(root, dir, "*.so"))
		for _, so := range sos {
			if err := a.addForeignProgram(root, path.Join(dir, filepath.Base(so)), ga); err != nil {
				return err
			}
		}
	}
	return addHostConfig(a)
}

// addHostConfig copies the peers' configuration that is not OpenSSL's.
func addHostConfig(a *archive) error {
	// GnuTLS reads a system-wide priority file when there is one.
	if _, err := os.Stat("/etc/gnutls"); err == nil {
		if err := a.addHostPath("/etc/gnutls"); err != nil {
			return err
		}
	}
	return nil
}

// kernelArchive builds what one kernel adds to the common part: its modules
// in load order, the plan, and /init. The two are written as two cpio
// archives one after the other, which the kernel unpacks in turn into the
// same rootfs (Documentation/driver-api/early-userspace/buffer-format.rst);
// so the common part, test binaries included, is read from the host once
// per run, and a source file edited during a run cannot make two kernels
// see different tests.
func kernelArchive(k kernel, modules []string, p *plan.Plan) (*archive, error) {
	a := newArchive()
	var names []string
	for i, m := range modules {
		obj, err := readModule(filepath.Join(k.modDir, m))
		if err != nil {
			return nil, err
		}
		// The number keeps the load order visible in the guest's listing.
		name := fmt.Sprintf("%02d-%s.ko", i, strings.ReplaceAll(moduleNameOf(m), "_", "-"))
		names = append(names, name)
		if err := a.addBytes(path.Join("vmtest/modules", name), 0o644, obj); err != nil {
			return nil, err
		}
	}
	pj, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("vmtest: %w", err)
	}
	if err := a.addBytes(strings.TrimPrefix(plan.Path, "/"), 0o644, pj); err != nil {
		return nil, err
	}
	if err := a.addBytes("init", 0o755, initScript(names)); err != nil {
		return nil, err
	}
	return a, nil
}

// initScript is the guest's first process: it sets up the minimum a Go test
// needs, loads the modules, runs the guest program and powers off. Everything
// it and its children print goes to the serial console.
func initScript(modules []string) []byte {
	var b bytes.Buffer
	b.WriteString(`#!/bin/busybox sh
# Written by internal/testing/vmtest (the VM test harness): the guest's /init.
/bin/busybox --install -s /bin
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TMPDIR=/tmp
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs -o mode=1777 tmpfs /tmp
mkdir -p /dev/shm /dev/pts
mount -t tmpfs tmpfs /dev/shm
ip link set lo up
# nfsd and the NFS client name themselves by it (the NFSv4 client ID).
hostname vmtest
echo "vmtest: loading modules"
`)
	for _, m := range modules {
		// A module that fails to load fails the self-check, which says what
		// is missing; the message here tells why.
		fmt.Fprintf(&b, "insmod /vmtest/modules/%s || echo \"vmtest: insmod %s failed\"\n", m, m)
	}
	b.WriteString(`/vmtest/guest
echo "vmtest: powering off"
poweroff -f
`)
	return b.Bytes()
}

// writeArchive writes the archive to a file.
func writeArchive(a *archive, file string) error {
	return writeInitrd(file, "", a)
}

// writeInitrd writes an initramfs: the archive already written to the file
// common (none if empty), then the archive a.
func writeInitrd(file, common string, a *archive) error {
	f, err := os.Create(file)
	if err != nil {
		return fmt.Errorf("vmtest: %w", err)
	}
	if err := copyInto(f, common); err != nil {
		f.Close()
		return err
	}
	if err := a.writeTo(f); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("vmtest: %w", err)
	}
	return nil
}

func copyInto(w io.Writer, file string) error {
	if file == "" {
		return nil
	}
	r, err := os.Open(file)
	if err != nil {
		return fmt.Errorf("vmtest: %w", err)
	}
	defer r.Close()
	if _, err := io.Copy(w, r); err != nil {
		return fmt.Errorf("vmtest: copying %s: %w", file, err)
	}
	return nil
}
