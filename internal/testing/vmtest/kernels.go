package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// kernelSearch returns the regular expression that matches the names of the
// packages that carry a kernel of the flavour (guestArch.flavour), in both
// of Debian's layouts: linux-image-<release>[-unsigned] (bookworm, trixie)
// and, from 7.x, linux-binary[-unsigned]-<release> plus
// linux-modules-<release>.
func kernelSearch(flavour string) string {
	return `^linux-(image|binary|binary-unsigned|modules)-[0-9].*-` + regexp.QuoteMeta(flavour) + `(-unsigned)?$`
}

// release is one kernel release that the archive offers, with the packages
// to download for it.
type release struct {
	name string // as uname -r will say, e.g. "6.1.0-50-cloud-amd64"
	// flavour is the Debian kernel flavour, the end of name: "cloud-amd64".
	flavour string
	nums    []int // the numbers in name, for ordering: 6 1 0 50
	pkgs    []string
}

// series returns "major.minor", e.g. "6.1".
func (r release) series() string {
	if len(r.nums) < 2 {
		return r.name
	}
	return fmt.Sprintf("%d.%d", r.nums[0], r.nums[1])
}

var (
	digits    = regexp.MustCompile(`[0-9]+`)
	seriesRE  = regexp.MustCompile(`^[0-9]+\.[0-9]+$`)
	versionRE = regexp.MustCompile(`^[0-9]+\.[0-9]+\.[0-9]+$`)
)

// parseReleases groups package names (from apt-cache search) by kernel
// release and decides, for each release, what to download: an unsigned
// image package when there is one (it needs no shim and carries the modules
// too), else the image and modules packages of the split layout, else a
// signed image package. The kernel image is the same code either way; the
// signature only matters to a Secure Boot loader, which qemu's -kernel is
// not. Debug-symbol packages are ignored, and so are the packages of other
// flavours.
func parseReleases(names []string, flavour string) []release {
	type has struct{ imageUnsigned, image, binaryUnsigned, binary, modules bool }
	found := map[string]*has{}
	get := func(rel string) *has {
		if found[rel] == nil {
			found[rel] = &has{}
		}
		return found[rel]
	}
	for _, n := range names {
		switch {
		case strings.HasSuffix(n, "-dbg"):
		case strings.HasPrefix(n, "linux-image-") && strings.HasSuffix(n, "-"+flavour+"-unsigned"):
			get(strings.TrimSuffix(strings.TrimPrefix(n, "linux-image-"), "-unsigned")).imageUnsigned = true
		case strings.HasSuffix(n, "-unsigned"):
		case strings.HasPrefix(n, "linux-image-"):
			get(strings.TrimPrefix(n, "linux-image-")).image = true
		case strings.HasPrefix(n, "linux-binary-unsigned-"):
			get(strings.TrimPrefix(n, "linux-binary-unsigned-")).binaryUnsigned = true
		case strings.HasPrefix(n, "linux-binary-"):
			get(strings.TrimPrefix(n, "linux-binary-")).binary = true
		case strings.HasPrefix(n, "linux-modules-"):
			get(strings.TrimPrefix(n, "linux-modules-")).modules = true
		}
	}
	var rels []release
	for name, h := range found {
		if !strings.HasSuffix(name, "-"+flavour) || name == flavour || !strings.ContainsAny(name[:1], "0123456789") {
			continue
		}
		r := release{name: name, flavour: flavour, nums: releaseNums(name, flavour)}
		switch {
		case h.imageUnsigned:
			r.pkgs = []string{"linux-image-" + name + "-unsigned"}
		case h.binaryUnsigned && h.modules:
			r.pkgs = []string{"linux-binary-unsigned-" + name, "linux-modules-" + name}
		case h.binary && h.modules:
			r.pkgs = []string{"linux-binary-" + name, "linux-modules-" + name}
		case h.image && !h.binary:
			// From 7.x linux-image-<release> is an empty package that
			// depends on linux-binary and linux-modules; before, it is the
			// whole kernel.
			r.pkgs = []string{"linux-image-" + name}
		default:
			continue
		}
		rels = append(rels, r)
	}
	slices.SortFunc(rels, func(a, b release) int { return slices.Compare(a.nums, b.nums) })
	return rels
}

