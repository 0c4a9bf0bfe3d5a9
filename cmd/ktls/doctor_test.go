package main

import (
	"bytes"
	"crypto/fips140"
	"crypto/tls"
	"encoding/json"
	"errors"
	"expvar"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/ktls-go/ktls"
	"github.com/ktls-go/ktls/backend"
	"github.com/ktls-go/ktls/internal/testing/ktlstest"
	"github.com/ktls-go/ktls/internal/testing/testenv"
	"github.com/ktls-go/ktls/internal/testing/testpki"
	_ "github.com/ktls-go/ktls/ktlsexpvar" // the "ktls" variable TestDoctorStats reads
)

func TestMain(m *testing.M) { testenv.MainWithLeakCheck(m) }

// TestDoctorHere runs the doctor where the test runs and holds what it says
// against the harness's own probes (internal/testing/testenv), which share no code
// with it: on the development host, where the kernel has neither kTLS nor
// AF_ALG, it must say so with the reasons; in the VM, where the harness has
// loaded and checked them, it must find them.
func TestDoctorHere(t *testing.T) {
	fds := fdCount()
	r := collect()
	if n := fdCount(); n != fds {
		t.Errorf("%d file descriptors open after the doctor, %d before", n, fds)
	}
	t.Logf("kernel %s, in VM: %v", r.Host.Kernel, testenv.InVM())
	if r.Host.OS != runtime.GOOS || r.Host.Arch != runtime.GOARCH || r.Host.Error != "" {
		t.Errorf("host = %+v", r.Host)
	}
	if runtime.GOOS == "linux" && r.Host.Kernel != testenv.KernelVersion().Release {
		t.Errorf("kernel %q, uname says %q", r.Host.Kernel, testenv.KernelVersion().Release)
	}
	for _, sec := range []string{r.KTLS.Error, r.Policy.Error} {
		if sec != "" {
			t.Errorf("section error: %s", sec)
		}
	}
	checkKTLS(t, r)
	checkAFALG(t, r)
	checkNIC(t, r)
	checkAuto(t, r)
	checkCPU(t, r)
	if t.Failed() || testenv.InVM() {
		var buf bytes.Buffer
		writeText(&buf, r)
		t.Logf("the report:\n%s", buf.String())
	}
	if testenv.InVM() {
		// The VM's /proc/crypto, for testdata (TestParseProcCryptoVM).
		if b, err := os.ReadFile("/proc/crypto"); err == nil {
			t.Logf("/proc/crypto:\n==proc-crypto-begin==\n%s==proc-crypto-end==", b)
		}
	}
}

