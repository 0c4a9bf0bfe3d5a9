package nfs_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ktls-go/ktls/internal/testing/testenv"
	"github.com/ktls-go/ktls/internal/testing/testpki"
)

// agentEnv names the handshake agent's command line; {config} in it
// stands for the path of the tlshd.conf(5) file the test writes.
const agentEnv = "KTLS_NFS_AGENT"

// defaultAgent is the agent under test: the project's own, in the
// foreground, logging to stderr (cmd/ktls, "ktls tlshd").
const defaultAgent = "ktls tlshd -config {config}"

// referenceAgent is Debian's tlshd, logging to stderr (tlshd(8): -s, -c):
// the agent people run today, beside which ours is measured and with which
// it must interoperate.
const referenceAgent = "tlshd -s -c {config}"

// nfsPrograms are the user-space parts of the NFS server and client:
// nfs-kernel-server's and nfs-common's (the VM harness brings trixie's).
var nfsPrograms = []string{"rpc.nfsd", "rpc.mountd", "exportfs", "mount.nfs"}

// fileSize is the size of the file written and read back over NFS: a few
// MiB, the budget of a transfer under TCG (internal/testing/vmtest/README.md).
const fileSize = 4 << 20

// mountTimeout bounds one mount.nfs: a refused handshake must end the
// mount with an error well before it, not hang.
const mountTimeout = 90 * time.Second

// TestNFSOverTLS mounts a tmpfs exported by the kernel's nfsd with
// xprtsec=tls:mtls over loopback, with xprtsec=tls and then xprtsec=mtls,
// the agent serving the client's and the server's handshakes; writes a
// file through one mount and reads it back through the other, by hash;
// checks that the kernel counted kTLS sockets; and that a mount without
// TLS is refused by the export (exports(5), nfs(5): xprtsec). It runs with
// the agent under test and then with Debian's tlshd, so that the log has
// their mount times side by side from one guest.
func TestNFSOverTLS(t *testing.T) {
	b := newBed(t)
	agents := [][]string{b.agent, strings.Fields(referenceAgent)}
	if slices.Equal(agents[0], agents[1]) {
		agents = agents[:1]
	}
	for _, agent := range agents {
		t.Run(agent[0], func(t *testing.T) {
			b.agent = agent
			nfsRoundTrip(t, b)
		})
	}
}

// nfsRoundTrip is TestNFSOverTLS with one agent.
func nfsRoundTrip(t *testing.T, b *bed) {
	b.startAgent(t, b.agentConfig(t, true, b.serverCert, nil))
	b.export(t, "tls:mtls")

	if _, out, _, err := b.mount(t, "none"); err == nil {
		t.Fatalf("a mount without TLS of an export with xprtsec=tls:mtls succeeded:\n%s", out)
	} else {
		t.Logf("mount without TLS refused, as the export says: %v: %s", err, strings.TrimSpace(out))
	}

	data := testenv.Pattern(fileSize, 15)
	want := sha256.Sum256(data)

	before := tlsStat(t)
	mnt := b.mustMount(t, "tls")
	if err := writeFileSync(filepath.Join(mnt, "data"), data); err != nil {
		t.Fatalf("writing %d bytes over NFS with xprtsec=tls: %v", len(data), err)
	}
	tlsMounted := tlsStat(t)
	b.umount(t, mnt)
	checkKTLSSockets(t, "xprtsec=tls", before, tlsMounted)

	// The file went over the wire: the export's own copy has its hash.
	if got, err := os.ReadFile(filepath.Join(b.exportDir, "data")); err != nil {
		t.Fatalf("the exported file: %v", err)
	} else if sha256.Sum256(got) != want {
		t.Fatalf("the exported file has %d bytes that differ from the %d written over NFS", len(got), len(data))
	}

	mnt = b.mustMount(t, "mtls")
	got, err := os.ReadFile(filepath.Join(mnt, "data"))
	if err != nil {
		t.Fatalf("reading back over NFS with xprtsec=mtls: %v", err)
	}
	mtlsMounted := tlsStat(t)
	b.umount(t, mnt)
	if sha256.Sum256(got) != want {
		t.Fatalf("read back %d bytes over NFS with xprtsec=mtls, SHA-256 %x, want %d bytes, %x", len(got), sha256.Sum256(got), len(data), want)
	}
	checkKTLSSockets(t, "xprtsec=mtls", tlsMounted, mtlsMounted)

	// The agent's time per mount, for the README's comparison: the first
	// mounts above also pay for nfsd's first client, so a few more, each
	// a new TLS session (tls_stat says so), give the median.
	const mounts = 5
	var took []time.Duration
	for range mounts {
		before := tlsStat(t)
		mnt, out, d, err := b.mount(t, "tls")
		if err != nil {
			t.Fatalf("mount.nfs -o vers=4.2,xprtsec=tls: %v: %s", err, out)
		}
		checkKTLSSockets(t, "a timed xprtsec=tls mount", before, tlsStat(t))
		b.umount(t, mnt)
		took = append(took, d)
	}
	slices.Sort(took)
	t.Logf("%d mounts with xprtsec=tls took min %v, median %v, max %v (%s)", mounts,
		took[0].Round(time.Millisecond), took[mounts/2].Round(time.Millisecond), took[mounts-1].Round(time.Millisecond), b.agents)
}

