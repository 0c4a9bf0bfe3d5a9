package main

import (
	"bufio"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// The repository holds Go modules of its own below the root module's, each
// with its own go.mod: ktlsgrpc (so that the core's users do not get grpc-go
// in their module graph), benchmarks/report, acceptance. `go list ./...` in
// the root stops at their directories, so the harness finds them itself and
// lists their packages with `go list` run in each one's directory.

// nestedModule is a Go module of the repository other than the root's.
type nestedModule struct {
	dir  string // relative to the repository root, with slashes: "ktlsgrpc"
	path string // the module path: "github.com/ktls-go/ktls/ktlsgrpc"
}

// hostOnlyModules are the nested modules whose tests need no kernel: a
// wildcard pattern (./..., ./benchmarks/...) leaves them out, and scripts/test
// runs them on the host. A pattern that names one (-pkg ./benchmarks/report)
// still takes it into the guests.
var hostOnlyModules = map[string]string{
	"benchmarks/report": "the results tool: tables and plots from benchmark output",
	"acceptance":        "a program, without tests, that scripts/test runs",
}

// nestedModules returns the repository's nested modules: the go.mod files
// that git tracks below the root (an untracked go.mod, say in .cache, is no
// module of the repository), sorted by directory.
func nestedModules(root string) ([]nestedModule, error) {
	out, err := output(root, "git", "ls-files", "--", "*/go.mod")
	if err != nil {
		return nil, fmt.Errorf("%w (the harness finds the repository's nested modules with git)", err)
	}
	var mods []nestedModule
	for _, f := range strings.Fields(out) {
		mp, err := modulePath(filepath.Join(root, filepath.FromSlash(f)))
		if err != nil {
			return nil, err
		}
		mods = append(mods, nestedModule{dir: path.Dir(f), path: mp})
	}
	slices.SortFunc(mods, func(a, b nestedModule) int { return strings.Compare(a.dir, b.dir) })
	return mods, nil
}

// modulePath reads the module directive of a go.mod file (the Go modules
// reference, "module directive": `module path`, the path possibly quoted).
func modulePath(gomod string) (string, error) {
	f, err := os.Open(gomod)
	if err != nil {
		return "", fmt.Errorf("vmtest: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if i := strings.Index(line, "//"); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		rest, ok := strings.CutPrefix(line, "module")
		if !ok || rest == "" || (rest[0] != ' ' && rest[0] != '\t' && rest[0] != '"') {
			continue
		}
		rest = strings.TrimSpace(rest)
		if u, err := strconv.Unquote(rest); err == nil {
			rest = u
		}
		if rest != "" {
			return rest, nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("vmtest: %s: %w", gomod, err)
	}
	return "", fmt.Errorf("vmtest: %s has no module directive", gomod)
}

// listing is one `go list` to run: in the root module (mod == nil) or in a
// nested one, with patterns relative to that module's directory.
type listing struct {
	mod      *nestedModule
	patterns []string
}

// splitPatterns decides which module lists each -pkg pattern:
//
//   - a pattern inside a nested module's directory, as a relative path
//     (./ktlsgrpc, ./ktlsgrpc/...) or an import path
//     (github.com/ktls-go/ktls/ktlsgrpc/...), is listed in that module,
//     rewritten relative to it (., ./...);
//   - any other pattern is listed in the root module as given, and if it
//     ends in /... (./..., ./internal/...), every nested module below its
//     directory but the host-only ones is listed too, with ./...: the
//     repository's packages, not only the root module's.
//
// The root's listing comes first, then the nested modules' in directory
// order; a module appears once.
func splitPatterns(rootModule string, mods []nestedModule, patterns []string) []listing {
	var rootPats []string
	modPats := make(map[string][]string)
	add := func(m *nestedModule, p string) {
		if !slices.Contains(modPats[m.dir], p) {
			modPats[m.dir] = append(modPats[m.dir], p)
		}
	}
	for _, p := range patterns {
		rel, local := relPattern(rootModule, p)
		if !local {
			rootPats = append(rootPats, p)
			continue
		}
		base, wild := strings.CutSuffix(rel, "/...")
		if rel == "..." { // ./... and the root's path/...
			base, wild = ".", true
		}
		if m := innermost(mods, base); m != nil {
			inner := "."
			if base != m.dir {
				inner = "./" + strings.TrimPrefix(base, m.dir+"/")
			}
			if wild {
				inner += "/..."
			}
			add(m, inner)
			continue
		}
		rootPats = append(rootPats, p)
		if !wild {
			continue
		}
		for i := range mods {
			m := &mods[i]
			if _, hostOnly := hostOnlyModules[m.dir]; hostOnly {
				continue
			}
			if base == "." || strings.HasPrefix(m.dir+"/", base+"/") {
				add(m, "./...")
			}
		}
	}
	var ls []listing
	if len(rootPats) > 0 {
		ls = append(ls, listing{patterns: rootPats})
	}
	for i := range mods {
		if ps := modPats[mods[i].dir]; len(ps) > 0 {
			ls = append(ls, listing{mod: &mods[i], patterns: ps})
		}
	}
	return ls
}

// relPattern returns a pattern as a clean path relative to the repository
// root ("." for the root, "..." for all below it, "ktlsgrpc/..."), for a relative path
// pattern or an import path pattern within the root module's path; local is
// false for any other pattern (std, all, another module's path), which the
// root's go list interprets.
func relPattern(rootModule, p string) (rel string, local bool) {
	switch {
	case p == "." || p == ".." || strings.HasPrefix(p, "./") || strings.HasPrefix(p, "../"):
		rel = path.Clean(p)
		if rel == ".." || strings.HasPrefix(rel, "../") {
			return "", false
		}
		return rel, true
	case p == rootModule:
		return ".", true
	case strings.HasPrefix(p, rootModule+"/"):
		return path.Clean(strings.TrimPrefix(p, rootModule+"/")), true
	}
	return "", false
}

// innermost returns the nested module whose directory holds dir (or is dir),
// the deepest one if modules nest; nil if dir is in the root module's part
// of the tree.
func innermost(mods []nestedModule, dir string) *nestedModule {
	var best *nestedModule
	for i := range mods {
		m := &mods[i]
		if (dir == m.dir || strings.HasPrefix(dir, m.dir+"/")) && (best == nil || len(m.dir) > len(best.dir)) {
			best = m
		}
	}
	return best
}