func checkKTLS(t *testing.T, r Report) {
	t.Helper()
	// The ULP, against the harness's probe of TLS 1.2 AES-128-GCM.
	ulpErr := testenv.ProbeKTLS()
	switch {
	case ulpErr == nil:
		if r.KTLS.ULP.State != stateAvailable {
			t.Errorf("kTLS works here, the doctor says the ULP is %s", statusText(r.KTLS.ULP))
		}
	case errors.Is(ulpErr, backend.ErrNotSupported):
		if testenv.InVM() {
			t.Errorf("kTLS is missing in the VM: %v", ulpErr)
		}
		if runtime.GOOS == "linux" && (r.KTLS.ULP.State != stateUnavailable || !strings.Contains(r.KTLS.ULP.Reason, "ENOENT")) {
			t.Errorf("no kTLS here (%v), the doctor says the ULP is %s", ulpErr, statusText(r.KTLS.ULP))
		}
	default:
		t.Fatalf("the harness's kTLS probe: %v", ulpErr)
	}

	if len(r.KTLS.Suites) != len(aeadSuites) {
		t.Fatalf("%d suites, want %d", len(r.KTLS.Suites), len(aeadSuites))
	}
	for i, sc := range aeadSuites {
		got := r.KTLS.Suites[i]
		name := got.Version + " " + got.Cipher
		if got.SuiteID != sc.suite {
			t.Errorf("suite %d is %s, want %s", i, got.Suite, tls.CipherSuiteName(sc.suite))
		}
		err := testenv.ProbeKTLSWith(sc.version, sc.suite)
		feature := testenv.KTLSFeature(sc.version, sc.suite)
		switch {
		case err == nil:
			for dir, s := range map[string]Status{"TX": got.TX, "RX": got.RX} {
				if s.State != stateAvailable {
					t.Errorf("%s %s: kTLS works here, the doctor says %s", name, dir, statusText(s))
				}
			}
		case errors.Is(err, backend.ErrNotSupported):
			if testenv.InVM() && testenv.ExpectedInVM(feature) {
				t.Errorf("%s (%s) is missing in the VM: %v", name, feature, err)
			}
			for dir, s := range map[string]Status{"TX": got.TX, "RX": got.RX} {
				if s.State != stateUnavailable || s.Reason == "" {
					t.Errorf("%s %s: kTLS does not work here (%v), the doctor says %s", name, dir, err, statusText(s))
				}
				if ulpErr != nil && runtime.GOOS == "linux" && !strings.Contains(s.Reason, "the tls module is not available (TCP_ULP: ENOENT)") {
					t.Errorf("%s %s: reason %q does not name the missing module", name, dir, s.Reason)
				}
			}
		default:
			t.Fatalf("the harness's probe of %s: %v", name, err)
		}
	}

	// Rekey: Linux 6.14 in the VM; never without kTLS.
	switch {
	case testenv.InVM():
		if want := testenv.ExpectedInVM(testenv.FeatureKTLSRekey); (r.KTLS.Rekey.State == stateAvailable) != want {
			t.Errorf("kernel %s: rekey %s, want available = %v", r.Host.Kernel, statusText(r.KTLS.Rekey), want)
		}
		if r.KTLS.Rekey.State == stateUnavailable && !strings.Contains(r.KTLS.Rekey.Reason, "6.14") {
			t.Errorf("rekey reason %q does not name Linux 6.14", r.KTLS.Rekey.Reason)
		}
	case ulpErr != nil:
		if r.KTLS.Rekey.State != stateUnavailable {
			t.Errorf("no kTLS, yet rekey is %s", statusText(r.KTLS.Rekey))
		}
	}
	if runtime.GOOS == "linux" && ulpErr == nil && !slices.Contains(r.KTLS.AvailableULP, "tls") {
		t.Errorf("tcp_available_ulp = %q after the probes, want tls in it", r.KTLS.AvailableULP)
	}
}