// releaseNums returns the numbers in a release name of the flavour, for
// ordering: "6.1.0-50-cloud-amd64" gives 6 1 0 50.
func releaseNums(name, flavour string) []int {
	var nums []int
	for _, d := range digits.FindAllString(strings.TrimSuffix(name, "-"+flavour), -1) {
		n, _ := strconv.Atoi(d)
		nums = append(nums, n)
	}
	return nums
}

// kernelSelectors expands the -kernel flag: a comma list of "major.minor"
// series, "major.minor.patch" versions, exact release names such as
// "6.12.94+deb13-cloud-amd64" or "6.1.0-50-cloud-arm64" (to pin one, e.g.
// to tell a kernel's bug from the project's; it applies to its own
// architecture only, see selectorsFor), and "newest"; "all" is the matrix of
// docs/ARCHITECTURE.md (6.1 LTS, 6.12, the newest). The same selectors apply to every
// architecture that -arch chooses.
func kernelSelectors(flag string) ([]string, error) {
	var sels []string
	for _, s := range strings.Split(flag, ",") {
		s = strings.TrimSpace(s)
		switch {
		case s == "all":
			sels = append(sels, "6.1", "6.12", "newest")
		case s == "newest" || seriesRE.MatchString(s) || versionRE.MatchString(s) || isRelease(s):
			sels = append(sels, s)
		default:
			return nil, fmt.Errorf("vmtest: -kernel %q: want 6.1, 6.12, newest, all or another major.minor, comma separated", s)
		}
	}
	return sels, nil
}

// isRelease reports whether s is the exact release name of a kernel of one
// of the guests' flavours.
func isRelease(s string) bool {
	return slices.ContainsFunc(allArches, func(a *guestArch) bool {
		return strings.HasSuffix(s, "-"+a.flavour) && strings.ContainsAny(s[:1], "0123456789")
	})
}

// selectRelease picks, among rels (sorted oldest first), the newest release
// that sel names: all for "newest", a series, a version, or one release.
func selectRelease(rels []release, sel string) (release, error) {
	for i := len(rels) - 1; i >= 0; i-- {
		r := rels[i]
		switch {
		case sel == "newest", r.series() == sel, r.name == sel,
			versionRE.MatchString(sel) && len(r.nums) >= 3 && fmt.Sprintf("%d.%d.%d", r.nums[0], r.nums[1], r.nums[2]) == sel:
			return r, nil
		}
	}
	what := "kernel"
	if len(rels) > 0 {
		what = rels[0].flavour + " kernel"
	}
	return release{}, fmt.Errorf("vmtest: the archive has no %s %s", what, sel)
}

// kernel is a kernel ready to boot.
type kernel struct {
	arch    *guestArch
	name    string // "linux-6.1", "linux-arm64-6.1": the name in output lines
	release string // uname -r
	image   string // the bzImage
	modDir  string // lib/modules/<release>, with modules.dep
}

// fetchKernel returns the kernel of rel, downloading and unpacking its
// packages under cacheDir/kernels/<release> the first time. A stamp file
// written last marks a complete unpacking, so an interrupted run is redone.
func fetchKernel(a apt, cacheDir string, rel release) (kernel, error) {
	ga := a.arch
	dir := filepath.Join(cacheDir, "kernels", rel.name)
	stamp := filepath.Join(dir, ".vmtest-complete")
	if _, err := os.Stat(stamp); err != nil {
		if err := unpackKernel(a, cacheDir, dir, rel); err != nil {
			return kernel{}, err
		}
		if err := os.WriteFile(stamp, []byte(strings.Join(rel.pkgs, "\n")+"\n"), 0o644); err != nil {
			return kernel{}, fmt.Errorf("vmtest: %w", err)
		}
		pruneSeries(filepath.Join(cacheDir, "kernels"), rel)
	}
	k := kernel{arch: ga, name: ga.kernelName(rel.series()), release: rel.name}
	// bookworm and trixie ship boot/vmlinuz-<release>; the split packages of
	// 7.x ship usr/lib/modules/<release>/vmlinuz (vmlinuz.unsigned in the
	// unsigned one).
	for _, pattern := range []string{"boot/vmlinuz-*", "usr/lib/modules/*/vmlinuz*", "lib/modules/*/vmlinuz*"} {
		if m, _ := filepath.Glob(filepath.Join(dir, pattern)); len(m) > 0 {
			k.image = m[0]
			break
		}
	}
	for _, d := range []string{"lib/modules", "usr/lib/modules"} {
		md := filepath.Join(dir, d, rel.name)
		if _, err := os.Stat(filepath.Join(md, "modules.dep")); err == nil {
			k.modDir = md
		}
	}
	if k.image == "" || k.modDir == "" {
		return kernel{}, fmt.Errorf("vmtest: %s: no kernel image or no modules.dep under %s (remove it to download again)", rel.name, dir)
	}
	return k, nil
}

