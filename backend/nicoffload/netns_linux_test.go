package nicoffload

import (
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ktls-go/ktls/backend"
	"github.com/ktls-go/ktls/backend/kernel"
	"github.com/ktls-go/ktls/internal/netlink"
	"github.com/ktls-go/ktls/internal/testing/testenv"
)

// The two ends of the veth pair of TestVeth, each in a network namespace of
// its own, so that their traffic crosses the pair (two addresses in one
// namespace would talk over lo).
const (
	vethClient     = "nicv0"
	vethServer     = "nicv1"
	vethClientAddr = "10.77.0.1"
	vethServerAddr = "10.77.0.2"
)

// newNetns moves the calling goroutine's thread into a new network
// namespace, for good: the goroutine stays locked to it, and the runtime
// ends the thread when the goroutine exits (runtime.LockOSThread), so no
// other goroutine ever runs in the namespace by accident. Sockets made on
// the thread belong to the namespace; their I/O works from any thread.
func newNetns() error {
	runtime.LockOSThread()
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("unshare(CLONE_NEWNET): %w", err)
	}
	return nil
}

// rtRequest sends one rtnetlink request that wants an acknowledgement.
func rtRequest(typ, flags uint16, payload []byte) error {
	c, err := netlink.Dial(unix.NETLINK_ROUTE, "NETLINK_ROUTE")
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Execute(typ, flags|unix.NLM_F_ACK, payload)
	return err
}

// createVeth makes the veth pair name, peer, the peer in the network
// namespace nsfd (RTM_NEWLINK, IFLA_INFO_KIND "veth", VETH_INFO_PEER with
// IFLA_NET_NS_FD; include/uapi/linux/veth.h).
func createVeth(name, peer string, nsfd int) error {
	peerMsg := netlink.AppendString(make([]byte, ifinfomsgLen), iflaIfname, peer)
	peerMsg = netlink.AppendU32(peerMsg, iflaNetNSFD, uint32(nsfd))
	data := netlink.AppendNested(nil, vethInfoPeer, peerMsg)
	info := netlink.AppendString(nil, iflaInfoKind, "veth")
	info = netlink.AppendNested(info, iflaInfoData, data)
	req := netlink.AppendString(make([]byte, ifinfomsgLen), iflaIfname, name)
	req = netlink.AppendNested(req, iflaLinkinfo, info)
	if err := rtRequest(rtmNewLink, unix.NLM_F_CREATE|unix.NLM_F_EXCL, req); err != nil {
		return fmt.Errorf("RTM_NEWLINK veth %s/%s: %w", name, peer, err)
	}
	return nil
}

// linkUp sets IFF_UP on the link named name, gives it addr/24 unless addr
// is empty, and returns its index.
func linkUp(name, addr string) (int, error) {
	ifc, err := net.InterfaceByName(name)
	if err != nil {
		return 0, err
	}
	req := make([]byte, ifinfomsgLen)
	binary.NativeEndian.PutUint32(req[4:8], uint32(ifc.Index))
	binary.NativeEndian.PutUint32(req[8:12], iffUp)
	binary.NativeEndian.PutUint32(req[12:16], iffUp)
	if err := rtRequest(rtmNewLink, 0, req); err != nil {
		return 0, fmt.Errorf("RTM_NEWLINK %s up: %w", name, err)
	}
	if addr == "" {
		return ifc.Index, nil
	}
	a := netip.MustParseAddr(addr).As4()
	msg := []byte{unix.AF_INET, 24, 0, 0}
	msg = binary.NativeEndian.AppendUint32(msg, uint32(ifc.Index))
	msg = netlink.AppendAttr(msg, ifaLocal, a[:])
	msg = netlink.AppendAttr(msg, ifaAddress, a[:])
	if err := rtRequest(rtmNewAddr, unix.NLM_F_CREATE|unix.NLM_F_EXCL, msg); err != nil {
		return 0, fmt.Errorf("RTM_NEWADDR %s %s: %w", name, addr, err)
	}
	return ifc.Index, nil
}

