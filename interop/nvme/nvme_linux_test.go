package nvme_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ktls-go/ktls/internal/testing/testenv"
)

const (
	// subsysNQN and hostNQN name the target's subsystem and the host
	// (NVMe Base Specification, 4.5, NVMe Qualified Names).
	subsysNQN = "nqn.2014-08.org.ktls-go:nvme-tls-refusal"
	hostID    = "0f9e3a5c-6c61-4c1e-9a3e-5b1d2f7a8c40"
	hostNQN   = "nqn.2014-08.org.nvmexpress:uuid:" + hostID
	// port is the target's TCP port on 127.0.0.1: NVMe/TCP's own, 4420.
	port = "4420"
	// nvmetDir is nvmet's configfs tree (drivers/nvme/target/configfs.c).
	nvmetDir = "/sys/kernel/config/nvmet"
	// backing is the namespace's block device: null_blk's first, which
	// the module makes when loaded (nr_devices=1).
	backing = "/dev/nullb0"
)

// connectTimeout bounds nvme connect. The kernel gives the agent its
// tls_handshake_timeout (10 s, drivers/nvme/host/tcp.c) before it gives
// up; an ENOKEY answer must end the connect well before that.
const connectTimeout = 60 * time.Second

// promptly is how long a refused connect may take: the agent answers a
// PSK request at once, so the connect ends long before the kernel's own
// handshake timeout would end it.
const promptly = 8 * time.Second

// TestNVMeTCPPSKRefused sets up a loopback NVMe/TCP target that requires
// TLS (addr_tsas tls1.3, addr_treq required), puts a retained PSK for the
// host and the subsystem into the kernel's .nvme keyring (nvme gen-tls-key
// --insert), starts "ktls tlshd", and connects with nvme connect --tls.
// The kernel's host asks the agent for a PSK handshake; the agent refuses
// it with ENOKEY; the connect must fail promptly, without a kTLS socket
// (/proc/net/tls_stat unchanged) and without a controller left behind, and
// the agent must have logged the PSK request and its ENOKEY.
func TestNVMeTCPPSKRefused(t *testing.T) {
	if !testenv.InVM() {
		t.Skipf("runs only in the VM harness's guests (%s=1): it loads nvmet, configures a target through configfs and connects to it as root", testenv.EnvVar)
	}
	testenv.RequireKernelFeature(t, testenv.FeatureNetHandshake, testenv.ProbeHandshake())
	for _, p := range []string{"nvme", "keyctl", "ktls"} {
		if _, err := exec.LookPath(p); err != nil {
			t.Fatalf("%s, which the NVMe/TCP test needs, is missing from the guest: %v", p, err)
		}
	}
	for _, f := range []string{"/dev/nvme-fabrics", backing} {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("%v: the guest lacks a module (nvme-fabrics, null_blk)", err)
		}
	}
	if _, err := os.Stat("/sys/kernel/config/nvmet"); err != nil {
		mountConfigfs(t)
	}
	newTarget(t)
	insertPSK(t)

	agent := startAgent(t)
	before := tlsStat(t)
	ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
	defer cancel()
	start := time.Now()
	cmd := exec.CommandContext(ctx, "nvme", "connect", "-t", "tcp", "-a", "127.0.0.1", "-s", port,
		"-n", subsysNQN, "--hostnqn", hostNQN, "--hostid", hostID, "--tls")
	out, err := cmd.CombinedOutput()
	took := time.Since(start)
	t.Cleanup(func() { disconnect(t) })
	if err == nil {
		t.Fatalf("nvme connect --tls succeeded although the agent cannot do a PSK handshake (%v):\n%s", took, out)
	}
	if ctx.Err() != nil {
		t.Fatalf("nvme connect --tls did not end within %v: %v\n%s", connectTimeout, err, out)
	}
	t.Logf("nvme connect --tls refused in %v: %v: %s", took.Round(time.Millisecond), err, strings.TrimSpace(string(out)))
	if took > promptly {
		t.Errorf("the refused connect took %v, want under %v: the kernel waited for its handshake timeout instead of taking the agent's answer", took, promptly)
	}
	after := tlsStat(t)
	for _, k := range []string{"TlsTxSw", "TlsRxSw", "TlsCurrTxSw", "TlsCurrRxSw"} {
		if before[k] != after[k] {
			t.Errorf("/proc/net/tls_stat %s went from %d to %d: a kTLS socket was installed for a refused handshake", k, before[k], after[k])
		}
	}
	t.Logf("/proc/net/tls_stat: TlsTxSw %d -> %d, TlsRxSw %d -> %d", before["TlsTxSw"], after["TlsTxSw"], before["TlsRxSw"], after["TlsRxSw"])
	if ctrls := controllers(t); len(ctrls) != 0 {
		t.Errorf("a refused connect left NVMe controllers: %v", ctrls)
	}

	// The agent logs after it answered (DONE), so its lines may follow the
	// connect's end by a little; the target's request (role=server) may
	// come before or after the host's.
	host := func(l string) bool { return strings.Contains(l, "role=client") }
	var lines []string
	deadline := time.Now().Add(testenv.Prompt)
	for {
		lines = refusals(agent.String())
		if slices.ContainsFunc(lines, host) || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, l := range lines {
		t.Logf("agent: %s", l)
	}
	if !slices.ContainsFunc(lines, host) {
		t.Fatalf("the agent logged no refusal of the host's PSK request (tls_client_hello_psk: role=client auth=psk result=ENOKEY); its output:\n%s", agent.String())
	}
}

