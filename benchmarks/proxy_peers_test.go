//go:build linux

package benchmarks

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ktls-go/ktls/internal/testing/testenv"
	"github.com/ktls-go/ktls/internal/testing/testpki"
)

// A proxyKind is one conn= of BenchmarkProxy: how to find its program and
// the command line that makes it listen on port and forward to backend.
type proxyKind struct {
	name string
	// find returns the program's path, or why there is none.
	find func(b *testing.B) (path, skip string)
	// args returns the arguments and writes any configuration file into
	// dir.
	args func(b *testing.B, dir string, port int, backend string, pki proxyPKI) []string
}

var proxyKinds = []proxyKind{
	{
		name: "tcp",
		find: func(*testing.B) (string, string) { return os.Args[0], "" },
		args: func(_ *testing.B, _ string, port int, backend string, _ proxyPKI) []string {
			return nil // forwardMain, through forwardEnv (startProxy)
		},
	},
	{
		name: "ktls-proxy",
		find: ktlsProxyBinary,
		args: func(_ *testing.B, _ string, port int, backend string, pki proxyPKI) []string {
			return []string{"proxy", "-listen", fmt.Sprintf("127.0.0.1:%d", port), "-backend", backend, "-cert", pki.cert, "-key", pki.key}
		},
	},
	{
		// stunnel.conf in stunnel(8): one service, in the foreground with
		// its log on stderr; no pid file.
		name: "stunnel4",
		find: lookProgram("stunnel4", "stunnel"),
		args: func(b *testing.B, dir string, port int, backend string, pki proxyPKI) []string {
			conf := fmt.Sprintf("foreground = yes\npid =\ndebug = 4\n[bench]\naccept = 127.0.0.1:%d\nconnect = %s\ncert = %s\nkey = %s\nciphersuites = %s\n",
				port, backend, pki.cert, pki.key, proxyTLS13Suite)
			return []string{writeConf(b, dir, "stunnel.conf", conf)}
		},
	},
	{
		// hitch(8): one worker, no daemon, the key and chain in one PEM
		// file; no configuration file is read without --config. hitch
		// refuses to run its workers as root: as root they run as
		// nobody, whom vmtest's guests know too.
		name: "hitch",
		find: lookProgram("hitch"),
		args: func(_ *testing.B, dir string, port int, backend string, pki proxyPKI) []string {
			args := []string{"--daemon=off", "--workers=1", "--quiet",
				fmt.Sprintf("--frontend=[127.0.0.1]:%d", port), "--backend=[" + strings.Replace(backend, ":", "]:", 1),
				"--tls-protos=TLSv1.2 TLSv1.3"}
			if os.Geteuid() == 0 {
				args = append(args, "--user=nobody")
			}
			return append(args, pki.pem)
		},
	},
	{
		// HAProxy's configuration manual: mode tcp, a bind line with
		// "ssl crt" (the key and chain in one PEM file), one thread; -db
		// keeps it in the foreground, -f names the file.
		name: "haproxy",
		find: func(b *testing.B) (string, string) {
			p, skip := lookProgram("haproxy")(b)
			if skip == "" && runtime.GOARCH == "amd64" && !cpuFlag("cx16") {
				// Debian's build executes CMPXCHG16B unconditionally
				// (SIGILL without it), which vmtest's default amd64
				// guest CPU leaves out (internal/testing/vmtest/README.md,
				// "TCG and Debian's 6.12"); -cpu max has it.
				return "", "haproxy needs CMPXCHG16B, which this CPU lacks (in vmtest: -cpu max)"
			}
			return p, skip
		},
		args: func(b *testing.B, dir string, port int, backend string, pki proxyPKI) []string {
			conf := fmt.Sprintf("global\n\tnbthread 1\n\tssl-default-bind-ciphersuites %s\n"+
				"defaults\n\tmode tcp\n\ttimeout connect 10s\n\ttimeout client 10m\n\ttimeout server 10m\n"+
				"frontend tls\n\tbind 127.0.0.1:%d ssl crt %s\n\tdefault_backend plain\n"+
				"backend plain\n\tserver s %s\n", proxyTLS13Suite, port, pki.pem, backend)
			return []string{"-db", "-f", writeConf(b, dir, "haproxy.cfg", conf)}
		},
	},
	{
		// nginx's stream module (ngx_stream_ssl_module, ngx_stream_proxy_
		// module): one process in the foreground (daemon off,
		// master_process off), OpenSSL's kTLS asked for by
		// ssl_conf_command Options KTLS (SSL_CONF_cmd(3)); -p makes the
		// temporary files' prefix writable, -e stderr the log before the
		// configuration is read.
		name: "nginx",
		find: func(b *testing.B) (string, string) {
			p, skip := lookProgram("nginx")(b)
			if skip == "" {
				if _, err := os.Stat(nginxStreamModule); err != nil {
					return "", fmt.Sprintf("nginx has no stream module (Debian: libnginx-mod-stream): %v", err)
				}
			}
			return p, skip
		},
		args: func(b *testing.B, dir string, port int, backend string, pki proxyPKI) []string {
			conf := fmt.Sprintf("load_module %s;\ndaemon off;\nmaster_process off;\nworker_processes 1;\n"+
				"pid %s/nginx.pid;\nerror_log stderr warn;\nevents { worker_connections 64; }\n"+
				"stream {\n\tserver {\n\t\tlisten 127.0.0.1:%d ssl;\n\t\tssl_certificate %s;\n\t\tssl_certificate_key %s;\n"+
				"\t\tssl_protocols TLSv1.2 TLSv1.3;\n\t\tssl_conf_command Options KTLS;\n\t\tssl_conf_command Ciphersuites %s;\n\t\tproxy_pass %s;\n\t}\n}\n",
				nginxStreamModule, dir, port, pki.cert, pki.key, proxyTLS13Suite, backend)
			return []string{"-p", dir, "-e", "stderr", "-c", writeConf(b, dir, "nginx.conf", conf)}
		},
	},
}