// serverNetns makes the server's namespace on a thread of its own, where it
// brings lo up and opens a listener once the veth peer has arrived; it
// returns the namespace's fd at once, and the listener on lnc after a send
// on peerHere (a close: give up).
func serverNetns() (nsfd int, peerHere chan<- struct{}, lnc <-chan any) {
	fdc := make(chan any, 1)
	here := make(chan struct{})
	out := make(chan any, 1)
	go func() {
		// This goroutine's thread ends with it (newNetns).
		if err := newNetns(); err != nil {
			fdc <- err
			return
		}
		fd, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			fdc <- err
			return
		}
		fdc <- fd
		if _, ok := <-here; !ok {
			return
		}
		if _, err := linkUp("lo", ""); err != nil {
			out <- err
			return
		}
		if _, err := linkUp(vethServer, vethServerAddr); err != nil {
			out <- err
			return
		}
		l, err := net.Listen("tcp4", vethServerAddr+":0")
		if err != nil {
			out <- err
			return
		}
		out <- l
	}()
	switch v := (<-fdc).(type) {
	case int:
		return v, here, out
	case error:
		close(here)
		return -1, nil, out
	}
	panic("not reached")
}

// TestVeth runs the engine in network namespaces it creates, over a veth
// pair (no offload: veth has no tlsdev_ops, and the kernel's documentation
// says it "will not offload sockets routed through software interfaces such
// as those used for tunneling or virtual networking", tls-offload.rst): the
// route lookup finds the veth, the engine refuses it before touching the
// socket with the device and feature in the reason, and kTLS installed past
// that check stays in software and says kernel.
//
// The test's goroutine moves into a new namespace and stays there until it
// ends (newNetns), so the engine's netlink sockets ask that namespace, as
// they would for a program whose sockets live in it.
func TestVeth(t *testing.T) {
	// The kernel engine's probes use 127.0.0.1 in the namespace of the
	// thread they run on: run them here, before moving.
	ktlsErr := kernel.Probe(true, tls.VersionTLS12, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)
	if ktlsErr == nil {
		ktlsErr = kernel.Probe(false, tls.VersionTLS12, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)
	}
	nsfd, here, lnc := serverNetns()
	if nsfd < 0 {
		t.Fatalf("server namespace: %v", <-lnc)
	}
	defer unix.Close(nsfd)
	if err := newNetns(); err != nil {
		close(here)
		t.Fatal(err)
	}
	if err := createVeth(vethClient, vethServer, nsfd); err != nil {
		close(here)
		if errors.Is(err, unix.EOPNOTSUPP) && !testenv.InVM() {
			t.Skipf("no veth here: %v", err)
		}
		t.Fatalf("%v (the VM loads the veth module)", err)
	}
	here <- struct{}{}
	if _, err := linkUp("lo", ""); err != nil {
		t.Fatal(err)
	}
	index, err := linkUp(vethClient, vethClientAddr)
	if err != nil {
		t.Fatal(err)
	}
	var l net.Listener
	select {
	case v := <-lnc:
		if err, ok := v.(error); ok {
			t.Fatalf("server namespace: %v", err)
		}
		l = v.(net.Listener)
	case <-time.After(30 * time.Second):
		t.Fatal("the server namespace did not open its listener")
	}
	c, srv := testenv.PairOn(t, l)

	s, err := socketOf(c.(*net.TCPConn))
	if err != nil {
		t.Fatal(err)
	}
	d, err := egress(s)
	if err != nil {
		t.Fatal(err)
	}
	if d.name != vethClient || d.index != index || d.kind != "veth" {
		t.Fatalf("egress = %+v, want %s (veth), index %d", d, vethClient, index)
	}
	rt, err := netlink.Dial(unix.NETLINK_ROUTE, "NETLINK_ROUTE")
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := rt.Execute(rtmGetLink, 0, linkRequest(index))
	rt.Close()
	if err != nil || len(msgs) != 1 {
		t.Fatalf("RTM_GETLINK: %v", err)
	}
	capture(t, "rtm-newlink-veth.hex", msgs[0].Data)

	e := New(Options{})
	for _, tx := range []bool{true, false} {
		_, feat := Features{}.direction(tx)
		var err error
		if tx {
			_, err = e.NewSealer(backend.Link{Conn: c}, tls12Params(t))
		} else {
			_, err = e.NewOpener(backend.Link{Conn: c}, tls12Params(t))
		}
		want := "nic: " + vethClient + " (veth): no " + feat
		if !errors.Is(err, backend.ErrNotSupported) || !strings.Contains(err.Error(), want) {
			t.Errorf("install over the veth (tx %v) = %v, want %q", tx, err, want)
		}
	}
	if ulp := ulpOf(t, c); ulp != "" {
		t.Errorf("the socket got ULP %q from a refused install", ulp)
	}
	if err := e.(backend.Checker).Check(true, tls.VersionTLS12, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256); !errors.Is(err, backend.ErrNotSupported) {
		t.Errorf("Check in a namespace of lo and a veth = %v", err)
	}

	testenv.RequireKernelFeature(t, testenv.FeatureKTLS, ktlsErr)
	softwareOn(t, c, srv, vethClient)
}
