package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// The NFS-over-TLS test bed (issue 15). The kernel's NFS client and server
// ask a user-space agent for their TLS handshakes over the "handshake"
// netlink family (Linux 6.4+, Documentation/networking/tls-handshake.rst);
// testing that needs, in the guest, the NFS modules, nfsd's helpers
// (rpc.nfsd, rpc.mountd, exportfs), mount.nfs, and a reference agent,
// tlshd. They come from Debian trixie: bookworm's nfs-utils predate the
// xprtsec= export option (exports(5)), and bookworm has no ktls-utils.
// trixie's programs need trixie's glibc, newer than the host's bookworm one
// that the peers use, so they do not go beside the peers: their tree lies
// under nfsGuestRoot in the guest, and each is started through a wrapper
// at its usual path that runs it with that tree's own dynamic loader and
// libraries (ld.so(8), --library-path and --argv0).
//
// All this comes only into runs that test a package of nfsTestPackages.
// The NVMe-over-TCP test (interop/nvme) is the kernel's other consumer of
// the handshake family and needs the same kind of tree (nvme-cli, keyctl,
// ktls) but other modules: it shares the tree, with its own modules
// (nvmeModules).

// nfsTestPackages are the packages, relative to the module root, whose
// tests need the test bed's trixie programs and the ktls command.
var nfsTestPackages = []string{"interop/nfs", "interop/nvme"}

// testBedModules are, for each package of nfsTestPackages, the modules
// its guests load with their modules.dep closure.
var testBedModules = map[string][]string{
	"interop/nfs":  nfsModules,
	"interop/nvme": nvmeModules,
}

// nfsModules are the modules the test bed loads, with what they need
// (modules.dep): the NFS server and the NFSv4 client, and sunrpc with them,
// which does xprtsec= through the handshake family. The family itself
// (CONFIG_NET_HANDSHAKE) is built in where a kernel has it (6.12 and 7.x;
// 6.1 predates it).
var nfsModules = []string{"nfsd", "nfsv4"}

// nvmeModules are NVMe over TCP's: the host (nvme-tcp, with nvme-fabrics
// and, where it is a module, nvme-keyring for the .nvme keyring of PSKs)
// and the target (nvmet-tcp, with nvmet and configfs), and null_blk as the
// target's namespace. NVMe's TLS (CONFIG_NVME_TCP_TLS,
// CONFIG_NVME_TARGET_TCP_TLS) is built into those modules on Debian's
// 6.12 and 7.x kernels; 6.1 has neither it nor the handshake family.
var nvmeModules = []string{"nvme-tcp", "nvmet-tcp", "null_blk"}

// nfsDebs are the trixie packages of the programs in nfsPrograms.
var nfsDebs = []string{"nfs-kernel-server", "nfs-common", "ktls-utils", "keyutils", "nvme-cli"}

// nfsPrograms are the programs the guests get from nfsDebs, at these paths.
var nfsPrograms = []string{
	"/usr/sbin/rpc.nfsd", "/usr/sbin/rpc.mountd", "/usr/sbin/exportfs", // nfs-kernel-server
	"/usr/sbin/mount.nfs", // nfs-common
	"/usr/sbin/tlshd",     // ktls-utils: the reference handshake agent
	"/usr/bin/keyctl",     // keyutils: the kernel keyrings that tlshd and NFS use
	"/usr/sbin/nvme",      // nvme-cli: NVMe over TCP's connect and its TLS keys (interop/nvme)
}

const (
	// nfsSuite is the Debian release the test bed's programs come from.
	nfsSuite = "trixie"
	// nfsGuestRoot is where their tree lies in the guest.
	nfsGuestRoot = "/vmtest/trixie"
)

// needsNFS reports whether one of the packages needs the test bed.
func needsNFS(pkgs []testPkg) bool {
	return slices.ContainsFunc(pkgs, func(p testPkg) bool { return slices.Contains(nfsTestPackages, p.rel) })
}

// testBedModulesFor returns the modules that the packages' tests need
// beyond the common ones (testBedModules), each once.
func testBedModulesFor(pkgs []testPkg) []string {
	var mods []string
	for _, p := range pkgs {
		for _, m := range testBedModules[p.rel] {
			if !slices.Contains(mods, m) {
				mods = append(mods, m)
			}
		}
	}
	return mods
}

// parseDependsRecurse reads the output of `apt-cache depends --recurse`:
// each package's name on a line of its own, then its dependencies indented.
// It returns the package names, each once and sorted, without the virtual
// packages that apt shows in angle brackets.
func parseDependsRecurse(r io.Reader) []string {
	var names []string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, " ") || strings.HasPrefix(line, "<") {
			continue
		}
		names = append(names, strings.TrimSpace(line))
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// nfsPackageClosure returns what fetchNFSRoot downloads, each as
// "pkg/suite": nfsDebs and everything they depend on, recursively. Most of
// it is never copied into a guest: which libraries a program loads is read
// from the ELF files (addNFSTools), and a library whose package is not
// there stops the run. Taking every package, rather than guessing which
// hold libraries by their names (zlib1g does not start with lib), costs a
// one-time download (about 30 MB).
func nfsPackageClosure(a apt) ([]string, error) {
	args := append(a.opts(), "-o", "APT::Default-Release="+nfsSuite, "depends", "--recurse",
		"--no-recommends", "--no-suggests", "--no-conflicts", "--no-breaks", "--no-replaces", "--no-enhances")
	for _, p := range nfsDebs {
		args = append(args, p+"/"+nfsSuite)
	}
	out, err := output("", "apt-cache", args...)
	if err != nil {
		return nil, err
	}
	var pkgs []string
	for _, p := range parseDependsRecurse(strings.NewReader(out)) {
		pkgs = append(pkgs, p+"/"+nfsSuite)
	}
	for _, p := range nfsDebs {
		if !slices.Contains(pkgs, p+"/"+nfsSuite) {
			return nil, fmt.Errorf("vmtest: apt-cache depends names no %s in %s for %s", p, nfsSuite, a.arch.name)
		}
	}
	return pkgs, nil
}