func checkAFALG(t *testing.T, r Report) {
	t.Helper()
	gcm := r.AFALG.AEADs[0]
	if gcm.Name != "gcm(aes)" {
		t.Fatalf("first AEAD %q", gcm.Name)
	}
	err := testenv.ProbeAFALG()
	switch {
	case err == nil:
		if r.AFALG.Socket.State != stateAvailable || gcm.Bind.State != stateAvailable {
			t.Errorf("AF_ALG gcm(aes) works here, the doctor says socket %s, bind %s", statusText(r.AFALG.Socket), statusText(gcm.Bind))
		}
	case errors.Is(err, backend.ErrNotSupported):
		if testenv.InVM() && testenv.ExpectedInVM(testenv.FeatureAFALG) {
			t.Errorf("AF_ALG gcm(aes) is missing in the VM: %v", err)
		}
		if gcm.Bind.State == stateAvailable {
			t.Errorf("AF_ALG gcm(aes) does not work here (%v), the doctor says bind %s", err, statusText(gcm.Bind))
		}
		if runtime.GOOS == "linux" && !strings.Contains(statusText(r.AFALG.Socket)+statusText(gcm.Bind), "ENOENT") &&
			!strings.Contains(statusText(r.AFALG.Socket), "EAFNOSUPPORT") {
			t.Errorf("AF_ALG refused (%v), the doctor's reason does not name the errno: socket %s, bind %s", err, statusText(r.AFALG.Socket), statusText(gcm.Bind))
		}
	default:
		t.Fatalf("the harness's AF_ALG probe: %v", err)
	}
	// Linux 7.3's af_alg_restrict, as the kernel has it.
	if restrict := testenv.AFALGRestriction(); restrict != 0 {
		if r.AFALG.Restrict == nil || *r.AFALG.Restrict != restrict {
			t.Errorf("af_alg_restrict is %d, the doctor says %v", restrict, r.AFALG.Restrict)
		}
		if restrict == 1 && (gcm.Bind.State != stateUnavailable || !strings.Contains(gcm.Bind.Reason, "af_alg_restrict is 1")) {
			t.Errorf("af_alg_restrict=1 refuses gcm(aes), the doctor says bind %s", statusText(gcm.Bind))
		}
	}
	if testenv.InVM() {
		// kTLS used both AEADs, so both are registered; the VM has no
		// crypto engine but its (emulated) CPU.
		for _, a := range r.AFALG.AEADs {
			if a.Driver == nil {
				t.Errorf("%s: no driver after kTLS used it", a.Name)
				continue
			}
			if a.Driver.Kind != kindCPU {
				t.Errorf("%s: %s is %s (%s), want cpu", a.Name, a.Driver.Driver, a.Driver.Kind, a.Driver.Signal)
			}
		}
	}
	if r.AFALG.DriverSource == "" || (r.AFALG.DriverSource == "/proc/crypto" && r.AFALG.DriverSourceNote == "") {
		t.Errorf("driver source %q (%q): the report must say where the drivers were read and why", r.AFALG.DriverSource, r.AFALG.DriverSourceNote)
	}
}

func checkNIC(t *testing.T, r Report) {
	t.Helper()
	if runtime.GOOS != "linux" {
		if r.NIC.Error == "" {
			t.Error("no error for NIC offload off Linux")
		}
		return
	}
	if r.NIC.Error != "" {
		// A kernel without ethtool netlink (before 5.6) cannot be
		// asked; the VM's and the host's kernels can.
		t.Errorf("NIC: %s", r.NIC.Error)
	}
	var lo *NICInterface
	for i := range r.NIC.Interfaces {
		if r.NIC.Interfaces[i].Loopback {
			lo = &r.NIC.Interfaces[i]
		}
	}
	if lo == nil {
		t.Fatalf("no loopback among %+v", r.NIC.Interfaces)
	}
	// No virtual device offloads kTLS (afalg-and-nic-offload.md, B.6).
	if lo.Error != "" || lo.TLSTX == nil || lo.TLSTX.Supported || lo.Summary != "no kTLS offload" {
		t.Errorf("lo: %+v", *lo)
	}
}

// checkCPU compares the CPU section with /proc/cpuinfo, the kernel's view,
// which the doctor does not read: on the host and in both VM architectures
// (the amd64 guest's AES-NI, the arm64 guest's AES and PMULL).
func checkCPU(t *testing.T, r Report) {
	t.Helper()
	if r.CPU.Arch != runtime.GOARCH {
		t.Errorf("CPU arch %q, want %q", r.CPU.Arch, runtime.GOARCH)
	}
	if runtime.GOOS != "linux" || (runtime.GOARCH != "amd64" && runtime.GOARCH != "arm64") {
		return
	}
	want, err := testenv.CPUInfoAESGCM()
	if err != nil {
		t.Fatal(err)
	}
	if r.CPU.AESGCM != want || r.CPU.GoAESGCM != want {
		t.Errorf("CPU: AES-GCM instructions %v, used by Go %v; /proc/cpuinfo says %v", r.CPU.AESGCM, r.CPU.GoAESGCM, want)
	}
	if len(r.CPU.Features) == 0 || r.CPU.Note != "" {
		t.Errorf("CPU: features %+v, note %q", r.CPU.Features, r.CPU.Note)
	}
}

