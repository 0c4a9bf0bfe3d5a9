package handshake

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"reflect"
	"testing"

	"github.com/ktls-go/ktls"
	"github.com/ktls-go/ktls/internal/netlink"
	"github.com/ktls-go/ktls/internal/testing/testpki"
)

// acceptReply builds an ACCEPT reply as net/handshake/tlshd.c
// (tls_handshake_accept) does on the newest kernels: every attribute,
// PEERNAME and KEYRING included, and one attribute of a kernel still newer.
func acceptReply() []byte {
	b := []byte{cmdAccept, genlVersion, 0, 0}
	b = netlink.AppendU32(b, attrAcceptSockfd, 7)
	b = netlink.AppendU32(b, attrAcceptMessageType, uint32(ServerHello))
	b = netlink.AppendString(b, attrAcceptPeername, "nfs.example.test")
	b = netlink.AppendU32(b, attrAcceptTimeout, 5000)
	b = netlink.AppendU32(b, attrAcceptKeyring, 0x1234)
	b = netlink.AppendU32(b, attrAcceptAuthMode, uint32(AuthX509))
	var x []byte
	x = netlink.AppendU32(x, attrX509Cert, 0x111)
	x = netlink.AppendU32(x, attrX509Privkey, 0x222)
	b = netlink.AppendNested(b, attrAcceptCertificate, x)
	b = netlink.AppendU32(b, attrAcceptPeerIdentity, 0x333)
	b = netlink.AppendU32(b, attrAcceptPeerIdentity, 0x444)
	b = netlink.AppendU32(b, 11, 1) // HANDSHAKE_A_ACCEPT_SESSION_ID, or whatever comes next
	return b
}

func TestParseAccept(t *testing.T) {
	r, err := parseAccept(acceptReply())
	if err != nil {
		t.Fatal(err)
	}
	want := &Request{Sockfd: 7, Type: ServerHello, Auth: AuthX509, TimeoutMillis: 5000,
		PeerIdentities: []uint32{0x333, 0x444}, Cert: 0x111, PrivKey: 0x222,
		Peername: "nfs.example.test", Keyring: 0x1234, Unknown: 1}
	if !reflect.DeepEqual(r, want) {
		t.Errorf("parseAccept =\n%+v, want\n%+v", r, want)
	}

	// A 6.4 kernel's reply: no peername, keyring or timeout.
	b := []byte{cmdAccept, genlVersion, 0, 0}
	b = netlink.AppendU32(b, attrAcceptSockfd, 3)
	b = netlink.AppendU32(b, attrAcceptMessageType, uint32(ClientHello))
	b = netlink.AppendU32(b, attrAcceptAuthMode, uint32(AuthUnauth))
	r, err = parseAccept(b)
	if err != nil || r.Sockfd != 3 || r.Type != ClientHello || r.Auth != AuthUnauth || r.Peername != "" || r.TimeoutMillis != 0 {
		t.Errorf("parseAccept(6.4) = %+v, %v", r, err)
	}
}

func TestParseAcceptMalformed(t *testing.T) {
	for _, tc := range []struct {
		name   string
		b      []byte
		hasReq bool // a socket arrived: it must be answered with DONE
	}{
		{"short", []byte{cmdAccept}, false},
		{"wrong command", []byte{cmdDone, 1, 0, 0}, false},
		{"no socket", netlink.AppendU32([]byte{cmdAccept, 1, 0, 0}, attrAcceptAuthMode, 1), false},
		{"no type", netlink.AppendU32([]byte{cmdAccept, 1, 0, 0}, attrAcceptSockfd, 4), true},
		{"no auth", netlink.AppendU32(netlink.AppendU32([]byte{cmdAccept, 1, 0, 0}, attrAcceptSockfd, 4), attrAcceptMessageType, 1), true},
		{"short u32", netlink.AppendAttr([]byte{cmdAccept, 1, 0, 0}, attrAcceptSockfd, []byte{1, 2}), false},
		{"negative fd", netlink.AppendU32([]byte{cmdAccept, 1, 0, 0}, attrAcceptSockfd, 0xffffffff), false},
		{"truncated attribute", append([]byte{cmdAccept, 1, 0, 0}, 8, 0, 1, 0), false},
	} {
		r, err := parseAccept(tc.b)
		if err == nil {
			t.Errorf("%s: parseAccept = %+v, nil", tc.name, r)
		}
		if (r != nil) != tc.hasReq {
			t.Errorf("%s: parseAccept gave request %+v, want one: %v", tc.name, r, tc.hasReq)
		}
	}
}

func TestDoneRequest(t *testing.T) {
	b := doneRequest(13, 9, []uint32{42, 43}, nil)
	if b[0] != cmdDone || b[1] != genlVersion {
		t.Fatalf("header % x", b[:4])
	}
	attrs, err := netlink.ParseAttrs(b[netlink.GenlHdrLen:])
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range attrs {
		v, _ := a.U32()
		got = append(got, fmt.Sprintf("%d=%d", a.Type, v))
	}
	want := []string{"1=13", "2=9", "3=42", "3=43"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("DONE attributes %v, want %v", got, want)
	}
	if n := len(doneRequest(0, 9, nil, nil)); n != netlink.GenlHdrLen+16 {
		t.Errorf("DONE without remote-auth: %d bytes", n)
	}
	// A kernel whose DONE policy had no remote-auth gets none.
	if n := len(doneRequest(0, 9, []uint32{42}, attrSet{attrDoneStatus, attrDoneSockfd})); n != netlink.GenlHdrLen+16 {
		t.Errorf("DONE under a policy without remote-auth: %d bytes", n)
	}
}

