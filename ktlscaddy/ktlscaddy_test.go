package ktlscaddy_test

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	"github.com/ktls-go/ktls"
	_ "github.com/ktls-go/ktls/ktlscaddy"
	"github.com/ktls-go/ktls/selector"
)

// runCaddyEnv makes the test binary Caddy itself (as xcaddy builds one: a
// main that calls caddycmd.Main with the standard modules and this one), so
// the tests run a real Caddy process where no Go toolchain is, in the VMs.
const runCaddyEnv = "KTLSCADDY_TEST_RUN_CADDY"

// vmEnv is what the VM harness sets to "1" for every test binary in a guest,
// where the kernel is known to have kTLS (internal/testing/testenv.EnvVar;
// a nested module cannot import the root's internal packages).
const vmEnv = "KTLS_VMTEST"

func TestMain(m *testing.M) {
	if os.Getenv(runCaddyEnv) == "1" {
		caddycmd.Main()
		return
	}
	os.Exit(m.Run())
}

// site is a temporary directory served by a Caddy process.
type site struct {
	dir     string
	port    string
	logPath string
	root    string   // the internal CA's root certificate
	file    []byte   // www/big.bin's contents
	extra   []string // more arguments for curl
}

// serverConfig is the JSON config of one HTTPS server on a free loopback
// port with a certificate for localhost from Caddy's internal CA (automatic
// HTTPS, as for any site), serving dir/www; wrappers is its
// listener_wrappers (nil: Caddy's default).
func serverConfig(dir string, wrappers []map[string]any) map[string]any {
	srv := map[string]any{
		"listen":          []string{"127.0.0.1:0"},
		"protocols":       []string{"h1", "h2"},
		"automatic_https": map[string]any{"disable_redirects": true},
		"logs":            map[string]any{},
		"routes": []any{
			map[string]any{
				"match": []any{map[string]any{"host": []string{"localhost"}, "path": []string{"/info"}}},
				"handle": []any{map[string]any{
					"handler": "static_response",
					"body":    "{http.request.proto} {http.request.scheme} {http.request.tls.version} {http.request.tls.cipher_suite}",
				}},
			},
			map[string]any{
				"match":  []any{map[string]any{"host": []string{"localhost"}}},
				"handle": []any{map[string]any{"handler": "file_server", "root": filepath.Join(dir, "www")}},
			},
		},
	}
	if wrappers != nil {
		srv["listener_wrappers"] = wrappers
	}
	return map[string]any{
		"admin":   map[string]any{"disabled": true, "config": map[string]any{"persist": false}},
		"storage": map[string]any{"module": "file_system", "root": filepath.Join(dir, "storage")},
		"logging": map[string]any{"logs": map[string]any{"default": map[string]any{
			"level":   "DEBUG",
			"writer":  map[string]any{"output": "stderr"},
			"encoder": map[string]any{"format": "json"},
		}}},
		"apps": map[string]any{
			// Never touch the system's trust store.
			"pki":  map[string]any{"certificate_authorities": map[string]any{"local": map[string]any{"install_trust": false}}},
			"http": map[string]any{"servers": map[string]any{"srv0": srv}},
		},
	}
}

// caddyEnv is the environment of a Caddy process or an in-process Caddy:
// everything it writes stays under dir.
func caddyEnv(dir string) map[string]string {
	return map[string]string{
		"HOME":            filepath.Join(dir, "home"),
		"XDG_DATA_HOME":   filepath.Join(dir, "data"),
		"XDG_CONFIG_HOME": filepath.Join(dir, "config"),
		"XDG_CACHE_HOME":  filepath.Join(dir, "cache"),
	}
}