func checkAuto(t *testing.T, r Report) {
	t.Helper()
	if len(r.Auto) != 2*(len(aeadSuites)+1) {
		t.Fatalf("%d choices, want %d", len(r.Auto), 2*(len(aeadSuites)+1))
	}
	for _, c := range r.Auto {
		if c.Error != "" || len(c.Candidates) == 0 || c.Engine != c.Candidates[0].Engine ||
			c.Candidates[len(c.Candidates)-1].Engine != "stdlib" {
			t.Errorf("%s %s %s: %+v", c.Version, c.Cipher, c.Direction, c)
			continue
		}
		if fips140.Enabled() {
			// The whole choice, whatever the host offers
			// (TestDoctorFIPS runs this).
			if want := []Candidate{{"stdlib", fipsReason}}; !slices.Equal(c.Candidates, want) {
				t.Errorf("%s %s %s in FIPS 140-3 mode: %+v, want %+v", c.Version, c.Cipher, c.Direction, c.Candidates, want)
			}
			continue
		}
		kernelOK := false
		for _, s := range r.KTLS.Suites {
			if s.SuiteID == c.SuiteID {
				st := s.TX
				if c.Direction == "rx" {
					st = s.RX
				}
				kernelOK = st.State == stateAvailable
			}
		}
		want := "userspace"
		switch {
		case c.Cipher == "AES-128-CBC":
			want = "stdlib"
		case kernelOK && !(c.Direction == "rx" && strings.HasPrefix(c.Cipher, "ChaCha20")):
			want = "kernel"
		}
		if c.Engine != want {
			t.Errorf("%s %s %s: auto chooses %s (%s), want %s", c.Version, c.Cipher, c.Direction, c.Engine, c.Candidates[0].Reason, want)
		}
		if want == "userspace" && !kernelOK && c.Direction == "tx" && !strings.Contains(c.Candidates[0].Reason, "kernel: ") {
			t.Errorf("%s %s %s: reason %q does not say why not kernel", c.Version, c.Cipher, c.Direction, c.Candidates[0].Reason)
		}
	}
	if r.Effective != nil {
		t.Errorf("effective choices without KTLS_BACKEND: %+v", r.Effective)
	}
}

// TestDoctorText checks the text a person reads, here.
func TestDoctorText(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"doctor"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d, stderr %s", code, stderr.String())
	}
	out := stdout.String()
	for _, s := range []string{"Host", "Kernel TLS", "AF_ALG", "NIC offload", "CPU", "Environment", "What auto chooses",
		"TLS 1.3 AES-128-GCM", "TLS 1.2 ChaCha20-Poly1305", "gcm(aes)", "rfc7539(chacha20,poly1305)"} {
		if !strings.Contains(out, s) {
			t.Errorf("the text lacks %q:\n%s", s, out)
		}
	}
	if runtime.GOOS != "linux" {
		return
	}
	if testenv.ProbeKTLS() == nil {
		if !regexp.MustCompile(`(?m)^  TLS ULP +available: `).MatchString(out) {
			t.Errorf("kTLS works, the text says:\n%s", out)
		}
		if strings.Contains(out, "no [") {
			t.Errorf("kTLS works for every suite here, the text has a \"no\":\n%s", out)
		}
	} else {
		for _, s := range []string{"unavailable: setsockopt(TCP_ULP, \"tls\"): ENOENT", "no [1]", "[1] the tls module is not available (TCP_ULP: ENOENT)"} {
			if !strings.Contains(out, s) {
				t.Errorf("no kTLS here, the text lacks %q:\n%s", s, out)
			}
		}
	}
}