// refusals returns the agent's log lines of a PSK request that it answered
// with ENOKEY (handshake.Result.LogAttrs: auth=psk, result=ENOKEY).
func refusals(log string) []string {
	var out []string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "auth=psk") && strings.Contains(l, "result=ENOKEY") {
			out = append(out, l)
		}
	}
	return out
}

// mountConfigfs mounts configfs where nvmet's tree lies, until the test
// ends.
func mountConfigfs(t *testing.T) {
	t.Helper()
	if err := unix.Mount("configfs", "/sys/kernel/config", "configfs", 0, ""); err != nil {
		t.Fatalf("mounting configfs: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount("/sys/kernel/config", 0); err != nil {
			t.Errorf("unmounting configfs: %v", err)
		}
	})
	if _, err := os.Stat(nvmetDir); err != nil {
		t.Fatalf("nvmet's configfs tree: %v: the guest lacks the nvmet module", err)
	}
}

// newTarget configures, through nvmet's configfs tree
// (drivers/nvme/target/configfs.c), a subsystem open to any host with
// null_blk's device as namespace 1, and a TCP port on 127.0.0.1 that
// requires TLS 1.3 (addr_tsas "tls1.3", addr_treq "required"; Linux 6.7,
// CONFIG_NVME_TARGET_TCP_TLS), and links them, which makes nvmet-tcp
// listen. Each step is undone when the test ends, in reverse order.
func newTarget(t *testing.T) {
	t.Helper()
	subsys := filepath.Join(nvmetDir, "subsystems", subsysNQN)
	mkdir(t, subsys)
	write(t, filepath.Join(subsys, "attr_allow_any_host"), "1")
	ns := filepath.Join(subsys, "namespaces", "1")
	mkdir(t, ns)
	write(t, filepath.Join(ns, "device_path"), backing)
	write(t, filepath.Join(ns, "enable"), "1")
	t.Cleanup(func() {
		if err := os.WriteFile(filepath.Join(ns, "enable"), []byte("0"), 0); err != nil {
			t.Errorf("disabling the namespace: %v", err)
		}
	})
	p := filepath.Join(nvmetDir, "ports", "1")
	mkdir(t, p)
	// addr_trtype comes first: addr_tsas is taken only for TCP.
	for _, kv := range [][2]string{
		{"addr_trtype", "tcp"}, {"addr_adrfam", "ipv4"}, {"addr_traddr", "127.0.0.1"}, {"addr_trsvcid", port},
		{"addr_tsas", "tls1.3"}, {"addr_treq", "required"},
	} {
		write(t, filepath.Join(p, kv[0]), kv[1])
	}
	for _, a := range []string{"addr_tsas", "addr_treq"} {
		b, _ := os.ReadFile(filepath.Join(p, a))
		t.Logf("target port %s: %s", a, strings.TrimSpace(string(b)))
	}
	link := filepath.Join(p, "subsystems", subsysNQN)
	if err := os.Symlink(subsys, link); err != nil {
		t.Fatalf("enabling the port: %v", err)
	}
	t.Cleanup(func() {
		if err := os.Remove(link); err != nil {
			t.Errorf("disabling the port: %v", err)
		}
	})
}

