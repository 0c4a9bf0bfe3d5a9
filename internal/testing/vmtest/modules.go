package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"strings"
)

// wantedModules are the modules the project's tests need, by name, with
// what each is for, and wantedAliases the module aliases through which the
// kernel asks for more when it instantiates an algorithm: the gcm template
// requests "crypto-ghash" and "crypto-ctr", rfc7539 requests
// "crypto-chacha20" and "crypto-poly1305" (crypto/api.c,
// crypto_larval_lookup). No modprobe answers such requests in the guest, so
// every module that provides one of these aliases in modules.alias is loaded
// up front; that also follows the modules as they move between kernel
// versions (7.x folded chacha_generic and chacha-x86_64 into "chacha", and
// the poly1305 and ghash drivers into libraries). A name or alias that a
// kernel builds in, or lacks, is skipped. Each architecture adds its own
// crypto drivers by name (guestArch.modules): the x86 AES-NI and AVX glue,
// the arm64 Crypto Extensions and NEON glue.
var wantedModules = []string{
	"tls",                  // kTLS: TCP_ULP "tls", SOL_TLS
	"af_alg", "algif_aead", // AF_ALG "aead" sockets
}

var wantedAliases = []string{
	"tcp-ulp-tls", "net-pf-38", // tls, af_alg (net-pf-38 is AF_ALG)
	"crypto-gcm", "crypto-ghash", "crypto-ctr", "crypto-aes",
	"crypto-rfc7539", "crypto-chacha20", "crypto-poly1305",
	"crypto-ccm", // kTLS takes AES-128-CCM too
	// backend/nicoffload: veth (RTM_NEWLINK of kind "veth" asks for
	// rtnl-link-veth) and sock_diag of TCP sockets, IPv4 and IPv6 alike
	// (inet_diag asks for the protocol's handler as AF_INET-IPPROTO_TCP,
	// tcp_diag, which needs inet_diag).
	"rtnl-link-veth", "net-pf-16-proto-4-type-2-6",
}

// modulesForAliases reads modules.alias ("alias <alias> <module>" lines,
// written by depmod) and returns every module that provides one of the
// aliases, in the order of the aliases, and the aliases nothing provides.
func modulesForAliases(r io.Reader, aliases []string) (mods, none []string, err error) {
	providers := map[string][]string{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 3 && f[0] == "alias" {
			providers[f[1]] = append(providers[f[1]], f[2])
		}
	}
	if err := sc.Err(); err != nil {
		return nil, nil, fmt.Errorf("vmtest: reading modules.alias: %w", err)
	}
	for _, a := range aliases {
		if len(providers[a]) == 0 {
			none = append(none, a)
		}
		mods = append(mods, providers[a]...)
	}
	return mods, none, nil
}

// normModName spells a module name the way the kernel does: modules.dep
// holds file names with '-' where /proc/modules has '_' (kmod treats the two
// as the same).
func normModName(name string) string { return strings.ReplaceAll(name, "-", "_") }

// moduleNameOf returns the module name of a path in modules.dep, e.g.
// "kernel/arch/x86/crypto/aesni-intel.ko.xz" gives "aesni_intel".
func moduleNameOf(p string) string {
	base := path.Base(p)
	if i := strings.Index(base, ".ko"); i >= 0 {
		base = base[:i]
	}
	return normModName(base)
}

// moduleDeps is modules.dep as written by depmod(8): for each module (by
// name) its path relative to the modules directory and the paths of every
// module it needs, directly or not.
type moduleDeps map[string]moduleDep

type moduleDep struct {
	path string
	deps []string
}

// parseModulesDep reads modules.dep: lines "path: dep dep ...".
func parseModulesDep(r io.Reader) (moduleDeps, error) {
	md := moduleDeps{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		p, deps, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("vmtest: modules.dep: no colon in %q", line)
		}
		md[moduleNameOf(p)] = moduleDep{path: strings.TrimSpace(p), deps: strings.Fields(deps)}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("vmtest: reading modules.dep: %w", err)
	}
	return md, nil
}

// closure returns the paths of the wanted modules and of everything they
// need, each once, every module after all of its dependencies (the order in
// which insmod must load them), and the wanted names that modules.dep does
// not know (built in, or absent from this kernel).
func (md moduleDeps) closure(wanted []string) (order []string, absent []string, err error) {
	const (
		visiting = 1
		done     = 2
	)
	state := map[string]int{}
	var visit func(name string, chain []string) error
	visit = func(name string, chain []string) error {
		switch state[name] {
		case done:
			return nil
		case visiting:
			return fmt.Errorf("vmtest: modules.dep has a dependency cycle: %s", strings.Join(append(chain, name), " -> "))
		}
		m, ok := md[name]
		if !ok {
			return fmt.Errorf("vmtest: modules.dep: %s needs %s, which it does not list", chain[len(chain)-1], name)
		}
		state[name] = visiting
		for _, d := range m.deps {
			if err := visit(moduleNameOf(d), append(chain, name)); err != nil {
				return err
			}
		}
		state[name] = done
		order = append(order, m.path)
		return nil
	}
	for _, w := range wanted {
		name := normModName(w)
		if _, ok := md[name]; !ok {
			absent = append(absent, w)
			continue
		}
		if err := visit(name, nil); err != nil {
			return nil, nil, err
		}
	}
	return order, absent, nil
}

// readModule returns a module's object, decompressed: insmod in busybox
// takes only plain .ko files.
func readModule(file string) ([]byte, error) {
	switch {
	case strings.HasSuffix(file, ".ko"):
		return os.ReadFile(file)
	case strings.HasSuffix(file, ".ko.xz"):
		out, err := exec.Command("xz", "-dc", file).Output()
		if err != nil {
			return nil, fmt.Errorf("vmtest: xz -dc %s: %w", file, cmdErr(err))
		}
		return out, nil
	case strings.HasSuffix(file, ".ko.gz"):
		f, err := os.Open(file)
		if err != nil {
			return nil, fmt.Errorf("vmtest: %w", err)
		}
		defer f.Close()
		zr, err := gzip.NewReader(f)
		if err != nil {
			return nil, fmt.Errorf("vmtest: %s: %w", file, err)
		}
		var b bytes.Buffer
		if _, err := io.Copy(&b, zr); err != nil {
			return nil, fmt.Errorf("vmtest: %s: %w", file, err)
		}
		return b.Bytes(), nil
	}
	return nil, fmt.Errorf("vmtest: %s: unknown module compression", file)
}
