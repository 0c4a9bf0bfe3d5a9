package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"testing"
)

const testRoot = "github.com/ktls-go/ktls"

var testMods = []nestedModule{
	{dir: "acceptance", path: "example.com/acceptance"},
	{dir: "benchmarks/report", path: testRoot + "/benchmarks/report"},
	{dir: "ktlscaddy", path: testRoot + "/ktlscaddy"},
	{dir: "ktlsgrpc", path: testRoot + "/ktlsgrpc"},
}

// flat turns listings into "module: patterns" pairs, "" for the root.
func flat(ls []listing) map[string][]string {
	m := make(map[string][]string)
	for _, l := range ls {
		dir := ""
		if l.mod != nil {
			dir = l.mod.dir
		}
		m[dir] = l.patterns
	}
	return m
}

func TestSplitPatterns(t *testing.T) {
	for _, tc := range []struct {
		patterns []string
		want     map[string][]string
	}{
		// The default: the root's packages and every nested module's but
		// the host-only ones.
		{[]string{"./..."}, map[string][]string{"": {"./..."}, "ktlscaddy": {"./..."}, "ktlsgrpc": {"./..."}}},
		{[]string{testRoot + "/..."}, map[string][]string{"": {testRoot + "/..."}, "ktlscaddy": {"./..."}, "ktlsgrpc": {"./..."}}},
		// One nested module, by directory or import path.
		{[]string{"./ktlsgrpc"}, map[string][]string{"ktlsgrpc": {"."}}},
		{[]string{"./ktlsgrpc/..."}, map[string][]string{"ktlsgrpc": {"./..."}}},
		{[]string{"ktlsgrpc/..."}, map[string][]string{"": {"ktlsgrpc/..."}}}, // not a local path: go list's business
		{[]string{"./ktlsgrpc/sub/..."}, map[string][]string{"ktlsgrpc": {"./sub/..."}}},
		{[]string{testRoot + "/ktlsgrpc"}, map[string][]string{"ktlsgrpc": {"."}}},
		{[]string{"./ktlsgrpc/", "./ktlsgrpc/."}, map[string][]string{"ktlsgrpc": {"."}}},
		// A host-only module when named, not under a wildcard.
		{[]string{"./benchmarks/report"}, map[string][]string{"benchmarks/report": {"."}}},
		{[]string{"./benchmarks/..."}, map[string][]string{"": {"./benchmarks/..."}}},
		// Root packages only.
		{[]string{"./conn", "./backend/..."}, map[string][]string{"": {"./conn", "./backend/..."}}},
		{[]string{"."}, map[string][]string{"": {"."}}},
		// Mixed, and a module named twice.
		{[]string{"./conn", "./ktlsgrpc", "./ktlsgrpc/..."}, map[string][]string{"": {"./conn"}, "ktlsgrpc": {".", "./..."}}},
		// A prefix of a module's directory is not that module.
		{[]string{"./ktls/..."}, map[string][]string{"": {"./ktls/..."}}},
		// Outside the repository, and the standard library: go list's.
		{[]string{"../other/...", "std"}, map[string][]string{"": {"../other/...", "std"}}},
	} {
		got := flat(splitPatterns(testRoot, testMods, tc.patterns))
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%q: %v, want %v", tc.patterns, got, tc.want)
		}
	}
	// The root's listing first, then the modules in directory order.
	ls := splitPatterns(testRoot, testMods, []string{"./ktlsgrpc", "./ktlscaddy", "./conn"})
	if len(ls) != 3 || ls[0].mod != nil || ls[1].mod.dir != "ktlscaddy" || ls[2].mod.dir != "ktlsgrpc" {
		t.Errorf("order: %+v", ls)
	}
}

func TestParseList(t *testing.T) {
	out := testRoot + "/ktlsgrpc\t/r/ktlsgrpc\n" + testRoot + "/ktlsgrpc/sub\t/r/ktlsgrpc/sub\n\n"
	got := parseList(out, "/r/ktlsgrpc", testRoot+"/ktlsgrpc", "ktlsgrpc")
	want := []testPkg{
		{importPath: testRoot + "/ktlsgrpc", dir: "/r/ktlsgrpc", modDir: "/r/ktlsgrpc", rel: "ktlsgrpc", binary: "ktlsgrpc.test"},
		{importPath: testRoot + "/ktlsgrpc/sub", dir: "/r/ktlsgrpc/sub", modDir: "/r/ktlsgrpc", rel: "ktlsgrpc/sub", binary: "ktlsgrpc-sub.test"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("nested:\n%+v\nwant\n%+v", got, want)
	}
	out = testRoot + "\t/r\n" + testRoot + "/conn\t/r/conn\n" + testRoot + "/internal/testing/vmtest\t/r/internal/testing/vmtest\n"
	got = parseList(out, "/r", testRoot, "")
	want = []testPkg{
		{importPath: testRoot, dir: "/r", modDir: "/r", rel: ".", binary: "ktls.test"},
		{importPath: testRoot + "/conn", dir: "/r/conn", modDir: "/r", rel: "conn", binary: "conn.test"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("root:\n%+v\nwant\n%+v", got, want)
	}
	// A nested module whose path is not below the root's: rel is its
	// directory all the same.
	got = parseList("example.com/acceptance\t/r/acceptance\n", "/r/acceptance", "example.com/acceptance", "acceptance")
	if len(got) != 1 || got[0].rel != "acceptance" || got[0].binary != "acceptance.test" {
		t.Errorf("acceptance: %+v", got)
	}
}

func TestModulePath(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ text, want string }{
		{"module github.com/a/b\n\ngo 1.26.0\n", "github.com/a/b"},
		{"// comment\nmodule \"example.com/q\" // trailing\n", "example.com/q"},
		{"modulex foo\nmodule\tx.org/y\n", "x.org/y"},
		{"go 1.26.0\n", ""},
	} {
		f := filepath.Join(dir, "go.mod")
		if err := os.WriteFile(f, []byte(tc.text), 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := modulePath(f)
		if got != tc.want || (err != nil) != (tc.want == "") {
			t.Errorf("%q: %q, %v; want %q", tc.text, got, err, tc.want)
		}
	}
}

// TestNestedModules runs the lookup in a scratch git repository: tracked
// go.mod files below the root count, an untracked one (a cache) does not.
func TestNestedModules(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("no git")
	}
	root := t.TempDir()
	files := map[string]string{
		"go.mod":                   "module example.com/r\n",
		"b/go.mod":                 "module example.com/r/b\n",
		"a/deep/go.mod":            "module example.com/other\n",
		".cache/x/go.mod":          "module example.com/cache\n",
		"a/deep/nested/not.go.mod": "module no\n",
	}
	for name, text := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, args := range [][]string{{"init", "-q"}, {"add", "go.mod", "b/go.mod", "a/deep/go.mod", "a/deep/nested/not.go.mod"}} {
		cmd := exec.Command("git", args...)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	got, err := nestedModules(root)
	if err != nil {
		t.Fatal(err)
	}
	want := []nestedModule{{dir: "a/deep", path: "example.com/other"}, {dir: "b", path: "example.com/r/b"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%+v, want %+v", got, want)
	}
}