// insertPSK puts a new retained PSK for hostNQN and subsysNQN into the
// kernel's .nvme keyring (nvme-gen-tls-key(1), --insert), where the
// kernel's host looks for one on a connect with --tls and no key named
// (nvme_tls_psk_default, drivers/nvme/common/keyring.c): without one, the
// kernel fails the connect with ENOKEY itself and never asks the agent.
// The key is unlinked from the keyring when the test ends.
func insertPSK(t *testing.T) {
	t.Helper()
	out, err := exec.Command("nvme", "gen-tls-key", "--hostnqn="+hostNQN, "--subsysnqn="+subsysNQN, "--hmac=1", "--insert").CombinedOutput()
	if err != nil {
		t.Fatalf("nvme gen-tls-key --insert: %v: %s", err, out)
	}
	// Its output holds the secret in the PSK interchange format; only
	// the line that names the inserted key is shown.
	var serial string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "Inserted") {
			t.Logf("nvme gen-tls-key: %s", l)
			f := strings.Fields(l)
			serial = f[len(f)-1]
		}
	}
	if serial == "" {
		t.Fatalf("nvme gen-tls-key --insert named no inserted key")
	}
	// The key's permissions (possessor: all but write; others: view)
	// leave revoking it to a possessor, which the test is not: it is
	// unlinked from the keyring instead, which asks for write permission
	// on the keyring only (keyctl_keyring_unlink, security/keys/keyctl.c).
	// /proc/keys gives the keyring's serial.
	keys, err := os.ReadFile("/proc/keys")
	if err != nil {
		t.Fatal(err)
	}
	var ring string
	for _, l := range strings.Split(string(keys), "\n") {
		f := strings.Fields(l)
		if len(f) < 9 {
			continue
		}
		switch {
		case f[0] == serial:
			t.Logf("/proc/keys: %s", l)
		case f[7] == "keyring" && f[8] == ".nvme:":
			t.Logf("/proc/keys: %s", l)
			ring = f[0]
		}
	}
	if ring == "" {
		t.Fatalf("no .nvme keyring in /proc/keys:\n%s", keys)
	}
	// nvme-cli and /proc/keys give serials in hex; keyctl(1) reads 0x as
	// hex.
	t.Cleanup(func() {
		if out, err := exec.Command("keyctl", "unlink", "0x"+serial, "0x"+ring).CombinedOutput(); err != nil {
			t.Errorf("keyctl unlink 0x%s 0x%s: %v: %s", serial, ring, err, out)
		}
	})
}

// startAgent starts "ktls tlshd" with a tlshd.conf(5) that links the
// .nvme keyring, as a system serving NVMe/TCP sets it up, and waits until
// it is ready for the kernel's requests; it is stopped when the test ends.
// It returns the agent's output.
func startAgent(t *testing.T) *testenv.Buffer {
	t.Helper()
	config := filepath.Join(t.TempDir(), "tlshd.conf")
	if err := os.WriteFile(config, []byte("[authenticate]\nkeyrings=.nvme\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out := &testenv.Buffer{}
	cmd := exec.Command("ktls", "tlshd", "-config", config)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting ktls tlshd: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("ktls tlshd exited with %v after SIGTERM", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("ktls tlshd did not exit within 10 s of SIGTERM; killing it")
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("ktls tlshd output:\n%s", out.String())
		}
	})
	// The agent logs this once it has joined the family's multicast
	// group (handshake/agent_linux.go).
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(out.String(), "handshake agent ready") {
		select {
		case err := <-done:
			t.Fatalf("ktls tlshd exited at start: %v\n%s", err, out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("ktls tlshd was not ready within 20 s:\n%s", out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return out
}

// controllers returns the NVMe controllers the kernel has.
func controllers(t *testing.T) []string {
	t.Helper()
	m, err := filepath.Glob("/sys/class/nvme/nvme*")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// disconnect disconnects every controller of the subsystem, in case a
// connect made one.
func disconnect(t *testing.T) {
	t.Helper()
	if len(controllers(t)) == 0 {
		return
	}
	if out, err := exec.Command("nvme", "disconnect", "-n", subsysNQN).CombinedOutput(); err != nil {
		t.Errorf("nvme disconnect -n %s: %v: %s", subsysNQN, err, out)
	}
}

// tlsStat reads the kernel's kTLS counters.
func tlsStat(t *testing.T) map[string]int64 {
	t.Helper()
	s, err := testenv.TLSStat()
	if err != nil {
		t.Fatalf("/proc/net/tls_stat: %v", err)
	}
	return s
}

// mkdir makes a configfs directory and removes it when the test ends.
func mkdir(t *testing.T, dir string) {
	t.Helper()
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatalf("configfs: %v", err)
	}
	t.Cleanup(func() {
		if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Errorf("configfs: %v", err)
		}
	})
}

// write writes one configfs attribute.
func write(t *testing.T, file, value string) {
	t.Helper()
	if err := os.WriteFile(file, []byte(value), 0); err != nil {
		t.Fatalf("configfs: writing %q to %s: %v", value, file, err)
	}
}