// cpuFlag reports whether /proc/cpuinfo's flags line names flag.
func cpuFlag(flag string) bool {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "flags" {
			return slices.Contains(strings.Fields(v), flag)
		}
	}
	return false
}

// proxyTLS13Suite is the one TLS 1.3 suite the proxies offer, in OpenSSL's
// spelling (SSL_CTX_set_ciphersuites(3)): crypto/tls's client cannot
// restrict its TLS 1.3 suites, and HAProxy, preferring its own order, chose
// AES-256-GCM. hitch has no such setting; it follows the client's order
// (--prefer-server-ciphers is off by default), and crypto/tls puts
// AES-128-GCM first on AES hardware. proxyOp checks what was negotiated.
const proxyTLS13Suite = "TLS_AES_128_GCM_SHA256"

// nginxStreamModule is where Debian's libnginx-mod-stream puts the module.
const nginxStreamModule = "/usr/lib/nginx/modules/ngx_stream_module.so"

// lookProgram finds the first of names in $PATH (and /usr/sbin, which is
// not in every user's), or says that none is installed: the rows skip, the
// programs are optional.
func lookProgram(names ...string) func(*testing.B) (string, string) {
	return func(*testing.B) (string, string) {
		for _, n := range names {
			if p, err := exec.LookPath(n); err == nil {
				return p, ""
			}
			if p := filepath.Join("/usr/sbin", n); isExecutable(p) {
				return p, ""
			}
		}
		return "", fmt.Sprintf("%s not installed (optional; see benchmarks/RESULTS.md, Proxy)", names[0])
	}
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

func writeConf(b *testing.B, dir, name, text string) string {
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		b.Fatal(err)
	}
	return p
}

// ktlsEnv names a ktls binary for the ktls-proxy rows.
const ktlsEnv = "KTLS_BENCH_KTLS"

var ktlsBuild struct {
	once       sync.Once
	path, skip string
}

