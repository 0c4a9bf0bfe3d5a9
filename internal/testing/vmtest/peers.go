package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// peers are the real TLS programs the interop tests run against inside the
// guests, with their libraries. On the host's architecture they are the
// host's own programs (initramfs.go, addPeers); for another architecture
// they come from that architecture's Debian packages: the packages that
// hold the host's peers and their libraries, by the same names, from the
// host's Debian release, unpacked with dpkg-deb -x into a tree in the cache
// (fetchForeignRoot). busybox-static comes the same way.
var peers = []string{"openssl", "gnutls-cli", "gnutls-serv", "curl"}

// opensslDirRE reads a directory from `openssl version -d -m -e`, e.g.
// `OPENSSLDIR: "/usr/lib/ssl"`.
var opensslDirRE = regexp.MustCompile(`(?m)^(OPENSSLDIR|MODULESDIR|ENGINESDIR): "([^"]*)"`)

// opensslDirs returns the host's OpenSSL directories by kind: OPENSSLDIR
// (the configuration, and the CA certificates through its certs link),
// MODULESDIR and ENGINESDIR (the provider and engine modules, which it loads
// with dlopen, so ldd cannot see them).
func opensslDirs() (map[string]string, error) {
	out, err := output("", "openssl", "version", "-d", "-m", "-e")
	if err != nil {
		return nil, err
	}
	dirs := map[string]string{}
	for _, m := range opensslDirRE.FindAllStringSubmatch(out, -1) {
		dirs[m[1]] = m[2]
	}
	return dirs, nil
}

// hostPeerFiles returns the host's peer programs and every file they load:
// their shared libraries and the loader (by ldd), and OpenSSL's modules with
// theirs. These are the files whose packages a foreign architecture's peers
// are taken from.
func hostPeerFiles() ([]string, error) {
	var progs []string
	for _, name := range peers {
		p, err := exec.LookPath(name)
		if err != nil {
			return nil, fmt.Errorf("vmtest: peer %s: %w", name, err)
		}
		progs = append(progs, p)
	}
	dirs, err := opensslDirs()
	if err != nil {
		return nil, err
	}
	for _, kind := range []string{"MODULESDIR", "ENGINESDIR"} {
		sos, _ := filepath.Glob(filepath.Join(dirs[kind], "*.so"))
		progs = append(progs, sos...)
	}
	files := slices.Clone(progs)
	for _, p := range progs {
		out, err := output("", "ldd", p)
		if err != nil {
			return nil, err
		}
		libs, err := parseLdd(strings.NewReader(out))
		if err != nil {
			return nil, fmt.Errorf("vmtest: ldd %s: %w", p, err)
		}
		files = append(files, libs...)
	}
	slices.Sort(files)
	return slices.Compact(files), nil
}

// usrToggled returns the other spelling of a path on a merged-/usr system:
// ldd says /lib/x86_64-linux-gnu/libssl.so.3 where dpkg has the file as
// /usr/lib/x86_64-linux-gnu/libssl.so.3, or the other way round.
func usrToggled(p string) string {
	if rest, ok := strings.CutPrefix(p, "/usr/"); ok {
		return "/" + rest
	}
	return "/usr" + p
}

// parseDpkgSearch reads the output of `dpkg-query -S PATH...`: lines
// "pkg[:arch][, pkg[:arch]...]: path". It returns the packages of each path,
// without their architecture. Diversion lines are skipped.
func parseDpkgSearch(r io.Reader) map[string][]string {
	owners := map[string][]string{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "diversion by ") {
			continue
		}
		pkgs, p, ok := strings.Cut(line, ": ")
		if !ok {
			continue
		}
		for _, pkg := range strings.Split(pkgs, ",") {
			pkg, _, _ = strings.Cut(strings.TrimSpace(pkg), ":")
			if pkg != "" && !slices.Contains(owners[p], pkg) {
				owners[p] = append(owners[p], pkg)
			}
		}
	}
	return owners
}

// packagesOf returns, sorted and each once, the Debian packages that own the
// files, by owners (parseDpkgSearch of the files, their /usr-toggled
// spellings and their link targets), and the files that no package owns.
func packagesOf(files []string, owners map[string][]string, realpath func(string) string) (pkgs, unowned []string) {
	for _, f := range files {
		var found []string
		for _, p := range []string{f, usrToggled(f), realpath(f), usrToggled(realpath(f))} {
			if found = owners[p]; len(found) > 0 {
				break
			}
		}
		if len(found) == 0 {
			unowned = append(unowned, f)
			continue
		}
		pkgs = append(pkgs, found...)
	}
	slices.Sort(pkgs)
	return slices.Compact(pkgs), unowned
}

