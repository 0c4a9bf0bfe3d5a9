package main

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/ktls-go/ktls/internal/testing/vmtest/plan"
)

// testPkg is a package of the module with tests, built into a static test
// binary for the guests.
type testPkg struct {
	importPath string
	dir        string // on the host
	modDir     string // its module's directory on the host, where go test -c runs
	rel        string // relative to the module root, "." for the root
	binary     string // the test binary: its file name, then its path on the host once built
}

// guestPath is where the package's copy lies in the guest: the module's
// layout under /vmtest/src, so that paths relative to the package directory
// that stay inside the module (testdata/, a sibling package's testdata/)
// resolve as under `go test`.
func (p testPkg) guestDir() string { return path.Join("/vmtest/src", p.rel) }

func (p testPkg) guestBinary() string { return "/vmtest/bin/" + filepath.Base(p.binary) }

// binaryName is the file name of a package's test binary: the path relative
// to the repository root with slashes as dashes, unique within the
// repository; the root module's root package is named after the module.
func binaryName(module, rel string) string {
	if rel == "." {
		return path.Base(module) + ".test"
	}
	return strings.ReplaceAll(rel, "/", "-") + ".test"
}

// hostOnly reports whether a package belongs to the harness itself, whose
// tests run on the host with `go test`, not in the guests.
func hostOnly(rel string) bool {
	return rel == "internal/testing/vmtest" || strings.HasPrefix(rel, "internal/testing/vmtest/")
}

// listTestPackages lists the packages matched by the patterns that have test
// files, as `go list` sees them: from the module root, and from the
// directory of each nested module the patterns reach (splitPatterns).
func listTestPackages(root string, patterns []string) ([]testPkg, error) {
	module, err := output(root, "go", "list", "-m")
	if err != nil {
		return nil, err
	}
	module = strings.TrimSpace(module)
	mods, err := nestedModules(root)
	if err != nil {
		return nil, err
	}
	var pkgs []testPkg
	for _, l := range splitPatterns(module, mods, patterns) {
		modDir, modPath, prefix := root, module, ""
		if l.mod != nil {
			modDir, modPath, prefix = filepath.Join(root, filepath.FromSlash(l.mod.dir)), l.mod.path, l.mod.dir
		}
		args := append([]string{"list", "-f", `{{if or .TestGoFiles .XTestGoFiles}}{{.ImportPath}}{{"\t"}}{{.Dir}}{{end}}`}, l.patterns...)
		out, err := output(modDir, "go", args...)
		if err != nil {
			return nil, err
		}
		pkgs = append(pkgs, parseList(out, modDir, modPath, prefix)...)
	}
	return pkgs, nil
}

// parseList reads go list's "import path TAB directory" lines for the module
// modPath in modDir, whose directory is prefix below the repository root
// ("" for the root module). A package's rel is its directory relative to the
// repository root, so that its guest directory and binary name are unique
// across the modules.
func parseList(out, modDir, modPath, prefix string) []testPkg {
	var pkgs []testPkg
	for _, line := range strings.Split(out, "\n") {
		ip, dir, ok := strings.Cut(strings.TrimSpace(line), "\t")
		if !ok {
			continue
		}
		rel := path.Join(prefix, strings.TrimPrefix(strings.TrimPrefix(ip, modPath), "/"))
		if rel == "" {
			rel = "."
		}
		if hostOnly(rel) {
			continue
		}
		pkgs = append(pkgs, testPkg{importPath: ip, dir: dir, modDir: modDir, rel: rel, binary: binaryName(modPath, rel)})
	}
	return pkgs
}

// goEnv is the environment of every build for the guests: static binaries
// for the guests' architecture.
func goEnv(ga *guestArch) []string {
	return []string{"CGO_ENABLED=0", "GOOS=linux", "GOARCH=" + ga.name}
}

// buildAll builds the guest program and the test binaries for the
// architecture into outDir. It returns the packages with their binaries'
// paths; pkgs is left as it was, for the next architecture.
func buildAll(root, outDir string, pkgs []testPkg, ga *guestArch) (guest string, _ []testPkg, _ error) {
	start := time.Now()
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return "", nil, fmt.Errorf("vmtest: %w", err)
	}
	env := goEnv(ga)
	// Absolute: nested modules' test binaries are built in their own
	// directories.
	outDir, err := filepath.Abs(outDir)
	if err != nil {
		return "", nil, fmt.Errorf("vmtest: %w", err)
	}
	guest = filepath.Join(outDir, "guest")
	if err := run(root, env, "go", "build", "-o", guest, "./internal/testing/vmtest/guest"); err != nil {
		return "", nil, err
	}
	pkgs = slices.Clone(pkgs)
	for i := range pkgs {
		p := &pkgs[i]
		p.binary = filepath.Join(outDir, filepath.Base(p.binary))
		// -vet=off: vet is the host's job (go vet ./...), not the VM's.
		// -s -w: smaller binaries, a smaller initramfs; panics still show
		// function names and lines, which come from pclntab.
		// In the package's own module: a nested module's go.mod, not the
		// root's, decides its dependencies.
		if err := run(p.modDir, env, "go", "test", "-c", "-vet=off", "-ldflags=-s -w", "-o", p.binary, p.importPath); err != nil {
			return "", nil, err
		}
		// A package whose tests are all excluded by build tags gives no
		// binary and no error.
		if _, err := os.Stat(p.binary); err != nil {
			return "", nil, fmt.Errorf("vmtest: go test -c %s wrote no binary: %w", p.importPath, err)
		}
	}
	logf("built the guest program and %d test binaries for %s in %.1fs", len(pkgs), ga.name, time.Since(start).Seconds())
	return guest, pkgs, nil
}

// addPackageDir copies what a test binary may read from its package
// directory: the files directly in it, and testdata/ whole. Other
// subdirectories are other packages and are copied for their own tests.
func addPackageDir(a *archive, p testPkg) error {
	if err := a.addDir(p.guestDir(), 0o755); err != nil {
		return err
	}
	ents, err := os.ReadDir(p.dir)
	if err != nil {
		return fmt.Errorf("vmtest: %w", err)
	}
	for _, e := range ents {
		src := filepath.Join(p.dir, e.Name())
		switch {
		case e.Name() == "testdata" && e.IsDir():
			if err := a.addTreeAt(path.Join(p.guestDir(), "testdata"), src); err != nil {
				return err
			}
		case e.Type().IsRegular():
			if err := a.addFile(path.Join(p.guestDir(), e.Name()), src); err != nil {
				return err
			}
		}
	}
	return nil
}

// planTests returns the plan's entries for the packages.
func planTests(pkgs []testPkg) []plan.Test {
	var tests []plan.Test
	for _, p := range pkgs {
		tests = append(tests, plan.Test{Name: p.rel, Binary: p.guestBinary(), Dir: p.guestDir()})
	}
	return tests
}