// ktlsProxyBinary returns the ktls command to run `ktls proxy` with:
// $KTLS_BENCH_KTLS if set; in the VM, the ktls that vmtest ships in
// benchmark runs (internal/testing/vmtest/README.md); else ./cmd/ktls,
// built once per process with go build. It skips when that command has no
// proxy subcommand.
func ktlsProxyBinary(b *testing.B) (string, string) {
	ktlsBuild.once.Do(func() {
		p := os.Getenv(ktlsEnv)
		switch {
		case p != "":
		case testenv.InVM():
			var err error
			if p, err = exec.LookPath("ktls"); err != nil {
				ktlsBuild.skip = fmt.Sprintf("no ktls in the VM (vmtest ships it with -bench): %v", err)
				return
			}
		default:
			// Built once per process (-count runs BenchmarkProxy again),
			// into the process's temporary directory, which TestMain
			// removes (removeSendfileDir).
			dir, err := processTempDir()
			if err != nil {
				ktlsBuild.skip = err.Error()
				return
			}
			p = filepath.Join(dir, "ktls")
			out, err := exec.Command("go", "build", "-o", p, "../cmd/ktls").CombinedOutput()
			if err != nil {
				ktlsBuild.skip = fmt.Sprintf("go build ./cmd/ktls: %v: %s", err, out)
				return
			}
		}
		// cmd/ktls answers an unknown command with `ktls: unknown
		// command "proxy"` on stderr.
		out, _ := exec.Command(p, "proxy", "-h").CombinedOutput()
		if bytes.Contains(out, []byte("unknown command")) {
			ktlsBuild.skip = fmt.Sprintf("%s has no proxy subcommand yet (set %s to a ktls that has)", p, ktlsEnv)
			return
		}
		ktlsBuild.path = p
	})
	return ktlsBuild.path, ktlsBuild.skip
}

// processTempDir returns the directory that sendfileFile keeps its files in
// for the life of the process, making it if need be.
func processTempDir() (string, error) {
	sendfileDir.Lock()
	defer sendfileDir.Unlock()
	if sendfileDir.dir == "" {
		dir, err := os.MkdirTemp("", "ktls-bench-")
		if err != nil {
			return "", err
		}
		sendfileDir.dir = dir
	}
	return sendfileDir.dir, nil
}

// proxyPKI is the test PKI's ECDSA server certificate in the files the
// proxies read: PEM chain and key apart, and both in one file (hitch,
// HAProxy).
type proxyPKI struct{ cert, key, pem string }

func writeProxyPKI(b *testing.B) proxyPKI {
	dir := b.TempDir()
	cert, key := testpki.Get().WriteECDSA(dir)
	c, err := os.ReadFile(cert)
	if err != nil {
		b.Fatal(err)
	}
	k, err := os.ReadFile(key)
	if err != nil {
		b.Fatal(err)
	}
	pem := filepath.Join(dir, "ecdsa.pem")
	if err := os.WriteFile(pem, append(k, c...), 0o600); err != nil {
		b.Fatal(err)
	}
	return proxyPKI{cert, key, pem}
}

// proxyInstance is one running proxy.
type proxyInstance struct {
	addr   string
	cmd    *exec.Cmd
	stderr *tailBuffer
	done   chan struct{}
}

// startProxy starts kind on a free port and waits until it accepts
// connections; skip says why it cannot run.
func startProxy(b *testing.B, kind proxyKind, backend string, pki proxyPKI) (_ *proxyInstance, skip string) {
	prog, skip := kind.find(b)
	if skip != "" {
		return nil, skip
	}
	dir, err := os.MkdirTemp("", "ktls-bench-proxy-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	port := freePort(b)
	cmd := exec.Command(prog, kind.args(b, dir, port, backend, pki)...)
	cmd.Dir = dir
	if kind.name == "tcp" {
		cmd.Env = append(os.Environ(), fmt.Sprintf("%s=127.0.0.1:%d %s", forwardEnv, port, backend))
	}
	inst := &proxyInstance{addr: fmt.Sprintf("127.0.0.1:%d", port), cmd: cmd, stderr: &tailBuffer{}, done: make(chan struct{})}
	cmd.Stdout = inst.stderr
	cmd.Stderr = inst.stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Sprintf("%s: %v", kind.name, err)
	}
	go func() {
		cmd.Wait()
		close(inst.done)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", inst.addr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		select {
		case <-inst.done:
			b.Fatalf("%s exited before it listened: %v: %s", kind.name, cmd.ProcessState, inst.stderrTail())
		default:
		}
		if time.Now().After(deadline) {
			inst.stop(b)
			b.Fatalf("%s does not listen on %s: %s", kind.name, inst.addr, inst.stderrTail())
		}
		time.Sleep(20 * time.Millisecond)
	}
	b.Logf("%s: %s, listening on %s", kind.name, strings.Join(cmd.Args, " "), inst.addr)
	return inst, ""
}

func freePort(b *testing.B) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// stop ends the proxy with SIGTERM, and SIGKILL 10 s later, and returns
// how it ended.
func (p *proxyInstance) stop(b *testing.B) *os.ProcessState {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		b.Logf("%s ignored SIGTERM for 10 s; killed", p.cmd.Path)
		p.cmd.Process.Kill()
		<-p.done
	}
	return p.cmd.ProcessState
}