func TestIsReady(t *testing.T) {
	ready := netlink.AppendU32([]byte{cmdReady, 1, 0, 0}, attrAcceptHandlerClass, handlerClassTLSHD)
	other := netlink.AppendU32([]byte{cmdReady, 1, 0, 0}, attrAcceptHandlerClass, 2)
	for _, tc := range []struct {
		b    []byte
		want bool
	}{{ready, true}, {other, false}, {[]byte{cmdReady, 1, 0, 0}, true}, {[]byte{cmdAccept, 1, 0, 0}, false}, {nil, false}} {
		if got := isReady(tc.b); got != tc.want {
			t.Errorf("isReady(% x) = %v", tc.b, got)
		}
	}
}

// FuzzParseAccept: no input makes the parsers panic, and a request that
// parses has a socket.
func FuzzParseAccept(f *testing.F) {
	f.Add(acceptReply())
	f.Add(doneRequest(5, 3, []uint32{1}, nil))
	f.Add([]byte{cmdAccept, 1, 0, 0, 4, 0, 7, 0x80})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parseAccept(b)
		if err == nil && (r == nil || r.Sockfd < 0) {
			t.Fatalf("parseAccept = %+v without an error", r)
		}
		isReady(b)
		groupMembers(b, 3)
	})
}

func TestGroupMembers(t *testing.T) {
	proc := []byte(`sk               Eth Pid        Groups   Rmem     Wmem     Dump  Locks    Drops    Inode
0000000000000000 0   4026531    00000000 0        0        0     2        0        1
0000000000000000 16  812        00000004 0        0        0     2        0        2
0000000000000000 16  -4242      00000005 0        0        0     2        0        3
0000000000000000 16  900        00000001 0        0        0     2        0        4
0000000000000000 15  77         00000004 0        0        0     2        0        5
`)
	ports, ok := groupMembers(proc, 3)
	if !ok || !reflect.DeepEqual(ports, []uint32{812}) {
		t.Errorf("groupMembers(3) = %v, %v", ports, ok)
	}
	if _, ok := groupMembers(proc, 40); ok {
		t.Error("group 40 is beyond what the file shows")
	}
	if _, ok := groupMembers([]byte("garbage\n"), 3); ok {
		t.Error("a file without the header told")
	}
}

func TestStatusOf(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		err  error
		want Status
	}{
		{nil, StatusOK},
		{withStatus(StatusNoKey, errors.New("x")), StatusNoKey},
		{fmt.Errorf("wrapped: %w", withStatus(StatusInvalid, errors.New("x"))), StatusInvalid},
		{ctx.Err(), StatusTimedOut},
		{context.DeadlineExceeded, StatusTimedOut},
		{fmt.Errorf("handshake: %w", os.ErrDeadlineExceeded), StatusTimedOut},
		{&net.OpError{Op: "read", Err: os.ErrDeadlineExceeded}, StatusTimedOut},
		{&ktls.StrictError{}, StatusFault},
		{tls.AlertError(42), StatusRejected},
		{&tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}, StatusRejected},
		{errors.New("EOF"), StatusRejected},
	} {
		if got := StatusOf(tc.err); got != tc.want {
			t.Errorf("StatusOf(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

func TestParseKeyPair(t *testing.T) {
	p := testpki.Get()
	c := p.Client()
	keyDER, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	for _, tc := range []struct {
		name      string
		cert, key []byte
	}{{"DER", c.Certificate[0], keyDER}, {"PEM", certPEM, keyPEM}} {
		kp, err := parseKeyPair(tc.cert, tc.key)
		if err != nil || kp.Leaf == nil || len(kp.Certificate) != 1 {
			t.Errorf("%s: parseKeyPair = %v, %v", tc.name, kp, err)
		}
	}
	other, _ := x509.MarshalPKCS8PrivateKey(p.ECDSA().PrivateKey)
	if _, err := parseKeyPair(c.Certificate[0], other); err == nil {
		t.Error("a key of another certificate was taken")
	}
	if _, err := parseKeyPair([]byte("junk"), keyDER); err == nil {
		t.Error("junk was taken for a certificate")
	}
	if _, err := parseKeyPair(c.Certificate[0], []byte("junk")); err == nil {
		t.Error("junk was taken for a key")
	}
}

// The DONE attributes keep the kernel's numbering: the layout is ABI.
func TestDoneLayout(t *testing.T) {
	b := doneRequest(110, 5, nil, nil)
	if got := binary.NativeEndian.Uint32(b[netlink.GenlHdrLen+4:]); got != 110 {
		t.Errorf("status %d", got)
	}
}

func TestKeyringByName(t *testing.T) {
	proc := []byte(`0c3d8cfa I--Q---     1 perm 3f030000     0     0 keyring   _ses: 1
1a2b3c4d I------     1 perm 1f0b0000     0     0 keyring   .nvme: empty
2b3c4d5e I------     1 perm 1f0b0000     0     0 user      .nfs: 12
3c4d5e6f I------     1 perm 1f0b0000     0     0 keyring   .nfs: 1
`)
	if s, ok := keyringByName(proc, ".nvme"); !ok || s != 0x1a2b3c4d {
		t.Errorf(".nvme = %#x, %v", s, ok)
	}
	if s, ok := keyringByName(proc, ".nfs"); !ok || s != 0x3c4d5e6f {
		t.Errorf(".nfs = %#x, %v (a user key of that name is not a keyring)", s, ok)
	}
	if _, ok := keyringByName(proc, ".nfsd"); ok {
		t.Error(".nfsd found")
	}
}