// TestJSONShape pins the names of the JSON schema: a program that reads
// `ktls doctor -json` relies on them.
func TestJSONShape(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"doctor", "-json"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d, stderr %s", code, stderr.String())
	}
	var m map[string]any
	if err := json.Unmarshal(stdout.Bytes(), &m); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, stdout.String())
	}
	keys := func(v any) []string {
		var ks []string
		if o, ok := v.(map[string]any); ok {
			for k := range o {
				ks = append(ks, k)
			}
		}
		slices.Sort(ks)
		return ks
	}
	first := func(v any) any {
		if a, ok := v.([]any); ok && len(a) > 0 {
			return a[0]
		}
		return nil
	}
	obj := func(v any, k string) any {
		o, _ := v.(map[string]any)
		return o[k]
	}
	// Keys that are there only when they say something (omitempty).
	optional := []string{"error", "note", "others", "af_alg_restrict_meaning", "driver_source_note", "flags", "source", "reason", "machine",
		"GOFIPS140", "GODEBUG", "version", "agent_ports", "fix"}
	for _, tc := range []struct {
		what string
		v    any
		want string // the keys that are always there, sorted
	}{
		{"report", m, "afalg auto cpu effective fips140 handshake host ktls nic policy schema"},
		{"handshake", m["handshake"], "agents family"},
		{"fips140", m["fips140"], "meaning mode module"},
		{"host", m["host"], "arch go kernel os"},
		{"ktls", m["ktls"], "diagnosis rekey suites tcp_available_ulp ulp"},
		{"ktls.diagnosis", obj(m["ktls"], "diagnosis"), "cause explanation facts"},
		{"ktls.suites[0]", first(obj(m["ktls"], "suites")), "cipher rx suite suite_id tx version"},
		{"ktls.suites[0].tx", obj(first(obj(m["ktls"], "suites")), "tx"), "state"},
		{"afalg", m["afalg"], "aeads af_alg_restrict driver_source engine socket"},
		{"afalg.aeads[0]", first(obj(m["afalg"], "aeads")), "bind driver name serves"},
		{"nic", m["nic"], "engine interfaces source tls_stat"},
		{"nic.interfaces[0]", first(obj(m["nic"], "interfaces")), "index loopback name summary tls_hw_record tls_hw_rx_offload tls_hw_tx_offload up"},
		{"nic.interfaces[0].tls_hw_tx_offload", obj(first(obj(m["nic"], "interfaces")), "tls_hw_tx_offload"), "active supported"},
		{"cpu", m["cpu"], "aes_gcm arch features go_aes_gcm"},
		{"cpu.features[0]", first(obj(m["cpu"], "features")), "name present"},
		{"policy", m["policy"], "KTLS_BACKEND KTLS_STRICT meaning source spec strict"},
		{"auto[0]", first(m["auto"]), "candidates cipher direction engine suite suite_id version"},
		{"auto[0].candidates[0]", first(obj(first(m["auto"]), "candidates")), "engine reason"},
	} {
		if runtime.GOOS != "linux" && strings.HasPrefix(tc.what, "nic.") {
			continue // no interfaces are read
		}
		if tc.what == "cpu.features[0]" && len(cpuReport().Features) == 0 {
			continue
		}
		want := strings.Fields(tc.want)
		got := keys(tc.v)
		for _, k := range want {
			if !slices.Contains(got, k) {
				t.Errorf("%s: no key %q (keys %q)", tc.what, k, got)
			}
		}
		for _, k := range got {
			if !slices.Contains(want, k) && !slices.Contains(optional, k) {
				t.Errorf("%s: unexpected key %q: add it to the test and to the documented schema", tc.what, k)
			}
		}
	}
	if m["schema"] != float64(Schema) {
		t.Errorf("schema %v, want %d", m["schema"], Schema)
	}
	// Every status is one of the four states.
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			if s, ok := x["state"]; ok {
				if !slices.Contains([]any{stateAvailable, stateUnavailable, stateError, stateNotChecked}, s) {
					t.Errorf("state %v", s)
				}
			}
			for _, e := range x {
				walk(e)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	walk(m)
}