func (p *proxyInstance) stderrTail() string { return p.stderr.String() }

// procUsage is what a process tree has used so far: CPU time and the bytes
// of its read- and write-like calls.
type procUsage struct {
	cpu time.Duration
	io  int64
}

// usage sums procUsage over the proxy and its descendants, found by their
// parent in /proc/PID/stat (proc(5)); it fails the benchmark where /proc
// cannot say.
func (p *proxyInstance) usage(b *testing.B) procUsage {
	u, err := treeUsage(p.cmd.Process.Pid)
	if err != nil {
		b.Fatal(err)
	}
	return u
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat's times: 100 on every
// Linux architecture (proc(5), sysconf(_SC_CLK_TCK)).
const clockTicks = 100

func treeUsage(root int) (procUsage, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return procUsage{}, err
	}
	parent := map[int]int{}
	stats := map[int][]string{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		f, err := procStat(pid)
		if err != nil {
			continue // gone meanwhile
		}
		ppid, _ := strconv.Atoi(f[1])
		parent[pid] = ppid
		stats[pid] = f
	}
	inTree := func(pid int) bool {
		for ; pid > 1; pid = parent[pid] {
			if pid == root {
				return true
			}
		}
		return false
	}
	var u procUsage
	for pid, f := range stats {
		if !inTree(pid) {
			continue
		}
		// Fields after the command: 1 state ppid ..., utime and stime
		// are fields 14 and 15 of proc(5), here 12 and 13.
		ut, err1 := strconv.ParseInt(f[11], 10, 64)
		st, err2 := strconv.ParseInt(f[12], 10, 64)
		if err := errors.Join(err1, err2); err != nil {
			return procUsage{}, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
		u.cpu += time.Duration(ut+st) * time.Second / clockTicks
		n, err := procIO(pid)
		if err != nil {
			return procUsage{}, err
		}
		u.io += n
	}
	return u, nil
}

// procStat returns the fields of /proc/PID/stat after the command name
// (which is in parentheses and may hold spaces): state first.
func procStat(pid int) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, fmt.Errorf("/proc/%d/stat: %q", pid, b)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return nil, fmt.Errorf("/proc/%d/stat: %q", pid, b)
	}
	return f, nil
}

// procIO returns rchar + wchar of /proc/PID/io.
func procIO(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return 0, err
	}
	var n int64
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ": ")
		if k == "rchar" || k == "wchar" {
			x, err := strconv.ParseInt(v, 10, 64)
			if !ok || err != nil {
				return 0, fmt.Errorf("/proc/%d/io: %q", pid, line)
			}
			n += x
		}
	}
	return n, nil
}

// tailBuffer keeps the last 4 KiB written to it: a proxy's log, for the
// error messages.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > 4096 {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-4096:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

// forwardEnv makes the test binary the tcp row's forwarder: "LISTEN
// BACKEND".
const forwardEnv = "KTLS_BENCH_FORWARD"

func init() {
	if spec := os.Getenv(forwardEnv); spec != "" {
		forwardMain(spec)
	}
}

// forwardMain accepts on the first address and copies each connection both
// ways to a new one to the second, until SIGTERM. io.Copy between two
// *net.TCPConn is splice(2) through a pipe on Linux (net.TCPConn.ReadFrom),
// so the bytes do not enter the process: the plain TCP ceiling of a proxy.
func forwardMain(spec string) {
	listen, backend, ok := strings.Cut(spec, " ")
	l, err := net.Listen("tcp", listen)
	if !ok || err != nil {
		fmt.Fprintf(os.Stderr, "%s=%q: %v\n", forwardEnv, spec, err)
		os.Exit(2)
	}
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	go func() {
		<-term
		os.Exit(0)
	}()
	fmt.Fprintf(os.Stderr, "listening on %s\n", l.Addr())
	for {
		c, err := l.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		go forward(c, backend)
	}
}

func forward(front net.Conn, backend string) {
	defer front.Close()
	back, err := net.Dial("tcp", backend)
	if err != nil {
		return
	}
	defer back.Close()
	done := make(chan struct{}, 2)
	half := func(dst, src net.Conn) {
		io.Copy(dst, src)
		dst.(*net.TCPConn).CloseWrite()
		done <- struct{}{}
	}
	go half(back, front)
	go half(front, back)
	<-done
	<-done
}
