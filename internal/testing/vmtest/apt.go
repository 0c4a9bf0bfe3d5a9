package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// The kernels come from Debian's archive through apt, with a private sources
// directory, lists directory and cache, so that the machine's own apt
// configuration is never touched (README.md). Only the archive URI is taken
// from the machine's sources.

// debianSuites are the suites the private sources list: bookworm for 6.1,
// trixie for 6.12, trixie-backports for the newest kernel.
var debianSuites = []string{"bookworm", "trixie", "trixie-backports"}

// debianKeyring is the keyring of Debian's archive keys, from the
// debian-archive-keyring package; bookworm's copy already has trixie's keys.
const debianKeyring = "/usr/share/keyrings/debian-archive-keyring.gpg"

// listsMaxAge is how long the private package lists are trusted before the
// next run refreshes them.
const listsMaxAge = 24 * time.Hour

// debianCodenames are the names that mark a source entry as Debian's main
// archive rather than its security archive, a backports suite or a third
// party's repository.
var debianCodenames = []string{"buster", "bullseye", "bookworm", "trixie", "forky", "duke", "sid", "oldstable", "stable", "testing", "unstable"}

// archiveURIFrom picks, from the text of apt source files, the URI of the
// first entry that serves a plain Debian suite (e.g. "bookworm", not
// "bookworm-security"). It reads both the deb822 format (.sources) and the
// one-line format (.list, sources.list).
func archiveURIFrom(text string) (string, bool) {
	// One-line format: deb [options] uri suite [component...]
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(strings.TrimSpace(line))
		if len(f) < 3 || f[0] != "deb" {
			continue
		}
		f = f[1:]
		if strings.HasPrefix(f[0], "[") {
			for len(f) > 0 && !strings.HasSuffix(f[0], "]") {
				f = f[1:]
			}
			if len(f) == 0 {
				continue
			}
			f = f[1:]
		}
		if len(f) >= 2 && slices.Contains(debianCodenames, f[1]) {
			return strings.TrimSuffix(f[0], "/"), true
		}
	}
	// deb822: paragraphs of "Field: value" separated by blank lines.
	for _, para := range strings.Split(strings.ReplaceAll(text, "\r", ""), "\n\n") {
		fields := map[string]string{}
		for _, line := range strings.Split(para, "\n") {
			if strings.HasPrefix(line, "#") {
				continue
			}
			if k, v, ok := strings.Cut(line, ":"); ok && !strings.HasPrefix(k, " ") {
				fields[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
			}
		}
		if !slices.Contains(strings.Fields(fields["types"]), "deb") || strings.EqualFold(fields["enabled"], "no") {
			continue
		}
		uris := strings.Fields(fields["uris"])
		if len(uris) == 0 {
			continue
		}
		for _, s := range strings.Fields(fields["suites"]) {
			if slices.Contains(debianCodenames, s) {
				return strings.TrimSuffix(uris[0], "/"), true
			}
		}
	}
	return "", false
}

// hostArchiveURI finds the machine's Debian archive URI in its apt sources.
func hostArchiveURI() (string, error) {
	files, _ := filepath.Glob("/etc/apt/sources.list.d/*.sources")
	lists, _ := filepath.Glob("/etc/apt/sources.list.d/*.list")
	files = append(append(files, lists...), "/etc/apt/sources.list")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if uri, ok := archiveURIFrom(string(b)); ok {
			return uri, nil
		}
	}
	return "", errors.New("vmtest: no Debian archive in /etc/apt/sources.list.d/ or /etc/apt/sources.list; pass -mirror URI")
}

// apt runs apt-get and apt-cache against the private configuration under
// dir, for one architecture: the lists it reads and the packages it
// downloads are that architecture's, whatever the host's is (README.md,
// "arm64 guests").
type apt struct {
	dir  string
	arch *guestArch
	// extra are suites listed besides debianSuites: the host's own release,
	// from which a foreign architecture's peers come (peers.go).
	extra []string
}

// newApt returns the private apt configuration of an architecture under the
// cache: apt/ for amd64 (where it was before there were other
// architectures), apt-<arch>/ for the others.
func newApt(cacheDir string, ga *guestArch, extra ...string) apt {
	dir := "apt"
	if ga != archAMD64 {
		dir = "apt-" + ga.name
	}
	return apt{dir: filepath.Join(cacheDir, dir), arch: ga, extra: extra}
}