// TestDoctorEnvironment checks what the doctor makes of KTLS_BACKEND and
// KTLS_STRICT: the automatic choice stays the same, the effective one
// follows them, and the environment is left as it was.
func TestDoctorEnvironment(t *testing.T) {
	base := collect()
	t.Setenv("KTLS_BACKEND", "tx=kernel")
	r := collect()
	if os.Getenv("KTLS_BACKEND") != "tx=kernel" {
		t.Fatalf("KTLS_BACKEND = %q after the doctor", os.Getenv("KTLS_BACKEND"))
	}
	if r.Policy.Spec != "tx=kernel,rx=auto" || r.Policy.Source != "KTLS_BACKEND" || !strings.Contains(r.Policy.Meaning, "falls back") {
		t.Errorf("policy = %+v", r.Policy)
	}
	for i, c := range r.Auto {
		if c.Engine != base.Auto[i].Engine {
			t.Errorf("auto %s %s %s: %s with KTLS_BACKEND set, %s without", c.Version, c.Cipher, c.Direction, c.Engine, base.Auto[i].Engine)
		}
	}
	if len(r.Effective) != len(r.Auto) {
		t.Fatalf("%d effective choices, want %d", len(r.Effective), len(r.Auto))
	}
	for i, c := range r.Effective {
		if c.Direction != "tx" || c.Cipher == "AES-128-CBC" {
			continue
		}
		kernelOK := r.KTLS.Suites[i/2].TX.State == stateAvailable
		reason := c.Candidates[0].Reason
		if kernelOK && (c.Engine != "kernel" || reason != "forced") ||
			!kernelOK && (c.Engine != "userspace" || !strings.HasPrefix(reason, "forced kernel unavailable: ")) {
			t.Errorf("KTLS_BACKEND=tx=kernel, %s %s tx: %s (%s)", c.Version, c.Cipher, c.Engine, reason)
		}
	}

	t.Setenv("KTLS_BACKEND", "kernel")
	t.Setenv("KTLS_STRICT", "1")
	r = collect()
	if !r.Policy.StrictMode || !strings.Contains(r.Policy.Meaning, "StrictError") {
		t.Errorf("policy = %+v", r.Policy)
	}
	for _, c := range r.Effective[:2] {
		kernelOK := r.KTLS.Suites[0].TX.State == stateAvailable
		if kernelOK && c.Engine != "kernel" || !kernelOK && !strings.Contains(c.Error, "cannot serve") {
			t.Errorf("KTLS_BACKEND=kernel KTLS_STRICT=1, %s %s: %+v", c.Cipher, c.Direction, c)
		}
	}

	t.Setenv("KTLS_BACKEND", "kernal")
	r = collect()
	if !strings.Contains(r.Policy.Error, "kernal") || r.Effective[0].Error == "" || r.Auto[0].Error != "" {
		t.Errorf("KTLS_BACKEND=kernal: policy %+v, effective %+v, auto %+v", r.Policy, r.Effective[0], r.Auto[0])
	}
}

// fipsReason is the reason of every direction in FIPS 140-3 mode, as the
// selector gives it.
const fipsReason = "FIPS 140-3 mode: only crypto/tls's record layer is inside the Go Cryptographic Module"

// fipsChildEnv marks the child runs of TestDoctorFIPS, and names the mode
// the child was started in.
const fipsChildEnv = "KTLS_TEST_DOCTOR_FIPS"

// TestDoctorFIPS runs the doctor in child processes of this test binary, one
// per fips140 GODEBUG setting (off, on, only): the mode is set at start-up
// and "can't be changed after the program has started" (crypto/fips140), so
// a child is the only way to see each.
func TestDoctorFIPS(t *testing.T) {
	if os.Getenv(fipsChildEnv) != "" {
		t.Skip("the child run")
	}
	for _, mode := range []string{"off", "on", "only"} {
		t.Run(mode, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestDoctorFIPSChild$", "-test.v")
			cmd.Env = append(os.Environ(), fipsChildEnv+"="+mode, "GODEBUG=fips140="+mode, "KTLS_BACKEND=", "KTLS_STRICT=")
			out, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(out), "--- PASS: TestDoctorFIPSChild ") {
				t.Fatalf("child with GODEBUG=fips140=%s: %v\n%s", mode, err, out)
			}
		})
	}
}