// TestNFSOverTLSRefusals checks that handshakes the agent must refuse end
// the mount with an error, promptly, and mount nothing.
func TestNFSOverTLSRefusals(t *testing.T) {
	b := newBed(t)
	t.Run("server certificate that does not verify", func(t *testing.T) {
		_, untrusted := newCA(t, "untrusted CA")
		b.startAgent(t, b.agentConfig(t, true, untrusted(time.Now().Add(-time.Hour), time.Now().Add(time.Hour)), nil))
		b.export(t, "tls:mtls")
		b.mustFail(t, "tls", false)
	})
	t.Run("expired server certificate", func(t *testing.T) {
		// Signed by a CA the client trusts, so that only the dates fail.
		caDER, expired := newCA(t, "second CA")
		b.startAgent(t, b.agentConfig(t, true, expired(time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour)), caDER))
		b.export(t, "tls:mtls")
		b.mustFail(t, "tls", false)
	})
	t.Run("client without certificate on an mtls export", func(t *testing.T) {
		b.startAgent(t, b.agentConfig(t, false, b.serverCert, nil))
		b.export(t, "mtls")
		// The client has no certificate to offer: no session.
		b.mustFail(t, "mtls", false)
		// A session without one: the export refuses it.
		b.mustFail(t, "tls", true)
	})
	t.Run("server that never answers the handshake", func(t *testing.T) {
		// A server that says it speaks RPC-with-TLS and then never
		// answers the ClientHello: the client's handshake can only end
		// at the request's timeout, which the kernel sets
		// (HANDSHAKE_A_ACCEPT_TIMEOUT). The agent must give up then,
		// answering DONE with ETIMEDOUT (tls-handshake.rst), and the
		// mount must fail without waiting for more.
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		silent := make(chan struct{})
		go func() {
			defer close(silent)
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					if startTLSProbe(c) == nil {
						io.Copy(io.Discard, c) // the ClientHello, unanswered
					}
				}()
			}
		}()
		t.Cleanup(func() { l.Close(); <-silent })
		agent := b.startAgent(t, b.agentConfig(t, true, b.serverCert, nil))
		// A hard mount reconnects for ever, a new handshake each time
		// (nfs(5), "soft"); a soft one gives up after retrans tries of
		// timeo tenths of a second, and mount.nfs itself tries once.
		b.opts = "port=" + strconv.Itoa(l.Addr().(*net.TCPAddr).Port) + ",retry=0,soft,timeo=100,retrans=1"
		defer func() { b.opts = "" }()
		start := time.Now()
		b.mustFail(t, "tls", false)
		t.Logf("the mount failed after %v", time.Since(start).Round(time.Millisecond))
		if slices.Equal(b.agent, strings.Fields(defaultAgent)) {
			// Our agent logs each result; the reference's wording is its own.
			deadline := time.Now().Add(10 * time.Second)
			for !strings.Contains(agent.out.String(), "result=ETIMEDOUT") {
				if time.Now().After(deadline) {
					t.Fatalf("the agent logged no ETIMEDOUT result:\n%s", agent.out.String())
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
	})
}

