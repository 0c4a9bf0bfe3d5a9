// Command vmtest runs the module's tests inside qemu VMs booted with real
// Debian kernels, where kernel TLS and AF_ALG exist (the development hosts'
// kernel has neither), on amd64 and arm64 guests. Run it from the
// repository root:
//
//	go run ./internal/testing/vmtest                       # every package; 6.1, 6.12 and the newest kernel; amd64 and arm64
//	go run ./internal/testing/vmtest -arch arm64 -kernel 6.1 -pkg ./conn -run 'TestKernel'
//
// It installs the host packages it needs, downloads the kernels through a
// private apt configuration into .cache/vmtest/, builds static test binaries
// and an initramfs, boots each kernel in turn, and streams what the guest
// prints. In each guest a self-check asserts first that kTLS, AF_ALG and the
// real peers work, so no test can pass there by skipping. It exits non-zero
// if anything failed. See README.md in this directory.
package main

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/ktls-go/ktls/internal/testing/vmtest/plan"
)

// envFlags collects repeated -env KEY=VALUE flags.
type envFlags []string

func (e *envFlags) String() string { return strings.Join(*e, " ") }

func (e *envFlags) Set(kv string) error {
	k, _, ok := strings.Cut(kv, "=")
	if !ok || k == "" || strings.ContainsAny(k, " \t\n") {
		return fmt.Errorf("want KEY=VALUE, got %q", kv)
	}
	*e = append(*e, kv)
	return nil
}

// sysctlFlags collects repeated -sysctl name=value flags.
type sysctlFlags []string

func (s *sysctlFlags) String() string { return strings.Join(*s, " ") }

func (s *sysctlFlags) Set(kv string) error {
	name, _, ok := strings.Cut(kv, "=")
	if !ok || name == "" || strings.Trim(name, "abcdefghijklmnopqrstuvwxyz0123456789_.-") != "" {
		return fmt.Errorf("want name=value with a name like crypto.af_alg_restrict, got %q", kv)
	}
	*s = append(*s, kv)
	return nil
}

type config struct {
	root        string
	cache       string
	arches      []*guestArch
	kernels     []string
	patterns    []string
	run         string
	bench       string
	benchtime   string
	count       int
	long        bool
	env         envFlags
	sysctls     sysctlFlags
	timeout     time.Duration
	testTimeout time.Duration
	mem, cpus   int
	accel, cpu  string
	cmdline     string
	update      bool
	mirror      string
}

func main() {
	os.Exit(mainErr())
}