// TestDoctorFIPSChild is TestDoctorFIPS's child: the report's FIPS section,
// the automatic choice and, with an engine forced, the effective one.
func TestDoctorFIPSChild(t *testing.T) {
	mode := os.Getenv(fipsChildEnv)
	if mode == "" {
		t.Skip("run by TestDoctorFIPS in a child process")
	}
	if on := mode != "off"; fips140.Enabled() != on || fips140.Enforced() != (mode == "only") {
		t.Fatalf("GODEBUG=%s: fips140.Enabled() = %v, Enforced() = %v", os.Getenv("GODEBUG"), fips140.Enabled(), fips140.Enforced())
	}
	r := collect()
	if r.FIPS.Mode != mode || r.FIPS.GODEBUG != mode || r.FIPS.Module == "" || r.FIPS.Error != "" {
		t.Errorf("FIPS = %+v, want mode and GODEBUG %s", r.FIPS, mode)
	}
	if stays := strings.Contains(r.FIPS.Meaning, "every connection stays on stdlib"); stays != (mode != "off") {
		t.Errorf("mode %s: meaning %q", mode, r.FIPS.Meaning)
	}
	for _, e := range []string{r.Host.Error, r.KTLS.Error, r.Policy.Error, r.CPU.Note} {
		if strings.Contains(e, "internal error") {
			t.Errorf("a section panicked: %s", e)
		}
	}
	checkAuto(t, r)

	var text bytes.Buffer
	if err := writeText(&text, r); err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^FIPS 140-3 mode \(crypto/fips140\)\n  mode +` + mode + `$`).MatchString(text.String()) {
		t.Errorf("the text lacks the FIPS section with mode %s:\n%s", mode, text.String())
	}

	// A forced engine, strict: in FIPS 140-3 mode a StrictError for every
	// suite and direction, whatever the host offers.
	t.Setenv("KTLS_BACKEND", "userspace")
	t.Setenv("KTLS_STRICT", "1")
	r = collect()
	for _, c := range r.Effective {
		switch {
		case mode != "off":
			if want := "selector: KTLS_STRICT: " + c.Direction + " forced to userspace, which cannot serve: " + fipsReason; c.Error != want {
				t.Errorf("KTLS_BACKEND=userspace KTLS_STRICT=1, %s %s %s: %+v, want the error %q", c.Version, c.Cipher, c.Direction, c, want)
			}
		case c.Cipher == "AES-128-CBC":
			if c.Error == "" {
				t.Errorf("KTLS_BACKEND=userspace KTLS_STRICT=1, %s %s: %+v, want a StrictError", c.Cipher, c.Direction, c)
			}
		default:
			if c.Error != "" || c.Engine != "userspace" {
				t.Errorf("KTLS_BACKEND=userspace KTLS_STRICT=1, %s %s %s: %+v, want userspace", c.Version, c.Cipher, c.Direction, c)
			}
		}
	}
}

func TestGodebugSetting(t *testing.T) {
	for _, tc := range []struct{ godebug, want string }{
		{"", ""},
		{"fips140=on", "on"},
		{"http2client=0,fips140=only", "only"},
		{"fips140=on, fips140=only", "only"},
		{"fips1400=on,xfips140=on", ""},
		{"fips140", ""},
	} {
		if got := godebugSetting(tc.godebug, "fips140"); got != tc.want {
			t.Errorf("godebugSetting(%q) = %q, want %q", tc.godebug, got, tc.want)
		}
	}
}

func TestRunArgs(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
	}{
		{nil, 2},
		{[]string{"bogus"}, 2},
		{[]string{"doctor", "-bogus"}, 2},
		{[]string{"doctor", "extra"}, 2},
		{[]string{"help"}, 0},
		{[]string{"doctor", "-h"}, 0},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(tc.args, &stdout, &stderr); code != tc.code {
			t.Errorf("run(%q) = %d, want %d; stderr %s", tc.args, code, tc.code, stderr.String())
		}
		if tc.code == 2 && !strings.Contains(stderr.String(), "usage: ktls doctor") {
			t.Errorf("run(%q): stderr %q lacks the usage", tc.args, stderr.String())
		}
	}
}

func TestGuard(t *testing.T) {
	var e string
	guard(&e, func() { panic("a bug") })
	if !strings.Contains(e, "a bug") {
		t.Errorf("guard: %q", e)
	}
}

// fdCount returns the number of open file descriptors, -1 where there is no
// /proc/self/fd.
func fdCount() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(ents)
}

// TestDoctorStats reads the counters of this process from a real expvar
// endpoint (package ktlsexpvar's variable, served by expvar.Handler over
// loopback HTTP) after a ktls connection, as text and as JSON; and fails
// clearly where the endpoint has no "ktls" variable, or is no endpoint.
func TestDoctorStats(t *testing.T) {
	srv := httptest.NewServer(expvar.Handler())
	defer srv.Close()

	ccfg, scfg := testpki.Configs(tls.VersionTLS13, 0)
	k, s := ktlstest.PairWithStock(t, false, ccfg, scfg, ktls.WithBackend("userspace"))
	testenv.Exchange(t, k, s, 3<<20)
	ktlstest.CloseBoth(t, k, s)
	want := ktls.Stats()

	var stdout, stderr bytes.Buffer
	if code := run([]string{"doctor", "-stats", srv.URL}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d, stderr %s", code, stderr.String())
	}
	out := stdout.String()
	t.Logf("\n%s", out)
	// The userspace row: at least this connection, and its 3 MiB each way.
	row := regexp.MustCompile(`(?m)^  userspace +(\d+) +(\d+) +(\d+) \([0-9.]+ [KMG]iB\) +(\d+) `).FindStringSubmatch(out)
	if row == nil {
		t.Fatalf("no userspace row with counts:\n%s", out)
	}
	for i, min := range []uint64{1, 1, 3 << 20, 3 << 20} {
		n, _ := strconv.ParseUint(row[i+1], 10, 64)
		if n < min {
			t.Errorf("userspace column %d is %d, want at least %d", i+1, n, min)
		}
	}
	for _, s := range []string{"sendfile", "splice out of kTLS RX", "splice into kTLS TX", "KeyUpdates", "Handshake failures", "unavailable", "strict"} {
		if !strings.Contains(out, s) {
			t.Errorf("the text lacks %q", s)
		}
	}

	stdout.Reset()
	if code := run([]string{"doctor", "-stats", srv.URL, "-json"}, &stdout, &stderr); code != 0 {
		t.Fatalf("-json: exit %d, stderr %s", code, stderr.String())
	}
	var got ktls.Counters
	dec := json.NewDecoder(&stdout)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&got); err != nil {
		t.Fatalf("-json: %v", err)
	}
	if got.TX.Connections.Userspace < want.TX.Connections.Userspace || got.RX.Bytes.Userspace < want.RX.Bytes.Userspace {
		t.Errorf("-json gave %+v, less than ktls.Stats() before it, %+v", got, want)
	}

	// An endpoint without the variable: the error says what to import.
	other := http.NewServeMux()
	other.HandleFunc("/debug/vars", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, `{"cmdline": ["x"], "memstats": {}}`) })
	plain := httptest.NewServer(other)
	defer plain.Close()
	for _, tc := range []struct{ url, want string }{
		{plain.URL + "/debug/vars", `has no "ktls" variable: the program must import github.com/ktls-go/ktls/ktlsexpvar`},
		{strings.TrimPrefix(plain.URL, "http://"), `has no "ktls" variable`}, // host:port alone: /debug/vars
		{plain.URL + "/nothing", "404 Not Found"},
	} {
		stdout.Reset()
		stderr.Reset()
		if code := run([]string{"doctor", "-stats", tc.url}, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), tc.want) || stdout.Len() != 0 {
			t.Errorf("-stats %s: exit %d, stderr %q, stdout %q; want 1 and %q", tc.url, code, stderr.String(), stdout.String(), tc.want)
		}
	}
}
