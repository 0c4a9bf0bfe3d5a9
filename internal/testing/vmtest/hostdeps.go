package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
)

// hostNeed is a Debian package the harness needs on the host, and the file
// whose presence shows it is there. Checking files rather than dpkg's
// database accepts an equivalent already in place (busybox instead of
// busybox-static: the initramfs takes a dynamic busybox's libraries along).
type hostNeed struct {
	pkg   string
	files []string
}

// hostNeeds returns what the harness needs on the host to run guests of the
// architectures: each one's qemu; busybox for the host's own architecture
// (the others' comes from their Debian package, peers.go); and the peers,
// which the host's architecture copies and the others take the packages of.
func hostNeeds(arches []*guestArch) []hostNeed {
	var needs []hostNeed
	for _, ga := range arches {
		needs = append(needs, hostNeed{ga.qemuPkg, []string{ga.qemu}})
		if ga.native() {
			needs = append(needs, hostNeed{"busybox-static", []string{"/bin/busybox"}})
		}
	}
	return append(needs,
		hostNeed{"kmod", []string{"depmod"}},
		hostNeed{"xz-utils", []string{"xz"}},
		hostNeed{"openssl", []string{"openssl"}},
		hostNeed{"gnutls-bin", []string{"gnutls-cli", "gnutls-serv"}},
		hostNeed{"curl", []string{"curl"}},
		// apt-get, apt-cache, dpkg-deb, dpkg-query and ldd are part of every
		// Debian system.
	)
}

// missingPackages returns the packages of needs whose files are not found.
func missingPackages(needs []hostNeed, have func(string) bool) []string {
	var missing []string
	for _, n := range needs {
		for _, f := range n.files {
			if !have(f) {
				missing = append(missing, n.pkg)
				break
			}
		}
	}
	return missing
}

// haveFile reports whether a command is on the PATH (or in an sbin
// directory), or an absolute path exists.
func haveFile(f string) bool {
	if strings.HasPrefix(f, "/") {
		_, err := os.Stat(f)
		return err == nil
	}
	if _, err := exec.LookPath(f); err == nil {
		return true
	}
	return sbin(f) != f
}

// ensureHostPackages installs what the harness needs and the host lacks.
// apt-get update runs first only when apt knows no candidate for one of them:
// on a machine whose lists are current it would only cost time.
func ensureHostPackages(needs []hostNeed) error {
	missing := missingPackages(needs, haveFile)
	if len(missing) == 0 {
		return nil
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("vmtest: missing packages %s; installing them needs root: sudo apt-get install -y %s",
			strings.Join(missing, " "), strings.Join(missing, " "))
	}
	logf("installing %s", strings.Join(missing, " "))
	out, _ := exec.Command("apt-cache", append([]string{"policy"}, missing...)...).Output()
	if unknown := withoutCandidate(strings.NewReader(string(out)), missing); len(unknown) > 0 {
		logf("apt has no candidate for %s: running apt-get update", strings.Join(unknown, " "))
		if err := run("", nil, "apt-get", "-q", "update"); err != nil {
			return err
		}
	}
	env := []string{"DEBIAN_FRONTEND=noninteractive"}
	args := append([]string{"-q", "install", "-y", "--no-install-recommends"}, missing...)
	if err := run("", env, "apt-get", args...); err != nil {
		return err
	}
	if still := missingPackages(needs, haveFile); len(still) > 0 {
		return fmt.Errorf("vmtest: still missing after apt-get install: %s", strings.Join(still, " "))
	}
	return nil
}

// withoutCandidate reads `apt-cache policy PKG...` and returns the packages
// of pkgs that apt cannot install: those it does not list at all (it only
// warns "Unable to locate package" on stderr) and those whose candidate is
// "(none)".
func withoutCandidate(policy io.Reader, pkgs []string) []string {
	candidate := map[string]string{}
	var cur string
	sc := bufio.NewScanner(policy)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, " ") && strings.HasSuffix(line, ":") {
			cur = strings.TrimSuffix(line, ":")
			continue
		}
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "Candidate:"); ok && cur != "" {
			candidate[cur] = strings.TrimSpace(v)
		}
	}
	var unknown []string
	for _, p := range pkgs {
		if c, ok := candidate[p]; !ok || c == "(none)" || c == "" {
			unknown = append(unknown, p)
		}
	}
	return unknown
}