// The addresses of the veth pair of TestNFSOverTLSAcrossNamespaces: the
// server's end stays in the guest's namespace, the client's end moves to
// the client's.
const (
	vethServer     = "nfsv0"
	vethServerAddr = "10.78.0.1"
	vethClientAddr = "10.78.0.2"
)

// TestNFSOverTLSAcrossNamespaces runs the NFS client in a network
// namespace of its own, joined to the server's (the guest's) by a veth
// pair, each side with its own agent: the agent under test on one side and
// Debian's tlshd on the other, both ways round (with the default agent,
// tlshd on both). Each mount moves a file checked by hash, and each
// namespace's tls_stat counts its own kTLS socket.
func TestNFSOverTLSAcrossNamespaces(t *testing.T) {
	b := newBed(t)
	holder := startDaemon(t, "unshare", "-n", "sleep", "3600")
	pid := holder.cmd.Process.Pid
	waitNetns(t, pid)
	enter := []string{"nsenter", "-t", strconv.Itoa(pid), "-n"}
	peer := newVeth(t, vethServer)
	run(t, "ip", "link", "set", peer, "netns", strconv.Itoa(pid))
	run(t, "ip", "addr", "add", vethServerAddr+"/24", "dev", vethServer)
	run(t, "ip", "link", "set", vethServer, "up")
	for _, args := range [][]string{
		{"ip", "addr", "add", vethClientAddr + "/24", "dev", peer},
		{"ip", "link", "set", peer, "up"},
		{"ip", "link", "set", "lo", "up"},
	} {
		args = append(slices.Clone(enter), args...)
		run(t, args[0], args[1:]...)
	}
	b.client = clientSide{server: vethServerAddr, addr: vethClientAddr, enter: enter}
	clientStat := fmt.Sprintf("/proc/%d/net/tls_stat", pid)

	// The client checks the server's certificate against the address it
	// mounts, which the test PKI's certificate does not name.
	caDER, issue := newCA(t, "namespaces CA")
	server := issue(time.Now().Add(-time.Hour), time.Now().Add(time.Hour), net.ParseIP(vethServerAddr))
	config := b.agentConfig(t, true, server, caDER)

	tlshd := strings.Fields(referenceAgent)
	pairs := [][2][]string{{b.agent, tlshd}, {tlshd, b.agent}} // client's, server's
	if slices.Equal(b.agent, tlshd) {
		pairs = pairs[:1]
	}
	for i, p := range pairs {
		t.Run(fmt.Sprintf("client %s, server %s", p[0][0], p[1][0]), func(t *testing.T) {
			startAgentIn(t, enter, p[0], config)
			startAgentIn(t, nil, p[1], config)
			b.agents = fmt.Sprintf("client's agent: %s; server's agent: %s", strings.Join(p[0], " "), strings.Join(p[1], " "))
			b.export(t, "tls:mtls")
			for j, xprtsec := range []string{"tls", "mtls"} {
				data := testenv.Pattern(1<<20, byte(16+2*i+j))
				name := "data-" + xprtsec + strconv.Itoa(i)
				serverBefore, clientBefore := tlsStat(t), tlsStatOf(t, clientStat)
				mnt := b.mustMount(t, xprtsec)
				if err := writeFileSync(filepath.Join(mnt, name), data); err != nil {
					t.Fatalf("writing over NFS with xprtsec=%s: %v", xprtsec, err)
				}
				serverAfter, clientAfter := tlsStat(t), tlsStatOf(t, clientStat)
				b.umount(t, mnt)
				checkKTLSSocketsN(t, "server's namespace, xprtsec="+xprtsec, serverBefore, serverAfter, 1)
				checkKTLSSocketsN(t, "client's namespace, xprtsec="+xprtsec, clientBefore, clientAfter, 1)
				if got, err := os.ReadFile(filepath.Join(b.exportDir, name)); err != nil {
					t.Fatalf("the exported file: %v", err)
				} else if sha256.Sum256(got) != sha256.Sum256(data) {
					t.Fatalf("the exported file's %d bytes differ from the %d written over NFS with xprtsec=%s", len(got), len(data), xprtsec)
				}
			}
		})
	}
}