// suites returns the suites of the private sources.
func (a apt) suites() []string {
	s := slices.Clone(debianSuites)
	for _, e := range a.extra {
		if !slices.Contains(s, e) {
			s = append(s, e)
		}
	}
	return s
}

func (a apt) sourcesDir() string { return filepath.Join(a.dir, "sources.list.d") }
func (a apt) listsDir() string   { return filepath.Join(a.dir, "lists") }
func (a apt) stampFile() string  { return filepath.Join(a.listsDir(), "vmtest-updated") }

// opts are the options that point apt at the private directories. The
// machine's apt.conf still applies (proxies, for one); its sources,
// preferences, lists and caches do not.
func (a apt) opts() []string {
	return []string{
		"-o", "Dir::Etc::SourceList=/dev/null",
		"-o", "Dir::Etc::SourceParts=" + a.sourcesDir(),
		"-o", "Dir::Etc::Preferences=/dev/null",
		"-o", "Dir::Etc::PreferencesParts=" + filepath.Join(a.dir, "preferences.d"),
		"-o", "Dir::State::Lists=" + a.listsDir(),
		"-o", "Dir::Cache=" + filepath.Join(a.dir, "cache"),
		// The private directories belong to root; apt's _apt sandbox user
		// could not write them.
		"-o", "APT::Sandbox::User=root",
		// The lists and packages of the guests' architecture only: this is
		// how the arm64 kernels and peers come to an amd64 host.
		"-o", "APT::Architecture=" + a.arch.name,
		"-o", "APT::Architectures=" + a.arch.name,
	}
}

// setup writes the private sources and refreshes the lists when they are
// missing, older than listsMaxAge, made for other sources, or when force is
// set. A failed refresh with usable older lists is only a warning: a run
// without network can still use what it downloaded before.
func (a apt) setup(uri string, force bool) error {
	for _, d := range []string{a.sourcesDir(), filepath.Join(a.listsDir(), "partial"), filepath.Join(a.dir, "cache"), filepath.Join(a.dir, "preferences.d")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("vmtest: %w", err)
		}
	}
	if _, err := os.Stat(debianKeyring); err != nil {
		return fmt.Errorf("vmtest: Debian's archive keyring is missing (apt-get install debian-archive-keyring): %w", err)
	}
	sources := fmt.Sprintf("# Written by internal/testing/vmtest: Debian kernels for the test VMs.\nTypes: deb\nURIs: %s\nSuites: %s\nComponents: main\nSigned-By: %s\n",
		uri, strings.Join(a.suites(), " "), debianKeyring)
	sourcesFile := filepath.Join(a.sourcesDir(), "vmtest.sources")
	if old, err := os.ReadFile(sourcesFile); err != nil || string(old) != sources {
		if err := os.WriteFile(sourcesFile, []byte(sources), 0o644); err != nil {
			return fmt.Errorf("vmtest: %w", err)
		}
		force = true
	}
	st, err := os.Stat(a.stampFile())
	if err == nil && !force && time.Since(st.ModTime()) < listsMaxAge {
		return nil
	}
	logf("refreshing the private package lists (%s: %s, %s)", uri, strings.Join(a.suites(), ", "), a.arch.name)
	args := append(a.opts(), "-q", "update")
	if err := run("", nil, "apt-get", args...); err != nil {
		if st != nil {
			logf("warning: %v; going on with the lists of %s", err, st.ModTime().Format(time.DateTime))
			return nil
		}
		return err
	}
	return os.WriteFile(a.stampFile(), nil, 0o644)
}

// search returns the names of the packages whose names match the regular
// expression.
func (a apt) search(regex string) ([]string, error) {
	args := append(a.opts(), "search", "--names-only", regex)
	out, err := output("", "apt-cache", args...)
	if err != nil {
		return nil, err
	}
	return parseSearch(strings.NewReader(out)), nil
}

// parseSearch reads the package names from apt-cache search output, lines
// "name - description".
func parseSearch(r io.Reader) []string {
	var names []string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		name, _, ok := strings.Cut(sc.Text(), " - ")
		if ok && name != "" && !strings.ContainsAny(name, " \t") {
			names = append(names, name)
		}
	}
	return names
}

// download fetches the packages' .deb files into dir.
func (a apt) download(dir string, pkgs ...string) error {
	args := append(a.opts(), "-q", "download")
	return run(dir, nil, "apt-get", append(args, pkgs...)...)
}