// startSite runs this test binary as Caddy with the config, waits for its
// port and its certificate, and stops it at the end of the test.
func startSite(t *testing.T, wrappers []map[string]any, curlArgs ...string) *site {
	t.Helper()
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatalf("curl, the client of these tests, is missing (scripts/test installs it, the VM harness packs it): %v", err)
	}
	dir := t.TempDir()
	s := &site{dir: dir, logPath: filepath.Join(dir, "caddy.log"), extra: curlArgs,
		root: filepath.Join(dir, "storage", "pki", "authorities", "local", "root.crt")}
	if err := os.MkdirAll(filepath.Join(dir, "www"), 0o755); err != nil {
		t.Fatal(err)
	}
	// A few MiB, not a multiple of any record or buffer size.
	s.file = make([]byte, 4<<20+12345)
	rand.Read(s.file)
	if err := os.WriteFile(filepath.Join(dir, "www", "big.bin"), s.file, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := json.Marshal(serverConfig(dir, wrappers))
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "caddy.json")
	if err := os.WriteFile(cfgPath, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(s.logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(os.Args[0], "run", "--config", cfgPath)
	cmd.Env = append(os.Environ(), runCaddyEnv+"=1")
	for k, v := range caddyEnv(dir) {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stdout = logf
	cmd.Stderr = logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{}) // closed when cmd.Wait returns, with waitErr set
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-exited
			t.Errorf("caddy did not stop within 30s of SIGINT")
		}
		// Caddy exits 0 after a graceful stop on SIGINT; under -race the
		// detector's reports (and its exit status 66) land here too.
		if waitErr != nil {
			t.Errorf("caddy exited: %v", waitErr)
		}
		if b, _ := os.ReadFile(s.logPath); bytes.Contains(b, []byte("DATA RACE")) {
			t.Errorf("the race detector reported a race in caddy")
		}
		if t.Failed() {
			b, _ := os.ReadFile(s.logPath)
			t.Logf("caddy's log:\n%s", b)
		}
	})

	// The port (Caddy logs the one the kernel chose for :0), then the
	// certificate: retry until a request goes through.
	deadline := time.Now().Add(2 * time.Minute) // the VMs emulate the CPU
	for s.port == "" {
		for _, e := range s.entries(t) {
			if e["msg"] == "port 0 listener" {
				if a, ok := e["actual_address"].(string); ok {
					s.port = a[strings.LastIndex(a, ":")+1:]
				}
			}
		}
		select {
		case <-exited:
			t.Fatalf("caddy exited: %v", waitErr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("caddy logged no listener")
		}
		time.Sleep(50 * time.Millisecond)
	}
	for {
		if _, err := os.Stat(s.root); err == nil {
			if _, _, err := s.curl("--http1.1", "/info"); err == nil {
				break
			}
		}
		if time.Now().After(deadline) {
			_, _, err := s.curl("--http1.1", "/info")
			t.Fatalf("no HTTPS response from caddy: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	return s
}

// curl fetches path over HTTPS with TLS 1.3 and AES-128-GCM (which the
// kernel takes both ways on every kernel of the VM matrix), returning the
// body and the HTTP version curl used.
func (s *site) curl(proto, path string) ([]byte, string, error) {
	out := filepath.Join(s.dir, "out")
	os.Remove(out)
	args := append([]string{"--silent", "--show-error", "--fail", proto,
		"--tlsv1.3", "--tls13-ciphers", "TLS_AES_128_GCM_SHA256",
		"--cacert", s.root,
		"--resolve", "localhost:" + s.port + ":127.0.0.1",
		"--max-time", "60",
		"--output", out, "--write-out", "%{http_version}"}, s.extra...)
	cmd := exec.Command("curl", append(args, "https://localhost:"+s.port+path)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	version, err := cmd.Output()
	if err != nil {
		return nil, "", fmt.Errorf("%v: %v: %s", cmd.Args, err, stderr.Bytes())
	}
	body, err := os.ReadFile(out)
	return body, string(version), err
}

// entries are the JSON lines Caddy logged so far.
func (s *site) entries(t *testing.T) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(s.logPath)
	if err != nil {
		t.Fatal(err)
	}
	var es []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var e map[string]any
		if json.Unmarshal(sc.Bytes(), &e) == nil {
			es = append(es, e)
		}
	}
	return es
}

// logged waits until Caddy logged n entries with message msg from the ktls
// wrapper's logger, and returns them.
func (s *site) logged(t *testing.T, msg string, n int) []map[string]any {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var got []map[string]any
		for _, e := range s.entries(t) {
			if e["msg"] == msg && strings.HasSuffix(fmt.Sprint(e["logger"]), "listeners.ktls") {
				got = append(got, e)
			}
		}
		if len(got) >= n || time.Now().After(deadline) {
			return got
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// wantEngine is the engine both directions of a TLS 1.3 AES-128-GCM
// connection must get here: in the VMs the kernel's (unless KTLS_BACKEND
// forces another), elsewhere what ktls's own policy puts first on this host
// (userspace where the kernel has no tls module).
func wantEngine(t *testing.T, d selector.Direction) string {
	t.Helper()
	cands, err := ktls.Candidates(tls.VersionTLS13, tls.TLS_AES_128_GCM_SHA256, d)
	if err != nil {
		t.Fatal(err)
	}
	want := cands[0].Name
	if os.Getenv(vmEnv) == "1" && os.Getenv("KTLS_BACKEND") == "" && want != "kernel" {
		t.Fatalf("in the VM, where the kernel has kTLS, ktls's policy puts %s first for %v: %s", want, d, cands[0].Reason)
	}
	return want
}

// TestServe serves a directory through Caddy with the ktls wrapper and
// fetches a file with curl over HTTP/1.1 and HTTP/2: the bytes, the
// protocol, Request.TLS as Caddy's handlers see it, and each connection's
// engines from Caddy's log. Also behind Caddy's proxy_protocol wrapper,
// whose conn ktls sees under the *tls.Conn (docs/ARCHITECTURE.md, Conns
// that arrive wrapped): the kernel engine takes its socket in the VMs too.
func TestServe(t *testing.T) {
	t.Run("ktls", func(t *testing.T) {
		s := startSite(t, []map[string]any{{"wrapper": "ktls"}})
		serve(t, s)
		// Plain HTTP to the HTTPS port: the handshake fails in net/http's
		// first Read, and the connection closes with no reply (net/http
		// writes its 400 only on a *tls.Conn's underlying conn; README).
		c, err := net.Dial("tcp", "127.0.0.1:"+s.port)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(time.Minute))
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
		// Closed with the request unread: a reset (RFC 9293 §3.6.1), or EOF.
		if b, err := io.ReadAll(c); len(b) > 0 || (err != nil && !errors.Is(err, syscall.ECONNRESET)) {
			t.Errorf("plain HTTP to the HTTPS port: got %q, %v; want the connection closed", b, err)
		}
	})
	t.Run("proxy_protocol", func(t *testing.T) {
		serve(t, startSite(t, []map[string]any{
			{"wrapper": "proxy_protocol", "allow": []string{"127.0.0.1/32"}},
			{"wrapper": "tls"},
			{"wrapper": "ktls"},
		}, "--haproxy-protocol"))
	})
}

func serve(t *testing.T, s *site) {
	sum := sha256.Sum256(s.file)
	for _, tc := range []struct{ flag, version, proto string }{
		{"--http1.1", "1.1", "HTTP/1.1"},
		{"--http2", "2", "HTTP/2.0"},
	} {
		body, version, err := s.curl(tc.flag, "/big.bin")
		if err != nil {
			t.Fatal(err)
		}
		if version != tc.version {
			t.Errorf("%s: curl spoke HTTP/%s", tc.flag, version)
		}
		if got := sha256.Sum256(body); got != sum {
			t.Errorf("%s: got %d bytes, sha256 %x; want %d bytes, %x", tc.flag, len(body), got, len(s.file), sum)
		}
		// Request.TLS, which Caddy fills from the conn's ConnectionState
		// since net/http does not (package documentation).
		info, version, err := s.curl(tc.flag, "/info")
		if err != nil {
			t.Fatal(err)
		}
		if want := tc.proto + " https tls1.3 TLS_AES_128_GCM_SHA256"; string(info) != want || version != tc.version {
			t.Errorf("%s: /info says %q over HTTP/%s, want %q", tc.flag, info, version, want)
		}
	}

	// Every connection so far: startSite's first success, then four.
	hs := s.logged(t, "ktls handshake", 5)
	if len(hs) < 5 {
		t.Fatalf("caddy logged %d ktls handshakes, want at least 5", len(hs))
	}
	wantTX, wantRX := wantEngine(t, selector.TX), wantEngine(t, selector.RX)
	alpn := map[string]int{}
	for _, e := range hs {
		if e["tx"] != wantTX || e["rx"] != wantRX {
			t.Errorf("a connection got tx=%v rx=%v (%v), want tx=%s rx=%s", e["tx"], e["rx"], e["reason"], wantTX, wantRX)
		}
		if e["version"] != "TLS 1.3" || e["cipher_suite"] != "TLS_AES_128_GCM_SHA256" || e["server_name"] != "localhost" {
			t.Errorf("a connection logged %v %v for %v", e["version"], e["cipher_suite"], e["server_name"])
		}
		alpn[fmt.Sprint(e["alpn"])]++
	}
	if alpn["h2"] != 2 || alpn["http/1.1"] < 3 {
		t.Errorf("ALPN of the connections: %v, want 2 h2 and at least 3 http/1.1", alpn)
	}
	t.Logf("engines: tx=%s rx=%s (%v)", wantTX, wantRX, hs[0]["reason"])

	// No io.ReaderFrom call reaches the ktls conn, so no sendfile(2): Caddy
	// hands net/http the conn inside its tlsStateConn, whose method set is
	// net.Conn's (modules/caddyhttp/http2listener.go), and net/http's
	// (*response).ReadFrom then copies through Write. If this fails, Caddy
	// passes io.ReaderFrom on now: the README's Caddy section must say so.
	closes := s.logged(t, "ktls close", len(hs))
	if len(closes) < len(hs) {
		t.Fatalf("caddy logged %d ktls closes for %d connections", len(closes), len(hs))
	}
	for _, e := range closes {
		if n, _ := e["read_from_calls"].(float64); n != 0 {
			t.Errorf("a connection got %v ReadFrom calls: Caddy no longer hides io.ReaderFrom; update the README", n)
		}
	}
}

// TestOptIn: a Caddy that includes the module but does not name it serves
// with crypto/tls as before: the same requests work, and no connection goes
// through ktls.
func TestOptIn(t *testing.T) {
	s := startSite(t, nil)
	body, _, err := s.curl("--http1.1", "/big.bin")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(body, s.file) {
		t.Errorf("got %d bytes, want the file's %d", len(body), len(s.file))
	}
	info, _, err := s.curl("--http2", "/info")
	if err != nil {
		t.Fatal(err)
	}
	if want := "HTTP/2.0 https tls1.3 TLS_AES_128_GCM_SHA256"; string(info) != want {
		t.Errorf("/info says %q, want %q", info, want)
	}
	for _, e := range s.entries(t) {
		if strings.Contains(fmt.Sprint(e["logger"]), "ktls") || strings.Contains(fmt.Sprint(e["msg"]), "ktls") {
			t.Errorf("caddy logged %v from ktls with the module not named", e)
		}
	}
}

// TestPlace: the wrapper must come first (the http app puts its tls
// placeholder before it) or follow tls directly, and once per server:
// otherwise Caddy refuses the config when it provisions it.
func TestPlace(t *testing.T) {
	dir := t.TempDir()
	for k, v := range caddyEnv(dir) {
		t.Setenv(k, v)
	}
	for _, tc := range []struct {
		wrappers []string
		err      string
	}{
		{[]string{"ktls"}, ""},
		{[]string{"proxy_protocol", "tls", "ktls"}, ""},
		// Caddy's own rule: tls first is the default, and refused.
		{[]string{"tls", "ktls"}, "unnecessary to specify the TLS listener wrapper in the first position"},
		{[]string{"ktls", "tls"}, "must come right after the tls one, not before it"},
		{[]string{"proxy_protocol", "ktls", "tls"}, `not after "proxy_protocol"`},
		{[]string{"tls", "http_redirect", "ktls"}, `not after "http_redirect"`},
		{[]string{"ktls", "ktls"}, "may appear once per server"},
	} {
		var ws []map[string]any
		for _, w := range tc.wrappers {
			ws = append(ws, map[string]any{"wrapper": w})
		}
		c := serverConfig(dir, ws)
		c["logging"] = map[string]any{"logs": map[string]any{"default": map[string]any{"writer": map[string]any{"output": "discard"}}}}
		b, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		var cfg caddy.Config
		if err := json.Unmarshal(b, &cfg); err != nil {
			t.Fatal(err)
		}
		err = caddy.Validate(&cfg)
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%v: %v", tc.wrappers, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%v: got error %v, want one that says %q", tc.wrappers, err, tc.err)
		}
	}
}

// TestCaddyfile: the Caddyfile form of the wrapper and its options adapt to
// the JSON the module reads.
func TestCaddyfile(t *testing.T) {
	const cf = `{
	servers {
		listener_wrappers {
			proxy_protocol
			tls
			ktls {
				backend tx=kernel,rx=userspace
				strict
			}
		}
	}
}
localhost {
	file_server
}
`
	out, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(cf), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) > 0 {
		t.Logf("warnings: %v", warnings)
	}
	want := `"listener_wrappers":[{"wrapper":"proxy_protocol"},{"wrapper":"tls"},{"backend":"tx=kernel,rx=userspace","strict":true,"wrapper":"ktls"}]`
	if !bytes.Contains(out, []byte(want)) {
		t.Errorf("adapted config lacks %s:\n%s", want, out)
	}
	if _, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(strings.Replace(cf, "strict", "bogus", 1)), nil); err == nil {
		t.Error("an unknown ktls option adapted without an error")
	}
}

// TestCommand builds ktlscaddy/cmd/caddy, the main a user builds (as xcaddy
// would), and asks it for its modules. It needs the Go toolchain, which the
// VMs do not have (there the test binary itself is Caddy, above).
func TestCommand(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go command on PATH (as in the VMs), so nothing to build with: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "caddy")
	build := exec.Command(gobin, "build", "-o", bin, "./cmd/caddy")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/caddy: %v\n%s", err, out)
	}
	list := exec.Command(bin, "list-modules")
	for k, v := range caddyEnv(t.TempDir()) {
		list.Env = append(list.Env, k+"="+v)
	}
	out, err := list.CombinedOutput()
	if err != nil {
		t.Fatalf("caddy list-modules: %v\n%s", err, out)
	}
	if !bytes.Contains(out, []byte("caddy.listeners.ktls\n")) {
		t.Errorf("caddy list-modules does not list caddy.listeners.ktls:\n%s", out)
	}
}