// waitNetns waits until the process has left the test's network namespace.
func waitNetns(t *testing.T, pid int) {
	t.Helper()
	ours, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(testenv.Prompt)
	for {
		if theirs, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid)); err == nil && theirs != ours {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %d did not enter a network namespace of its own within %v", pid, testenv.Prompt)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// newVeth makes a veth pair whose first end is name, and returns the name
// of the other end, which the kernel picks (busybox's ip does not pass a
// peer's name); the pair is deleted when the test ends, if it still is.
func newVeth(t *testing.T, name string) string {
	t.Helper()
	run(t, "ip", "link", "add", name, "type", "veth")
	t.Cleanup(func() {
		if _, err := net.InterfaceByName(name); err == nil {
			if out, err := exec.Command("ip", "link", "del", name).CombinedOutput(); err != nil {
				t.Errorf("ip link del %s: %v: %s", name, err, out)
			}
		}
	})
	out, err := exec.Command("ip", "-o", "link", "show").CombinedOutput()
	if err != nil {
		t.Fatalf("ip -o link show: %v: %s", err, out)
	}
	// Lines "N: peer@name: <...>".
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) > 1 {
			if peer, ok := strings.CutSuffix(strings.TrimSuffix(f[1], ":"), "@"+name); ok {
				return peer
			}
		}
	}
	t.Fatalf("no peer of %s in:\n%s", name, out)
	return ""
}

// bed is the NFS server of one test: nfsd and rpc.mountd running, a tmpfs
// to export, and the PKI's files.
type bed struct {
	dir        string
	exportDir  string
	ca         string // the CA certificate's PEM file
	serverCert tls.Certificate
	agent      []string // the agent's command line, {config} not yet replaced
	client     clientSide
	mounts     int
	// agents names the agents serving the handshakes, for the log of
	// each mount's time.
	agents string
	// opts are more mount options (nfs(5)), "" for none.
	opts string
}

// clientSide is where the NFS client runs: in the guest's own network
// namespace, over loopback, or in another one (TestNFSOverTLSAcrossNamespaces).
type clientSide struct {
	server string   // the server's address, as the client reaches it
	addr   string   // the client's address, as the server sees it
	enter  []string // the command that runs a program in the client's namespace
}

// newBed starts the NFS server, or skips where it cannot run: outside the
// VM guests, or on a kernel without the handshake family (which fails the
// test in a guest whose kernel must have it).
func newBed(t *testing.T) *bed {
	t.Helper()
	if !testenv.InVM() {
		t.Skipf("runs only in the VM harness's guests (%s=1): it loads nfsd, exports a tmpfs and mounts it as root", testenv.EnvVar)
	}
	testenv.RequireKernelFeature(t, testenv.FeatureNetHandshake, testenv.ProbeHandshake())
	agent := strings.Fields(os.Getenv(agentEnv))
	if len(agent) == 0 {
		agent = strings.Fields(defaultAgent)
	}
	reference := strings.Fields(referenceAgent)[0]
	for _, p := range append([]string{agent[0], reference}, nfsPrograms...) {
		if _, err := exec.LookPath(p); err != nil {
			t.Fatalf("%s, which NFS over TLS needs, is missing from the guest: %v", p, err)
		}
	}
	t.Cleanup(func() { checkNothingLeft(t) })

	b := &bed{dir: t.TempDir(), agent: agent, serverCert: testpki.Get().ECDSA(),
		client: clientSide{server: "127.0.0.1", addr: "127.0.0.1"}}
	b.exportDir = filepath.Join(b.dir, "export")
	mountFS(t, "tmpfs", b.exportDir, "tmpfs", "size=64m")
	b.ca = writePEM(t, b.dir, "ca.pem", "CERTIFICATE", testpki.Get().CADER, 0o644)

	if !mounted(t, "/proc/fs/nfsd") {
		mountFS(t, "nfsd", "/proc/fs/nfsd", "nfsd", "")
	}
	// The grace period after nfsd starts refuses new opens (RFC 8881,
	// 8.4.2), so the first write waits for its end; the shortest one that
	// fs/nfsd/nfsctl.c accepts keeps that wait short. (Ending it by
	// writing v4_end_grace needs a client tracker, which the guest lacks.)
	if err := os.WriteFile("/proc/fs/nfsd/nfsv4gracetime", []byte("10\n"), 0); err != nil {
		t.Logf("setting nfsd's grace time: %v", err)
	}
	startDaemon(t, "rpc.mountd", "-F", "-N", "2", "-N", "3")
	run(t, "rpc.nfsd", "-N", "3", "4")
	t.Cleanup(func() {
		if out, err := exec.Command("rpc.nfsd", "0").CombinedOutput(); err != nil {
			t.Errorf("stopping nfsd: rpc.nfsd 0: %v: %s", err, out)
		}
	})
	return b
}