func unpackKernel(a apt, cacheDir, dir string, rel release) error {
	logf("downloading %s", strings.Join(rel.pkgs, ", "))
	debs := filepath.Join(cacheDir, "debs")
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("vmtest: %w", err)
	}
	for _, d := range []string{debs, dir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("vmtest: %w", err)
		}
	}
	if err := a.download(debs, rel.pkgs...); err != nil {
		return err
	}
	for _, p := range rel.pkgs {
		files, _ := filepath.Glob(filepath.Join(debs, p+"_*.deb"))
		if len(files) == 0 {
			return fmt.Errorf("vmtest: apt-get download %s left no .deb in %s", p, debs)
		}
		for _, f := range files {
			if err := run("", nil, "dpkg-deb", "-x", f, dir); err != nil {
				return err
			}
			// The unpacked tree is the cache; the .deb is not needed again.
			os.Remove(f)
		}
	}
	// Debian's packages do not ship modules.dep: the postinst runs depmod.
	// depmod -b ROOT reads ROOT/lib/modules/<release>, so for the
	// usr/lib/modules layout ROOT is the usr directory (README.md).
	for _, base := range []string{dir, filepath.Join(dir, "usr")} {
		if _, err := os.Stat(filepath.Join(base, "lib/modules", rel.name)); err == nil {
			logf("depmod for %s", rel.name)
			return run("", nil, sbin("depmod"), "-b", base, rel.name)
		}
	}
	return fmt.Errorf("vmtest: %s: the packages have no lib/modules/%s", rel.name, rel.name)
}

// pruneSeries removes the unpacked older releases of rel's series and
// flavour: when the archive moves to a new ABI, the old one is of no further
// use. Newer ones stay: rel may be an older release pinned with -kernel; and
// so do the other architectures' kernels.
func pruneSeries(kernelsDir string, rel release) {
	entries, _ := os.ReadDir(kernelsDir)
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), "-"+rel.flavour) {
			continue
		}
		other := release{name: e.Name(), nums: releaseNums(e.Name(), rel.flavour)}
		if other.series() == rel.series() && slices.Compare(other.nums, rel.nums) < 0 {
			logf("removing %s, superseded by %s", e.Name(), rel.name)
			os.RemoveAll(filepath.Join(kernelsDir, e.Name()))
		}
	}
}

// sbin finds an administrator's command that may not be on a user's PATH.
func sbin(name string) string {
	for _, d := range []string{"/usr/sbin", "/sbin"} {
		p := filepath.Join(d, name)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return name
}

var errNoKernels = errors.New("vmtest: no kernel selected")

// resolveKernels turns the selectors into releases of a's architecture,
// newest release of each series, each once.
func resolveKernels(a apt, sels []string) ([]release, error) {
	if len(sels) == 0 {
		return nil, errNoKernels
	}
	names, err := a.search(kernelSearch(a.arch.flavour))
	if err != nil {
		return nil, err
	}
	rels := parseReleases(names, a.arch.flavour)
	var picked []release
	for _, s := range sels {
		r, err := selectRelease(rels, s)
		if err != nil {
			return nil, err
		}
		if !slices.ContainsFunc(picked, func(p release) bool { return p.name == r.name }) {
			picked = append(picked, r)
		}
	}
	return picked, nil
}
