package main

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// Part of `apt-cache search --names-only` over bookworm, trixie and
// trixie-backports, as seen while writing the harness. 7.0.13 has an image
// metapackage and a signed binary but no modules package in the archive, so
// it cannot be booted with its modules and is not a release.
const searchOutput = `linux-binary-7.0.13+deb13-cloud-amd64 - Binary for Linux 7.0.13 (signed)
linux-binary-7.2.12+deb13-cloud-amd64 - Linux 7.2.12 for x86-64 cloud (kernel image)
linux-binary-7.3.4+deb13-cloud-amd64 - Linux 7.3.4 for x86-64 cloud (kernel image)
linux-binary-unsigned-7.2.12+deb13-cloud-amd64 - Linux 7.2.12 for x86-64 cloud (unsigned kernel image)
linux-binary-unsigned-7.3.4+deb13-cloud-amd64 - Linux 7.3.4 for x86-64 cloud (unsigned kernel image)
linux-image-6.1.0-47-cloud-amd64 - Linux 6.1 for x86-64 cloud (signed)
linux-image-6.1.0-47-cloud-amd64-dbg - Debug symbols for linux-image-6.1.0-47-cloud-amd64
linux-image-6.1.0-47-cloud-amd64-unsigned - Linux 6.1 for x86-64 cloud
linux-image-6.1.0-50-cloud-amd64 - Linux 6.1 for x86-64 cloud (signed)
linux-image-6.1.0-50-cloud-amd64-dbg - Debug symbols for linux-image-6.1.0-50-cloud-amd64
linux-image-6.1.0-50-cloud-amd64-unsigned - Linux 6.1 for x86-64 cloud
linux-image-6.12.107+deb13-cloud-amd64 - Linux 6.12 for x86-64 cloud (signed)
linux-image-6.12.107+deb13-cloud-amd64-unsigned - Linux 6.12 for x86-64 cloud
linux-image-6.12.94+deb13-cloud-amd64 - Linux 6.12 for x86-64 cloud (signed)
linux-image-6.12.94+deb13-cloud-amd64-unsigned - Linux 6.12 for x86-64 cloud
linux-image-6.18.15+deb13-cloud-amd64 - Linux 6.18 for x86-64 cloud (signed)
linux-image-7.0.13+deb13-cloud-amd64 - Linux 7.0.13 for x86-64 cloud
linux-image-7.2.12+deb13-cloud-amd64 - Linux 7.2.12 for x86-64 cloud
linux-image-7.3.4+deb13-cloud-amd64 - Linux 7.3.4 for x86-64 cloud
linux-image-7.3.4+deb13-cloud-amd64-dbg - Linux 7.3.4 for x86-64 cloud (debug symbols)
linux-image-cloud-amd64 - Linux for x86-64 cloud (meta-package)
linux-modules-7.2.12+deb13-cloud-amd64 - Linux 7.2.12 for x86-64 cloud (modules)
linux-modules-7.3.4+deb13-cloud-amd64 - Linux 7.3.4 for x86-64 cloud (modules)
linux-modules-cloud-amd64 - Linux modules for x86-64 cloud (meta-package)
`

func TestParseReleases(t *testing.T) {
	rels := parseReleases(parseSearch(strings.NewReader(searchOutput)), "cloud-amd64")
	got := map[string][]string{}
	var order []string
	for _, r := range rels {
		got[r.name] = r.pkgs
		order = append(order, r.name)
	}
	want := map[string][]string{
		"6.1.0-47-cloud-amd64":       {"linux-image-6.1.0-47-cloud-amd64-unsigned"},
		"6.1.0-50-cloud-amd64":       {"linux-image-6.1.0-50-cloud-amd64-unsigned"},
		"6.12.94+deb13-cloud-amd64":  {"linux-image-6.12.94+deb13-cloud-amd64-unsigned"},
		"6.12.107+deb13-cloud-amd64": {"linux-image-6.12.107+deb13-cloud-amd64-unsigned"},
		"6.18.15+deb13-cloud-amd64":  {"linux-image-6.18.15+deb13-cloud-amd64"},
		"7.2.12+deb13-cloud-amd64":   {"linux-binary-unsigned-7.2.12+deb13-cloud-amd64", "linux-modules-7.2.12+deb13-cloud-amd64"},
		"7.3.4+deb13-cloud-amd64":    {"linux-binary-unsigned-7.3.4+deb13-cloud-amd64", "linux-modules-7.3.4+deb13-cloud-amd64"},
	}
	if len(got) != len(want) {
		t.Errorf("releases %v, want %d of them", order, len(want))
	}
	for name, pkgs := range want {
		if !slices.Equal(got[name], pkgs) {
			t.Errorf("%s: packages %v, want %v", name, got[name], pkgs)
		}
	}
	wantOrder := []string{"6.1.0-47-cloud-amd64", "6.1.0-50-cloud-amd64", "6.12.94+deb13-cloud-amd64", "6.12.107+deb13-cloud-amd64",
		"6.18.15+deb13-cloud-amd64", "7.2.12+deb13-cloud-amd64", "7.3.4+deb13-cloud-amd64"}
	if !slices.Equal(order, wantOrder) {
		t.Errorf("order %v, want %v", order, wantOrder)
	}

	for sel, want := range map[string]string{
		"6.1":                  "6.1.0-50-cloud-amd64",
		"6.12":                 "6.12.107+deb13-cloud-amd64",
		"newest":               "7.3.4+deb13-cloud-amd64",
		"7.2":                  "7.2.12+deb13-cloud-amd64",
		"6.12.94":              "6.12.94+deb13-cloud-amd64",
		"6.1.0-47-cloud-amd64": "6.1.0-47-cloud-amd64",
	} {
		r, err := selectRelease(rels, sel)
		if err != nil || r.name != want {
			t.Errorf("selectRelease(%s) = %s, %v; want %s", sel, r.name, err, want)
		}
	}
	if r, err := selectRelease(rels, "5.10"); err == nil {
		t.Errorf("selectRelease(5.10) = %s, want an error", r.name)
	}
	if s := (release{name: "6.12.107+deb13-cloud-amd64", nums: []int{6, 12, 107, 13}}).series(); s != "6.12" {
		t.Errorf("series = %s", s)
	}
}