func mainErr() int {
	var c config
	archFlag := flag.String("arch", "amd64,arm64", "guest architectures: amd64, arm64 or all; comma separated")
	kernelFlag := flag.String("kernel", "all", "kernels to boot on each architecture: 6.1, 6.12, newest, all, or any major.minor; comma separated")
	pkgFlag := flag.String("pkg", "./...", "packages to test, as go list patterns; comma separated; ./... includes the repository's nested modules but the host-only ones, ./ktlsgrpc names one")
	flag.StringVar(&c.run, "run", "", "run only the tests matching this regular expression (passed as -test.run)")
	flag.StringVar(&c.bench, "bench", "", "also run the benchmarks matching this regular expression (passed as -test.bench, with -test.benchmem); pair it with -run '^$' to run benchmarks only")
	flag.StringVar(&c.benchtime, "benchtime", "", "passed as -test.benchtime")
	flag.IntVar(&c.count, "count", 0, "passed as -test.count when above 0: runs of each test and benchmark, for benchmark statistics (benchmarks/RESULTS.md)")
	flag.BoolVar(&c.long, "long", false, "run the tests without -test.short (slow: crypto under TCG is ~385x slower)")
	flag.Var(&c.env, "env", "set `KEY=VALUE` in the guests' tests (repeatable), e.g. -env KTLS_BACKEND=userspace")
	flag.Var(&c.sysctls, "sysctl", "set `name=value` under /proc/sys in the guests before the self-check (repeatable), e.g. -sysctl crypto.af_alg_restrict=0")
	flag.DurationVar(&c.timeout, "timeout", 0, "limit for one guest, from boot to power-off (default 10m on amd64, 20m on arm64)")
	flag.DurationVar(&c.testTimeout, "test-timeout", 0, "limit for every test binary, passed as -test.timeout (default 4m on amd64, 8m on arm64, and more for the packages measured to need it: packageTimeout)")
	flag.IntVar(&c.mem, "mem", 2048, "guest memory in MiB")
	flag.StringVar(&c.accel, "accel", "", "qemu -accel value for every chosen architecture (default "+defaultAccel+" on amd64, "+defaultAccelARM64+" on arm64; KVM does not work on the project's machines)")
	flag.StringVar(&c.cpu, "cpu", "", "qemu -cpu value, with a single -arch (default "+defaultCPU+" on amd64, "+defaultCPUARM64+" on arm64)")
	flag.StringVar(&c.cmdline, "append", "", "more kernel command line parameters for the guests")
	flag.IntVar(&c.cpus, "smp", 2, "guest CPUs")
	flag.BoolVar(&c.update, "update", false, "refresh the private package lists even if they are recent")
	flag.StringVar(&c.mirror, "mirror", "", "Debian archive URI (default: the machine's own, from /etc/apt)")
	flag.StringVar(&c.cache, "cache", "", "cache directory (default: .cache/vmtest under the module root)")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: go run ./internal/testing/vmtest [flags]\n\nRuns the module's tests in qemu VMs with real Debian kernels.\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() > 0 {
		flag.Usage()
		return 2
	}
	var err error
	if c.arches, err = archSelectors(*archFlag); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if c.cpu != "" && len(c.arches) > 1 {
		fmt.Fprintln(os.Stderr, "vmtest: -cpu names one architecture's CPU model: choose that architecture with -arch")
		return 2
	}
	if c.kernels, err = kernelSelectors(*kernelFlag); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	for _, p := range strings.Split(*pkgFlag, ",") {
		if p = strings.TrimSpace(p); p != "" {
			c.patterns = append(c.patterns, p)
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	results, err := runAll(ctx, &c)
	ok := len(results) > 0 && summarize(results)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if !ok {
		return 1
	}
	return 0
}

// runAll prepares everything, then boots the kernels one after another,
// architecture by architecture: with two cores, guests in parallel would
// only slow each other down.
func runAll(ctx context.Context, c *config) ([]*kernelResult, error) {
	start := time.Now()
	var err error
	if c.root, err = moduleRoot(); err != nil {
		return nil, err
	}
	if c.cache == "" {
		c.cache = filepath.Join(c.root, ".cache", "vmtest")
	}
	if err := os.MkdirAll(c.cache, 0o755); err != nil {
		return nil, fmt.Errorf("vmtest: %w", err)
	}
	pkgs, err := listTestPackages(c.root, c.patterns)
	if err != nil {
		return nil, err
	}
	unlock, err := lockCache(c.cache)
	if err != nil {
		return nil, err
	}
	prepared, err := prepareKernels(c, needsNFS(pkgs), testBedModulesFor(pkgs))
	unlock()
	if err != nil {
		return nil, err
	}
	logf("kernels ready in %.1fs", time.Since(start).Seconds())
	runDir, err := os.MkdirTemp(c.cache, "run-")
	if err != nil {
		return nil, fmt.Errorf("vmtest: %w", err)
	}
	defer os.RemoveAll(runDir)
	// Everything is built before the first boot, so that a build error
	// shows at once.
	for i := range prepared {
		pa := &prepared[i]
		dir := filepath.Join(runDir, pa.arch.name)
		guest, built, err := buildAll(c.root, dir, pkgs, pa.arch)
		if err != nil {
			return nil, err
		}
		ca, err := commonArchive(guest, built, pa.arch, pa.root, pa.nfsRoot)
		if err != nil {
			return nil, err
		}
		if pa.nfsRoot != "" {
			if err := addKTLSCommand(ca, c.root, dir, pa.arch); err != nil {
				return nil, err
			}
		}
		pa.pkgs = built
		pa.common = filepath.Join(dir, "common.cpio")
		if err := writeArchive(ca, pa.common); err != nil {
			return nil, err
		}
	}
	logf("ready in %.1fs: %d test binaries, kernels %s", time.Since(start).Seconds(), len(pkgs), kernelNames(prepared))

	if err := os.MkdirAll(filepath.Join(c.cache, "logs"), 0o755); err != nil {
		return nil, fmt.Errorf("vmtest: %w", err)
	}
	var results []*kernelResult
	for _, pa := range prepared {
		for _, k := range pa.kernels {
			if ctx.Err() != nil {
				break
			}
			res, err := runKernel(ctx, c, k.kernel, k.modules, pa.common, pa.pkgs, runDir)
			if err != nil {
				return nil, err
			}
			results = append(results, res)
			fmt.Println(res.closingLine())
		}
	}
	if ctx.Err() != nil {
		return results, errors.New("vmtest: interrupted")
	}
	return results, nil
}

// preparedKernel is a kernel with the modules to load into it.
type preparedKernel struct {
	kernel  kernel
	modules []string // paths under the kernel's modules directory, in load order
}

// preparedArch is what one architecture's guests need: its kernels, the
// tree of its busybox and peers (empty for the host's architecture, whose
// own are copied), the tree of the NFS test bed's programs (empty unless a
// package tests NFS: nfs.go), and, once built, its test binaries and the
// common part of its initramfs.
type preparedArch struct {
	arch    *guestArch
	kernels []preparedKernel
	root    string
	nfsRoot string
	pkgs    []testPkg
	common  string
}

func kernelNames(pas []preparedArch) string {
	var names []string
	for _, pa := range pas {
		for _, k := range pa.kernels {
			names = append(names, k.kernel.name+" ("+k.kernel.release+")")
		}
	}
	return strings.Join(names, ", ")
}

// prepareKernels installs the host's tools, then, for each architecture,
// resolves, downloads and unpacks the kernels, works out which modules each
// needs, and fetches the busybox and peers of a foreign architecture, and,
// with nfs, the test bed's programs, and extraModules (nfs.go).
func prepareKernels(c *config, nfs bool, extraModules []string) ([]preparedArch, error) {
	if err := ensureHostPackages(hostNeeds(c.arches)); err != nil {
		return nil, err
	}
	uri := c.mirror
	if uri == "" {
		var err error
		if uri, err = hostArchiveURI(); err != nil {
			return nil, err
		}
	}
	var out []preparedArch
	for _, ga := range c.arches {
		sels := selectorsFor(ga, c.kernels)
		if len(sels) == 0 {
			logf("no kernel of -kernel %s is for %s: skipping it", strings.Join(c.kernels, ","), ga.name)
			continue
		}
		pa := preparedArch{arch: ga}
		var a apt
		var suite string
		if ga.native() {
			a = newApt(c.cache, ga)
		} else {
			var err error
			if suite, err = hostCodename(); err != nil {
				return nil, err
			}
			a = newApt(c.cache, ga, suite)
		}
		if err := a.setup(uri, c.update); err != nil {
			return nil, err
		}
		rels, err := resolveKernels(a, sels)
		if err != nil {
			return nil, err
		}
		for _, rel := range rels {
			k, err := fetchKernel(a, c.cache, rel)
			if err != nil {
				return nil, err
			}
			mods, absent, err := moduleOrder(k, extraModules)
			if err != nil {
				return nil, err
			}
			if len(absent) == 0 {
				absent = []string{"none"}
			}
			logf("%s is %s: %d modules to load; built in or absent: %s", k.name, k.release, len(mods), strings.Join(absent, " "))
			pa.kernels = append(pa.kernels, preparedKernel{k, mods})
		}
		if !ga.native() {
			if pa.root, err = fetchForeignRoot(a, c.cache, suite); err != nil {
				return nil, err
			}
		}
		if nfs {
			if pa.nfsRoot, err = fetchNFSRoot(a, c.cache); err != nil {
				return nil, err
			}
		}
		out = append(out, pa)
	}
	if len(out) == 0 {
		return nil, errNoKernels
	}
	return out, nil
}

// moduleOrder returns the modules to load into the kernel, in load order,
// and the wanted names and aliases it does not have as modules; extra are
// wanted too.
func moduleOrder(k kernel, extra []string) (order, absent []string, err error) {
	af, err := os.Open(filepath.Join(k.modDir, "modules.alias"))
	if err != nil {
		return nil, nil, fmt.Errorf("vmtest: %w", err)
	}
	byAlias, none, err := modulesForAliases(af, wantedAliases)
	af.Close()
	if err != nil {
		return nil, nil, err
	}
	df, err := os.Open(filepath.Join(k.modDir, "modules.dep"))
	if err != nil {
		return nil, nil, fmt.Errorf("vmtest: %w", err)
	}
	md, err := parseModulesDep(df)
	df.Close()
	if err != nil {
		return nil, nil, err
	}
	wanted := slices.Concat(wantedModules, k.arch.modules, byAlias, extra)
	order, absent, err = md.closure(wanted)
	if err != nil {
		return nil, nil, fmt.Errorf("vmtest: %s: %w", k.release, err)
	}
	return order, append(absent, none...), nil
}

// runKernel writes the kernel's initramfs and boots it.
func runKernel(ctx context.Context, c *config, k kernel, modules []string, common string, pkgs []testPkg, runDir string) (*kernelResult, error) {
	nonce, err := newNonce()
	if err != nil {
		return nil, err
	}
	testTimeout := cmp.Or(c.testTimeout, k.arch.testTimeout)
	tests := planTests(pkgs)
	guestTimeout := cmp.Or(c.timeout, k.arch.timeout)
	if c.testTimeout == 0 {
		names := make([]string, len(tests))
		for i := range tests {
			names[i] = tests[i].Name
			limit := packageTimeout(tests[i].Name, k.arch)
			if limit > testTimeout {
				tests[i].TimeoutSeconds = int((limit + 30*time.Second).Seconds())
			}
		}
		if c.timeout == 0 {
			// A binary given more time than the default must be able to
			// use it, after the others (guestLimit).
			guestTimeout = guestLimit(names, k.arch)
		}
	}
	p := &plan.Plan{
		Kernel:         k.name,
		Nonce:          nonce,
		Tests:          tests,
		Args:           testArgs(c, testTimeout),
		Env:            c.env,
		Sysctls:        c.sysctls,
		TimeoutSeconds: int((testTimeout + 30*time.Second).Seconds()),
	}
	a, err := kernelArchive(k, modules, p)
	if err != nil {
		return nil, err
	}
	initrd := filepath.Join(runDir, k.name+".cpio")
	if err := writeInitrd(initrd, common, a); err != nil {
		return nil, err
	}
	if st, err := os.Stat(initrd); err == nil {
		logf("booting %s (%s), initramfs %d MiB", k.name, k.release, st.Size()>>20)
	}
	res := newKernelResult(k, nonce, p.Tests)
	bc := bootConfig{
		accel:   cmp.Or(c.accel, k.arch.accel),
		cpu:     cmp.Or(c.cpu, k.arch.cpu),
		cmdline: c.cmdline,
		memMiB:  c.mem,
		cpus:    c.cpus,
		timeout: guestTimeout,
		logFile: filepath.Join(c.cache, "logs", k.name+".log"),
	}
	if err := boot(ctx, k, initrd, bc, res); err != nil {
		return nil, err
	}
	os.Remove(initrd)
	return res, nil
}

// testArgs returns the command line of every test binary.
func testArgs(c *config, testTimeout time.Duration) []string {
	args := []string{"-test.v", fmt.Sprintf("-test.timeout=%v", testTimeout)}
	if !c.long {
		args = append(args, "-test.short")
	}
	if c.run != "" {
		args = append(args, "-test.run="+c.run)
	}
	if c.bench != "" {
		args = append(args, "-test.bench="+c.bench, "-test.benchmem")
	}
	if c.benchtime != "" {
		args = append(args, "-test.benchtime="+c.benchtime)
	}
	if c.count > 0 {
		args = append(args, fmt.Sprintf("-test.count=%d", c.count))
	}
	return args
}

func newNonce() (string, error) {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("vmtest: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// moduleRoot finds the directory of go.mod, from the working directory up.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("vmtest: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("vmtest: no go.mod here or above: run it from the repository")
		}
		dir = parent
	}
}

// summarize prints the closing summary, go test style, and reports whether
// everything passed.
func summarize(results []*kernelResult) bool {
	fmt.Println()
	fmt.Println("vmtest summary")
	allOK := len(results) > 0
	for _, r := range results {
		passed, failed, skipped := r.counts()
		status := "ok  "
		if !r.ok() {
			status = "FAIL"
			allOK = false
		}
		gcm := "gcm(aes) driver unknown"
		for _, i := range r.info {
			if strings.HasPrefix(i, "gcm(aes): ") {
				gcm, _, _ = strings.Cut(i, " (")
			}
		}
		fmt.Printf("%s\t%-5s  %-17s %-28s %-36s %3d tests passed %3d failed %3d skipped  %6.1fs\n",
			status, r.kernel.arch.name, r.kernel.name, r.kernel.release, gcm, passed, failed, skipped, r.elapsed.Seconds())
		for _, n := range r.failureNotes() {
			fmt.Printf("\t    %s\n", n)
		}
	}
	if allOK {
		fmt.Println("PASS")
	} else {
		fmt.Println("FAIL")
	}
	return allOK
}