// agentConfig writes a tlshd.conf(5) file: both roles trust the test CA,
// and the client also the CA certificate extraCA (DER) if not nil; the
// client presents the PKI's client certificate if clientCert; the server
// presents server.
func (b *bed) agentConfig(t *testing.T, clientCert bool, server tls.Certificate, extraCA []byte) string {
	t.Helper()
	dir := t.TempDir()
	serverCert, serverKey := writeCert(t, dir, "server", server)
	clientTrust := b.ca
	if extraCA != nil {
		pems, err := os.ReadFile(b.ca)
		if err != nil {
			t.Fatal(err)
		}
		pems = append(pems, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: extraCA})...)
		clientTrust = filepath.Join(dir, "client-trust.pem")
		if err := os.WriteFile(clientTrust, pems, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var conf strings.Builder
	fmt.Fprintf(&conf, "[debug]\nloglevel=1\ntls=0\nnl=0\n\n[authenticate]\n\n[authenticate.client]\nx509.truststore=%s\n", clientTrust)
	if clientCert {
		c, k := writeCert(t, dir, "client", testpki.Get().Client())
		fmt.Fprintf(&conf, "x509.certificate=%s\nx509.private_key=%s\n", c, k)
	}
	fmt.Fprintf(&conf, "\n[authenticate.server]\nx509.truststore=%s\nx509.certificate=%s\nx509.private_key=%s\n", b.ca, serverCert, serverKey)
	file := filepath.Join(dir, "tlshd.conf")
	if err := os.WriteFile(file, []byte(conf.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// startAgent starts the handshake agent with the config file and waits
// until it listens for the kernel's requests; it is stopped when the test
// ends.
func (b *bed) startAgent(t *testing.T, config string) *daemon {
	t.Helper()
	d := startAgentIn(t, nil, b.agent, config)
	b.agents = "agent: " + strings.Join(b.agent, " ")
	return d
}

// startAgentIn starts the agent's command line with the config file, in
// the network namespace that the command enter enters (none: the guest's),
// and waits until it listens for the kernel's requests there.
func startAgentIn(t *testing.T, enter, agent []string, config string) *daemon {
	t.Helper()
	args := slices.Clone(enter)
	for _, a := range agent {
		args = append(args, strings.ReplaceAll(a, "{config}", config))
	}
	d := startDaemon(t, args[0], args[1:]...)
	waitListening(t, d)
	return d
}

// export exports the tmpfs to the client's address as the NFSv4 root with
// the xprtsec policy, until the test ends.
func (b *bed) export(t *testing.T, xprtsec string) {
	t.Helper()
	client := b.client.addr + ":" + b.exportDir
	run(t, "exportfs", "-i", "-o", "rw,insecure,no_root_squash,no_subtree_check,sync,fsid=0,xprtsec="+xprtsec, client)
	t.Cleanup(func() {
		if out, err := exec.Command("exportfs", "-u", client).CombinedOutput(); err != nil {
			t.Errorf("exportfs -u %s: %v: %s", client, err, out)
		}
	})
}

// mount mounts the export with the xprtsec policy ("none": without the
// option) on a new directory, and returns that directory, mount.nfs's
// output, the time it took (the handshakes' time, for a TLS mount), and its
// error. A mount that succeeded is undone when the test ends, if the test
// did not.
func (b *bed) mount(t *testing.T, xprtsec string) (mnt, out string, took time.Duration, err error) {
	t.Helper()
	b.mounts++
	mnt = filepath.Join(b.dir, "mnt"+strconv.Itoa(b.mounts))
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	opts := "vers=4.2"
	if xprtsec != "none" {
		opts += ",xprtsec=" + xprtsec
	}
	if b.opts != "" {
		opts += "," + b.opts
	}
	ctx, cancel := context.WithTimeout(context.Background(), mountTimeout)
	defer cancel()
	start := time.Now()
	args := append(slices.Clone(b.client.enter), "mount.nfs", b.client.server+":/", mnt, "-n", "-o", opts)
	outb, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
	out, took = string(outb), time.Since(start)
	if mounted(t, mnt) {
		t.Cleanup(func() {
			if mounted(t, mnt) {
				if err := unix.Unmount(mnt, 0); err != nil {
					t.Errorf("unmounting %s: %v", mnt, err)
				}
			}
		})
		if err != nil {
			t.Errorf("mount.nfs -o %s failed (%v) but mounted %s", opts, err, mnt)
		}
		return mnt, out, took, err
	}
	if err == nil {
		t.Fatalf("mount.nfs -o %s exited 0 but %s is not mounted: %s", opts, mnt, out)
	}
	if took >= mountTimeout {
		t.Fatalf("mount.nfs -o %s hung: killed after %v", opts, took)
	}
	return mnt, out, took, err
}

// mustMount mounts the export with the xprtsec policy, logs the time the
// mount took, and returns the mount point.
func (b *bed) mustMount(t *testing.T, xprtsec string) string {
	t.Helper()
	mnt, out, took, err := b.mount(t, xprtsec)
	if err != nil {
		t.Fatalf("mount.nfs -o vers=4.2,xprtsec=%s: %v: %s", xprtsec, err, out)
	}
	t.Logf("mount with xprtsec=%s took %v (%s)", xprtsec, took.Round(time.Millisecond), b.agents)
	return mnt
}

// mustFail checks that a mount with the xprtsec policy fails, promptly,
// and that the kernel installed kTLS on the connection's two sockets if
// session (the handshake succeeded and the export refused the client), and
// on none otherwise (the handshake failed, which failed the mount).
func (b *bed) mustFail(t *testing.T, xprtsec string, session bool) {
	t.Helper()
	before := tlsStat(t)
	_, out, took, err := b.mount(t, xprtsec)
	if err == nil {
		t.Fatalf("mount with xprtsec=%s succeeded, want a refusal", xprtsec)
	}
	after := tlsStat(t)
	t.Logf("mount with xprtsec=%s refused after %v: %v: %s", xprtsec, took.Round(time.Millisecond), err, strings.TrimSpace(out))
	if session {
		checkKTLSSockets(t, "refused xprtsec="+xprtsec, before, after)
	} else if after["TlsTxSw"] != before["TlsTxSw"] || after["TlsRxSw"] != before["TlsRxSw"] {
		t.Errorf("mount with xprtsec=%s: the handshake should have failed, but the kernel installed kTLS: before %v, after %v", xprtsec, before, after)
	}
}

func (b *bed) umount(t *testing.T, mnt string) {
	t.Helper()
	if err := unix.Unmount(mnt, 0); err != nil {
		t.Fatalf("unmounting %s: %v", mnt, err)
	}
}

// daemon is a program the test started and stops.
type daemon struct {
	name string
	cmd  *exec.Cmd
	out  *testenv.Buffer
	done chan struct{}
	err  error // of Wait, once done is closed
}

// startDaemon starts a program in the foreground of the test; when the
// test ends it is sent SIGTERM (SIGKILL 10 s later) and waited for, and its
// output is logged if the test failed.
func startDaemon(t *testing.T, name string, args ...string) *daemon {
	t.Helper()
	d := &daemon{name: name, out: &testenv.Buffer{}, done: make(chan struct{})}
	d.cmd = exec.Command(name, args...)
	d.cmd.Stdout, d.cmd.Stderr = d.out, d.out
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	go func() { d.err = d.cmd.Wait(); close(d.done) }()
	t.Cleanup(func() {
		select {
		case <-d.done:
			t.Errorf("%s exited before the test stopped it: %v", name, d.err)
		default:
			d.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-d.done:
			case <-time.After(10 * time.Second):
				t.Errorf("%s did not exit within 10 s of SIGTERM; killing it", name)
				d.cmd.Process.Kill()
				<-d.done
			}
		}
		if t.Failed() {
			t.Logf("%s %s output:\n%s", name, strings.Join(args, " "), d.out.String())
		}
	})
	return d
}

// waitListening waits until the agent has a generic netlink socket that
// joined a multicast group: the "tlshd" group of the handshake family,
// which the kernel notifies of each request
// (Documentation/networking/tls-handshake.rst). /proc/net/netlink shows
// only a socket's first 32 groups; a socket whose group lies beyond them
// is taken as ready after 3 s.
func waitListening(t *testing.T, d *daemon) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var socketSince time.Time
	for {
		select {
		case <-d.done:
			t.Fatalf("the agent %s exited at start: %v\n%s", d.name, d.err, d.out.String())
		default:
		}
		has, joined := genlSockets(d.cmd.Process.Pid)
		switch {
		case joined:
			return
		case has && socketSince.IsZero():
			socketSince = time.Now()
		case has && time.Since(socketSince) > 3*time.Second:
			t.Logf("the agent %s has a generic netlink socket whose group /proc/net/netlink does not show; going on", d.name)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the agent %s did not open a generic netlink socket within 20 s:\n%s", d.name, d.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// genlSockets reports whether the process has a NETLINK_GENERIC socket,
// and whether one of them joined a multicast group, from /proc/net/netlink
// (columns sk, Eth, Pid, Groups, ..., Inode; net/netlink/af_netlink.c).
func genlSockets(pid int) (has, joined bool) {
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	inodes := map[string]bool{}
	for _, fd := range fds {
		l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if ino, ok := strings.CutPrefix(l, "socket:["); err == nil && ok {
			inodes[strings.TrimSuffix(ino, "]")] = true
		}
	}
	// The process's own view: /proc/net is the reader's network namespace.
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/net/netlink", pid))
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 10 || f[1] != strconv.Itoa(unix.NETLINK_GENERIC) || !inodes[f[len(f)-1]] {
			continue
		}
		has = true
		if g, err := strconv.ParseUint(f[3], 16, 32); err == nil && g != 0 {
			joined = true
		}
	}
	return has, joined
}

// checkNothingLeft fails the test if an NFS mount, or a kernel nfsd
// thread, outlived it.
func checkNothingLeft(t *testing.T) {
	t.Helper()
	b, err := os.ReadFile("/proc/mounts")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 2 && (strings.HasPrefix(f[2], "nfs") || f[2] == "nfsd") {
			t.Errorf("left mounted: %s", line)
		}
	}
	// nfsd's threads stop after rpc.nfsd 0, not at once.
	deadline := time.Now().Add(testenv.Prompt)
	for {
		var left []string
		procs, _ := filepath.Glob("/proc/[0-9]*/comm")
		for _, p := range procs {
			if c, err := os.ReadFile(p); err == nil && strings.TrimSpace(string(c)) == "nfsd" {
				left = append(left, filepath.Base(filepath.Dir(p)))
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("nfsd threads left running: pids %s", strings.Join(left, " "))
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// tlsStat reads the kernel's kTLS counters of the guest's network
// namespace.
func tlsStat(t *testing.T) map[string]int64 { return tlsStatOf(t, "/proc/net/tls_stat") }

// tlsStatOf reads a tls_stat file: each network namespace counts its own.
func tlsStatOf(t *testing.T, file string) map[string]int64 {
	t.Helper()
	s, err := testenv.TLSStatFile(file)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return s
}

// checkKTLSSockets checks that between the two readings of
// /proc/net/tls_stat the kernel installed kTLS in both directions on at
// least two sockets: the NFS client's and the server's ends of the
// connection (net/tls/tls_proc.c counts each TLS_TX and TLS_RX).
func checkKTLSSockets(t *testing.T, what string, before, after map[string]int64) {
	t.Helper()
	checkKTLSSocketsN(t, what, before, after, 2)
}

// checkKTLSSocketsN checks that at least n sockets got kTLS both ways.
func checkKTLSSocketsN(t *testing.T, what string, before, after map[string]int64, n int64) {
	t.Helper()
	for _, k := range []string{"TlsTxSw", "TlsRxSw"} {
		if grew := after[k] - before[k]; grew < n {
			t.Errorf("%s: %s grew by %d, want at least %d; before %v, after %v", what, k, grew, n, before, after)
		}
	}
	t.Logf("%s: /proc/net/tls_stat TlsTxSw %d -> %d, TlsRxSw %d -> %d, TlsCurrTxSw %d", what,
		before["TlsTxSw"], after["TlsTxSw"], before["TlsRxSw"], after["TlsRxSw"], after["TlsCurrTxSw"])
}

// run runs a program to completion and fails the test if it fails.
func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
}

// mountFS mounts a file system until the test ends.
func mountFS(t *testing.T, source, target, fstype, data string) {
	t.Helper()
	if err := os.MkdirAll(target, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(source, target, fstype, 0, data); err != nil {
		t.Fatalf("mounting %s on %s: %v", fstype, target, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(target, 0); err != nil {
			t.Errorf("unmounting %s: %v", target, err)
		}
	})
}

// mounted reports whether something is mounted on dir.
func mounted(t *testing.T, dir string) bool {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == dir {
			return true
		}
	}
	return false
}

// writeFileSync writes a file and flushes it to the server.
func writeFileSync(name string, data []byte) error {
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return errors.Join(f.Sync(), f.Close())
}

// writeCert writes a certificate chain and its key as PEM files.
func writeCert(t *testing.T, dir, name string, c tls.Certificate) (certFile, keyFile string) {
	t.Helper()
	var chain []byte
	for _, der := range c.Certificate {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	// tlshd wants certificates readable by all (mode 644), keys not.
	certFile = filepath.Join(dir, name+".pem")
	if err := os.WriteFile(certFile, chain, 0o644); err != nil {
		t.Fatal(err)
	}
	key, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	return certFile, writePEM(t, dir, name+".key", "PRIVATE KEY", key, 0o600)
}

func writePEM(t *testing.T, dir, name, typ string, der []byte, perm os.FileMode) string {
	t.Helper()
	file := filepath.Join(dir, name)
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), perm); err != nil {
		t.Fatal(err)
	}
	return file
}

// newCA makes a CA other than the test PKI's and returns its certificate
// (DER) and a function that issues server certificates for localhost and
// the addresses (none: 127.0.0.1), valid between two times.
func newCA(t *testing.T, name string) ([]byte, func(notBefore, notAfter time.Time, ips ...net.IP) tls.Certificate) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-72 * time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	serial := int64(1)
	return caDER, func(notBefore, notAfter time.Time, ips ...net.IP) tls.Certificate {
		if len(ips) == 0 {
			ips = []net.IP{net.IPv4(127, 0, 0, 1)}
		}
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		serial++
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: "localhost"},
			NotBefore:    notBefore,
			NotAfter:     notAfter,
			DNSNames:     []string{"localhost"},
			IPAddresses:  ips,
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	}
}

// startTLSProbe answers the client's RPC-with-TLS probe on c as a server
// that supports it (RFC 9289, 4.1): the NULL call with AUTH_TLS gets an
// accepted reply whose AUTH_NONE verifier holds "STARTTLS". The call and
// reply are ONC RPC messages in record marking (RFC 5531, 9 and 11).
func startTLSProbe(c net.Conn) error {
	var mark [4]byte
	if _, err := io.ReadFull(c, mark[:]); err != nil {
		return err
	}
	call := make([]byte, binary.BigEndian.Uint32(mark[:])&0x7fffffff)
	if _, err := io.ReadFull(c, call); err != nil {
		return err
	}
	if len(call) < 4 {
		return errors.New("an RPC call shorter than its XID")
	}
	reply := binary.BigEndian.AppendUint32(nil, 0) // the record mark, below
	reply = append(reply, call[:4]...)             // xid
	for _, v := range []uint32{1, 0, 0, 8} {       // REPLY, MSG_ACCEPTED, AUTH_NONE, 8 bytes
		reply = binary.BigEndian.AppendUint32(reply, v)
	}
	reply = append(reply, "STARTTLS"...)
	reply = binary.BigEndian.AppendUint32(reply, 0) // SUCCESS: NULL has no results
	binary.BigEndian.PutUint32(reply, 0x80000000|uint32(len(reply)-4))
	_, err := c.Write(reply)
	return err
}