func TestKernelSelectors(t *testing.T) {
	got, err := kernelSelectors("all")
	if err != nil || !slices.Equal(got, []string{"6.1", "6.12", "newest"}) {
		t.Errorf("all = %v, %v", got, err)
	}
	got, err = kernelSelectors("6.12, newest")
	if err != nil || !slices.Equal(got, []string{"6.12", "newest"}) {
		t.Errorf("6.12,newest = %v, %v", got, err)
	}
	if got, err := kernelSelectors("6.12.94,6.1.0-47-cloud-amd64,6.1.0-50-cloud-arm64"); err != nil || len(got) != 3 {
		t.Errorf("versions and releases: %v, %v", got, err)
	}
	for _, bad := range []string{"", "6", "latest", "6.1.0.1", "6.1.0-47", "6.1.0-47-arm64", "cloud-arm64"} {
		if _, err := kernelSelectors(bad); err == nil {
			t.Errorf("kernelSelectors(%q) accepted", bad)
		}
	}
}

func TestArchiveURIFrom(t *testing.T) {
	for _, tc := range []struct {
		name, text, want string
	}{
		{"deb822 with security after", `Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
`, "http://deb.debian.org/debian"},
		{"deb822 security first", `Types: deb
URIs: http://security.debian.org/debian-security
Suites: trixie-security
Components: main

Types: deb deb-src
URIs: https://mirror.example.org/debian/
Suites: trixie trixie-updates
Components: main contrib
`, "https://mirror.example.org/debian"},
		{"deb822 disabled", "Types: deb\nURIs: http://a/debian\nSuites: bookworm\nEnabled: no\n", ""},
		{"one-line", "# comment\ndeb-src http://src/debian bookworm main\ndeb [arch=amd64 signed-by=/k.gpg] http://ftp.de.debian.org/debian/ bookworm main\n", "http://ftp.de.debian.org/debian"},
		{"one-line third party", "deb https://packages.cloud.google.com/apt cloud-sdk-bookworm main\n", ""},
		{"nodesource deb822", "Types: deb\nURIs: https://deb.nodesource.com/node_20.x\nSuites: nodistro\nComponents: main\n", ""},
	} {
		got, ok := archiveURIFrom(tc.text)
		if got != tc.want || ok != (tc.want != "") {
			t.Errorf("%s: archiveURIFrom = %q, %v; want %q", tc.name, got, ok, tc.want)
		}
	}
}

// Part of `apt-cache search --names-only` over the same suites for arm64
// (APT::Architecture=arm64): the generic and realtime flavours share the
// names' shape and must not be taken for the cloud one.
const searchOutputARM64 = `linux-image-6.1.0-50-arm64-unsigned - Linux 6.1 for 64-bit ARMv8 machines
linux-image-6.1.0-50-cloud-arm64-unsigned - Linux 6.1 for arm64 cloud
linux-image-6.1.0-50-rt-arm64-unsigned - Linux 6.1 for 64-bit ARMv8 machines, PREEMPT_RT
linux-image-6.1.0-47-cloud-arm64-unsigned - Linux 6.1 for arm64 cloud
linux-image-6.1.0-50-cloud-arm64 - Linux 6.1 for arm64 cloud (signed)
linux-image-6.12.107+deb13-cloud-arm64-unsigned - Linux 6.12 for arm64 cloud
linux-image-6.12.107+deb13-cloud-arm64 - Linux 6.12 for arm64 cloud (signed)
linux-binary-unsigned-7.3.4+deb13-arm64 - Linux 7.3.4 for 64-bit ARMv8 machines (unsigned kernel image)
linux-binary-unsigned-7.3.4+deb13-cloud-arm64 - Linux 7.3.4 for arm64 cloud (unsigned kernel image)
linux-binary-unsigned-7.3.4+deb13-rt-arm64 - Linux 7.3.4 for 64-bit ARMv8 machines (unsigned kernel image)
linux-modules-7.3.4+deb13-cloud-arm64 - Linux 7.3.4 for arm64 cloud (modules)
linux-modules-7.3.4+deb13-rt-arm64 - Linux 7.3.4 for 64-bit ARMv8 machines (modules)
linux-binary-7.3.4+deb13-cloud-arm64 - Linux 7.3.4 for arm64 cloud (kernel image)
linux-image-7.3.4+deb13-cloud-arm64 - Linux 7.3.4 for arm64 cloud
linux-image-7.3.4+deb13-rt-arm64 - Linux 7.3.4 for 64-bit ARMv8 machines, PREEMPT_RT
linux-image-cloud-arm64 - Linux for arm64 cloud (meta-package)
linux-image-6.1.0-50-cloud-amd64-unsigned - Linux 6.1 for x86-64 cloud
`

