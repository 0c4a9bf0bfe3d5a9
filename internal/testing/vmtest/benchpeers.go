package main

import (
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// benchPackage is the package, relative to the module root, whose
// BenchmarkProxy runs the proxies of benchPeers (benchmarks/proxy_test.go).
const benchPackage = "benchmarks"

// benchPeers are the TLS-terminating proxies that BenchmarkProxy compares
// with `ktls proxy`: the host's programs, each one binary with the
// libraries ldd names. They are optional: a host without one ships the
// others, and the benchmark skips its rows. nginx loads its stream module
// with load_module, which ldd cannot see (benchNginxModules).
var benchPeers = []string{"stunnel4", "hitch", "haproxy", "nginx"}

// benchNginxModules is Debian's directory of nginx's dynamic modules
// (libnginx-mod-stream puts ngx_stream_module.so there); benchNginxFiles are
// the other files of nginx's that a guest gets, should a configuration
// include them.
const benchNginxModules = "/usr/lib/nginx/modules"

var benchNginxFiles = []string{"/etc/nginx/mime.types"}

// benchRun reports whether this run runs benchmarks (-bench) of
// benchPackage: only then do the guests get the proxies and the ktls
// command, so that the test matrix, which runs the package's tests alone,
// boots no larger initramfs. It reads the -bench flag, which a go test of
// this package does not have.
func benchRun(pkgs []testPkg) (testPkg, bool) {
	f := flag.Lookup("bench")
	if f == nil || f.Value.String() == "" {
		return testPkg{}, false
	}
	for _, p := range pkgs {
		if p.rel == benchPackage {
			return p, true
		}
	}
	return testPkg{}, false
}

// addBenchPeers adds, in a run of benchPackage's benchmarks, the ktls
// command (built for ga into outDir, at /usr/bin/ktls, as for the NFS test
// bed) and, on the host's architecture, the host's benchPeers with their
// libraries and nginx's modules. Another architecture's guests get ktls
// only: their proxies would have to come from that architecture's packages
// (fetchForeignRoot), which this optional benchmark does not download.
func addBenchPeers(a *archive, pkgs []testPkg, outDir string, ga *guestArch) error {
	p, ok := benchRun(pkgs)
	if !ok {
		return nil
	}
	root := filepath.Clean(strings.TrimSuffix(p.dir, p.rel))
	if err := addKTLSCommand(a, root, outDir, ga); err != nil {
		return err
	}
	if !ga.native() {
		logf("%s: the benchmark proxies (%s) are shipped on the host's architecture only; BenchmarkProxy skips them", ga.name, strings.Join(benchPeers, ", "))
		return nil
	}
	var shipped, missing []string
	for _, name := range benchPeers {
		prog := lookHostProgram(name)
		if prog == "" {
			missing = append(missing, name)
			continue
		}
		if err := a.addProgram(prog); err != nil {
			return err
		}
		shipped = append(shipped, name)
		if name != "nginx" {
			continue
		}
		mods, _ := filepath.Glob(filepath.Join(benchNginxModules, "*.so"))
		for _, m := range mods {
			if err := a.addProgram(m); err != nil {
				return err
			}
		}
		for _, f := range benchNginxFiles {
			if _, err := os.Stat(f); err == nil {
				if err := a.addHostPath(f); err != nil {
					return err
				}
			}
		}
	}
	logf("benchmark proxies shipped: %s; not on the host: %s", orNone(shipped), orNone(missing))
	return nil
}

// lookHostProgram finds name in $PATH or /usr/sbin (not in every user's
// $PATH); "" if neither has it.
func lookHostProgram(name string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	p := filepath.Join("/usr/sbin", name)
	if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
		return p
	}
	return ""
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}