// fetchNFSRoot returns the tree of the test bed's trixie packages for a's
// architecture under cacheDir/nfs-<arch>/, downloading and unpacking them
// the first time. A stamp file written last holds the packages of a
// complete unpacking; the dependencies are resolved again only when the
// list of nfsDebs changes.
func fetchNFSRoot(a apt, cacheDir string) (string, error) {
	dir := filepath.Join(cacheDir, "nfs-"+a.arch.name)
	stamp := filepath.Join(dir, ".vmtest-complete")
	key := strings.Join(nfsDebs, " ") + "\n"
	if b, err := os.ReadFile(stamp); err == nil && strings.HasPrefix(string(b), key) {
		return dir, nil
	}
	pkgs, err := nfsPackageClosure(a)
	if err != nil {
		return "", err
	}
	logf("downloading the NFS-over-TLS programs for %s: %d packages from %s", a.arch.name, len(pkgs), nfsSuite)
	if err := unpackDebs(a, dir, filepath.Join(cacheDir, "debs-nfs-"+a.arch.name), pkgs); err != nil {
		return "", err
	}
	// trixie's packages hold their files under /usr only; the links of the
	// merged /usr, which base-files makes on a Debian system, are made here,
	// so that the loader's path in the ELF files (/lib64/..., /lib/...)
	// resolves in the tree.
	for _, d := range []string{"bin", "sbin", "lib", "lib64"} {
		if _, err := os.Lstat(filepath.Join(dir, d)); err == nil {
			continue
		}
		if _, err := os.Stat(filepath.Join(dir, "usr", d)); err != nil {
			continue
		}
		if err := os.Symlink("usr/"+d, filepath.Join(dir, d)); err != nil {
			return "", fmt.Errorf("vmtest: %w", err)
		}
	}
	if err := os.WriteFile(stamp, []byte(key+strings.Join(pkgs, "\n")+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("vmtest: %w", err)
	}
	return dir, nil
}

// addNFSTools copies nfsPrograms with their libraries and loader from the
// tree under root to nfsGuestRoot in the archive, writes a wrapper at each
// program's own path that starts it with that loader and those libraries,
// and adds what the programs read or write outside their tree: libtirpc's
// /etc/netconfig, netbase's /etc/services and /etc/protocols, and
// /var/lib/nfs for exportfs and rpc.mountd.
func addNFSTools(a *archive, root string, ga *guestArch) error {
	tree := newArchive()
	interp := ""
	for _, p := range nfsPrograms {
		if err := tree.addForeignProgram(root, p, ga); err != nil {
			return err
		}
		real, err := resolveIn(root, p)
		if err != nil {
			return fmt.Errorf("vmtest: %s under %s: %w", p, root, err)
		}
		in, _, err := elfDeps(filepath.Join(root, real), ga.elfMachine)
		if err != nil {
			return err
		}
		if in == "" || (interp != "" && in != interp) {
			return fmt.Errorf("vmtest: %s under %s has the loader %q, not %q", p, root, in, interp)
		}
		interp = in
	}
	if err := a.addUnder(nfsGuestRoot, tree); err != nil {
		return err
	}
	var libPath []string
	for _, d := range ga.libDirs() {
		libPath = append(libPath, nfsGuestRoot+d)
	}
	for _, p := range nfsPrograms {
		if err := a.addBytes(p, 0o755, nfsWrapper(nfsGuestRoot+interp, strings.Join(libPath, ":"), p)); err != nil {
			return err
		}
	}
	// netconfig is libtirpc's (its transports); services and protocols are
	// netbase's: rpc.nfsd resolves its port as the service "nfs".
	for _, f := range []string{"etc/netconfig", "etc/services", "etc/protocols"} {
		if err := a.addFile(f, filepath.Join(root, f)); err != nil {
			return err
		}
	}
	// exportfs reads the table of exports it wrote before, which
	// nfs-kernel-server's installation creates empty.
	for _, f := range []string{"var/lib/nfs/etab", "var/lib/nfs/rmtab"} {
		if err := a.addBytes(f, 0o644, nil); err != nil {
			return err
		}
	}
	return nil
}

// nfsWrapper is the script at a trixie program's path in the guest. exec
// keeps the process: a test that starts the program and signals it signals
// the program itself.
func nfsWrapper(loader, libPath, prog string) []byte {
	return fmt.Appendf(nil, "#!/bin/sh\n# Written by internal/testing/vmtest: Debian %s's %s, run with its own loader and libraries.\nexec %s --library-path %s --argv0 %s %s \"$@\"\n",
		nfsSuite, path.Base(prog), loader, libPath, prog, nfsGuestRoot+prog)
}

// ktlsCommand is the project's command, whose `ktls tlshd` is the agent
// that the NFS tests are for (issue 15). Guests with the test bed get it
// built for their architecture at /usr/bin/ktls, so that the tests'
// KTLS_NFS_AGENT can name it (interop/nfs).
const ktlsCommand = "./cmd/ktls"

// addKTLSCommand builds ktlsCommand into outDir and adds it to the archive.
func addKTLSCommand(a *archive, root, outDir string, ga *guestArch) error {
	bin := filepath.Join(outDir, "ktls")
	if err := run(root, goEnv(ga), "go", "build", "-ldflags=-s -w", "-o", bin, ktlsCommand); err != nil {
		return err
	}
	return a.addFile("usr/bin/ktls", bin)
}