func TestParseReleasesARM64(t *testing.T) {
	rels := parseReleases(parseSearch(strings.NewReader(searchOutputARM64)), archARM64.flavour)
	var names []string
	for _, r := range rels {
		names = append(names, r.name)
	}
	wantNames := []string{"6.1.0-47-cloud-arm64", "6.1.0-50-cloud-arm64", "6.12.107+deb13-cloud-arm64", "7.3.4+deb13-cloud-arm64"}
	if !slices.Equal(names, wantNames) {
		t.Fatalf("releases %v, want %v", names, wantNames)
	}
	for sel, want := range map[string][]string{
		"6.1":                  {"linux-image-6.1.0-50-cloud-arm64-unsigned"},
		"6.12":                 {"linux-image-6.12.107+deb13-cloud-arm64-unsigned"},
		"newest":               {"linux-binary-unsigned-7.3.4+deb13-cloud-arm64", "linux-modules-7.3.4+deb13-cloud-arm64"},
		"6.1.0-47-cloud-arm64": {"linux-image-6.1.0-47-cloud-arm64-unsigned"},
	} {
		r, err := selectRelease(rels, sel)
		if err != nil || !slices.Equal(r.pkgs, want) {
			t.Errorf("selectRelease(%s) = %v, %v; want %v", sel, r.pkgs, err, want)
		}
		if r.flavour != "cloud-arm64" || r.nums[0] < 6 {
			t.Errorf("selectRelease(%s): flavour %q, numbers %v", sel, r.flavour, r.nums)
		}
	}
	if _, err := selectRelease(rels, "6.1.0-50-cloud-amd64"); err == nil || !strings.Contains(err.Error(), "cloud-arm64") {
		t.Errorf("an amd64 release among the arm64 ones: err = %v", err)
	}
	if got := (release{name: "6.1.0-50-cloud-arm64", flavour: "cloud-arm64", nums: releaseNums("6.1.0-50-cloud-arm64", "cloud-arm64")}); !slices.Equal(got.nums, []int{6, 1, 0, 50}) || got.series() != "6.1" {
		t.Errorf("release numbers %v, series %s", got.nums, got.series())
	}
}

func TestKernelSearch(t *testing.T) {
	re := regexp.MustCompile(kernelSearch(archARM64.flavour))
	for name, want := range map[string]bool{
		"linux-image-6.1.0-50-cloud-arm64-unsigned":     true,
		"linux-binary-unsigned-7.3.4+deb13-cloud-arm64": true,
		"linux-modules-7.3.4+deb13-cloud-arm64":         true,
		"linux-image-6.1.0-50-cloud-amd64-unsigned":     false,
		"linux-image-cloud-arm64":                       false,
		"linux-image-6.1.0-50-cloud-arm64-unsigned-dbg": false,
		"linux-headers-6.1.0-50-cloud-arm64":            false,
	} {
		if got := re.MatchString(name); got != want {
			t.Errorf("%s: match %v, want %v", name, got, want)
		}
	}
}

func TestPruneSeries(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"6.1.0-47-cloud-amd64", "6.1.0-47-cloud-arm64", "6.1.0-50-cloud-arm64", "6.1.0-51-cloud-arm64", "6.12.107+deb13-cloud-arm64"} {
		must(t, os.MkdirAll(filepath.Join(dir, n), 0o755))
	}
	pruneSeries(dir, release{name: "6.1.0-50-cloud-arm64", flavour: "cloud-arm64", nums: []int{6, 1, 0, 50}})
	var left []string
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		left = append(left, e.Name())
	}
	// The older arm64 6.1 goes; the amd64 one, a newer pinned one and
	// another series stay.
	if want := []string{"6.1.0-47-cloud-amd64", "6.1.0-50-cloud-arm64", "6.1.0-51-cloud-arm64", "6.12.107+deb13-cloud-arm64"}; !slices.Equal(left, want) {
		t.Errorf("left %v, want %v", left, want)
	}
}