// hostPeerPackages returns the names of the Debian packages that hold the
// host's peers and what they load.
func hostPeerPackages() ([]string, error) {
	files, err := hostPeerFiles()
	if err != nil {
		return nil, err
	}
	realpath := func(p string) string {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			return r
		}
		return p
	}
	var queries []string
	for _, f := range files {
		queries = append(queries, f, usrToggled(f), realpath(f), usrToggled(realpath(f)))
	}
	slices.Sort(queries)
	queries = slices.Compact(queries)
	// dpkg-query exits 1 when some path has no owner, which is expected for
	// the spellings that dpkg does not use; what it found is on stdout.
	cmd := exec.Command("dpkg-query", append([]string{"-S"}, queries...)...)
	out, err := cmd.Output()
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		return nil, fmt.Errorf("vmtest: dpkg-query -S: %w", err)
	}
	pkgs, unowned := packagesOf(files, parseDpkgSearch(strings.NewReader(string(out))), realpath)
	if len(unowned) > 0 {
		return nil, fmt.Errorf("vmtest: no Debian package owns %s, so the peers of other architectures cannot be found by package", strings.Join(unowned, ", "))
	}
	return pkgs, nil
}

// osReleaseCodename reads VERSION_CODENAME from the text of os-release(5).
func osReleaseCodename(text string) string {
	for _, line := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "VERSION_CODENAME="); ok {
			return strings.Trim(v, `"'`)
		}
	}
	return ""
}

// hostCodename is the host's Debian release, e.g. "bookworm": the foreign
// architectures' peers come from it, so that their package names are those
// of the host's.
func hostCodename() (string, error) {
	b, err := os.ReadFile("/etc/os-release")
	if err != nil {
		return "", fmt.Errorf("vmtest: %w", err)
	}
	c := osReleaseCodename(string(b))
	if c == "" || !slices.Contains(debianCodenames, c) {
		return "", fmt.Errorf("vmtest: /etc/os-release names no Debian release (VERSION_CODENAME=%q): the peers of other architectures come from the host's release", c)
	}
	return c, nil
}

// foreignPackages returns what fetchForeignRoot downloads: the host's
// peers' packages and busybox-static, each from the suite.
func foreignPackages(peerPkgs []string, suite string) []string {
	names := slices.Sorted(slices.Values(append(slices.Clone(peerPkgs), "busybox-static")))
	var out []string
	for _, p := range slices.Compact(names) {
		out = append(out, p+"/"+suite)
	}
	return out
}

// fetchForeignRoot returns the tree of a's architecture's busybox and peers
// under cacheDir/root-<arch>/, downloading and unpacking the packages the
// first time, and again when the host's peers come from other packages. A
// stamp file written last lists the packages of a complete unpacking.
func fetchForeignRoot(a apt, cacheDir string, suite string) (string, error) {
	peerPkgs, err := hostPeerPackages()
	if err != nil {
		return "", err
	}
	pkgs := foreignPackages(peerPkgs, suite)
	dir := filepath.Join(cacheDir, "root-"+a.arch.name)
	stamp := filepath.Join(dir, ".vmtest-complete")
	want := strings.Join(pkgs, "\n") + "\n"
	if b, err := os.ReadFile(stamp); err == nil && string(b) == want {
		return dir, nil
	}
	logf("downloading busybox and the peers for %s: %d packages from %s", a.arch.name, len(pkgs), suite)
	if err := unpackDebs(a, dir, filepath.Join(cacheDir, "debs-"+a.arch.name), pkgs); err != nil {
		return "", err
	}
	if err := os.WriteFile(stamp, []byte(want), 0o644); err != nil {
		return "", fmt.Errorf("vmtest: %w", err)
	}
	return dir, nil
}

// unpackDebs downloads the packages (names with their suite, "pkg/suite")
// into the directory debs and unpacks them with dpkg-deb -x into a new tree
// dir; both directories are emptied first, and debs is removed at the end.
func unpackDebs(a apt, dir, debs string, pkgs []string) error {
	for _, d := range []string{dir, debs} {
		if err := os.RemoveAll(d); err != nil {
			return fmt.Errorf("vmtest: %w", err)
		}
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("vmtest: %w", err)
		}
	}
	if err := a.download(debs, pkgs...); err != nil {
		return err
	}
	files, _ := filepath.Glob(filepath.Join(debs, "*.deb"))
	if len(files) != len(pkgs) {
		return fmt.Errorf("vmtest: apt-get download of %d packages left %d .deb files in %s", len(pkgs), len(files), debs)
	}
	for _, f := range files {
		if err := run("", nil, "dpkg-deb", "-x", f, dir); err != nil {
			return err
		}
	}
	return os.RemoveAll(debs)
}
