package conn

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"reflect"
	"runtime"
	"testing"
	"time"
	"weak"
)

// The handoff lets crypto/tls's Conn go once both directions are in engines
// (dropTLSLocked): an idle connection then holds no more than crypto/tls's
// own would (issue 18). These tests check that it is really gone, and that
// what the connection still answers from it is what crypto/tls answered.

// droppedCase is a stock peer and a ktls end, on the userspace engine.
type droppedCase struct {
	version   uint16
	ktlsCli   bool
	tickets   bool // a TLS 1.3 client keeps tickets: the drain runs first
	peerWrite string
}

func (d droppedCase) String() string {
	role := "server"
	if d.ktlsCli {
		role = "client"
	}
	return fmt.Sprintf("%#x/%s/tickets=%v", d.version, role, d.tickets)
}

func droppedCases() []droppedCase {
	var cs []droppedCase
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		cs = append(cs, droppedCase{version: v, ktlsCli: true}, droppedCase{version: v})
	}
	return append(cs, droppedCase{version: tls.VersionTLS13, ktlsCli: true, tickets: true})
}

// handshakeDropped runs the case's handshake, and a Read of one message
// from the peer, which ends a ticket drain. It returns the ktls end and,
// when keep is set, the tls.Conn it ran its handshake with (else nil), and a
// weak pointer to that tls.Conn.
func handshakeDropped(t *testing.T, d droppedCase, keep bool) (*Conn, *tls.Conn, weak.Pointer[tls.Conn]) {
	t.Helper()
	ccfg, scfg := testConfigs(d.version)
	scfg.Certificates[0].OCSPStaple = []byte("a stapled response")
	if d.tickets {
		ccfg.ClientSessionCache = tls.NewLRUClientSessionCache(1)
	}
	c, peer := stockPair(t, d.ktlsCli, ccfg, scfg, userspaceOptions())
	t.Cleanup(func() { c.Close(); peer.Close() })
	var ref *tls.Conn
	if keep {
		ref = c.tls
	}
	wp := weak.Make(c.tls)
	errc := handshakeThenWrite(peer, "ping")
	if err := c.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("read %q, %v", buf, err)
	}
	if got := c.Backend(); got.TX != "userspace" || got.RX != "userspace" {
		t.Fatalf("engines %+v", got)
	}
	return c, ref, wp
}

// TestDroppedTLSConn checks that nothing keeps crypto/tls's Conn alive once
// both directions moved: not the Conn, not the state kept for
// ConnectionState (whose TLSUnique is a slice of an array inside the
// tls.Conn, and whose exporter is a closure).
func TestDroppedTLSConn(t *testing.T) {
	for _, d := range droppedCases() {
		t.Run(d.String(), func(t *testing.T) {
			c, _, wp := handshakeDropped(t, d, false)
			c.tlsMu.Lock()
			dropped := c.tls == nil && c.state != nil
			c.tlsMu.Unlock()
			if !dropped {
				t.Fatal("crypto/tls's Conn is still held after both directions moved")
			}
			// A cleanup may need a cycle or two to run (finalizers of what
			// the tls.Conn held); a weak pointer is cleared at the GC
			// that finds it unreachable.
			for i := 0; i < 10 && wp.Value() != nil; i++ {
				runtime.GC()
				time.Sleep(time.Millisecond)
			}
			if wp.Value() != nil {
				t.Fatal("crypto/tls's Conn is still reachable after the handoff dropped it")
			}
			runtime.KeepAlive(c)
		})
	}
}

// TestDroppedTLSState checks that ConnectionState, VerifyHostname and
// OCSPResponse answer from the kept state exactly as crypto/tls's Conn
// answers after the same handshake, error texts included.
func TestDroppedTLSState(t *testing.T) {
	for _, d := range droppedCases() {
		t.Run(d.String(), func(t *testing.T) {
			c, ref, _ := handshakeDropped(t, d, true)
			if c.tls != nil {
				t.Fatal("crypto/tls's Conn is still held after both directions moved")
			}
			got, want := c.ConnectionState(), ref.ConnectionState()
			if !want.HandshakeComplete || (d.version == tls.VersionTLS12) != (len(want.TLSUnique) != 0) {
				t.Fatalf("crypto/tls's state: complete %v, TLSUnique %x", want.HandshakeComplete, want.TLSUnique)
			}
			for _, in := range []struct {
				label string
				ctx   []byte
			}{{"EXPORTER-test", nil}, {"EXPORTER-test", []byte("context")}} {
				gk, gerr := got.ExportKeyingMaterial(in.label, in.ctx, 32)
				wk, werr := want.ExportKeyingMaterial(in.label, in.ctx, 32)
				if !bytes.Equal(gk, wk) || fmt.Sprint(gerr) != fmt.Sprint(werr) || werr != nil {
					t.Errorf("ExportKeyingMaterial(%q, %q): %x, %v; crypto/tls: %x, %v", in.label, in.ctx, gk, gerr, wk, werr)
				}
			}
			// The exporter is a func, which DeepEqual never finds equal
			// unless both are nil: compared above, cleared here.
			clearEKM := func(st tls.ConnectionState) tls.ConnectionState {
				v := reflect.ValueOf(&st).Elem()
				for i := range v.NumField() {
					if v.Field(i).Kind() == reflect.Func {
						reflect.NewAt(v.Field(i).Type(), v.Field(i).Addr().UnsafePointer()).Elem().SetZero()
					}
				}
				return st
			}
			if g, w := clearEKM(got), clearEKM(want); !reflect.DeepEqual(g, w) {
				t.Errorf("ConnectionState:\n got %+v\nwant %+v", g, w)
			}
			if g, w := c.OCSPResponse(), ref.OCSPResponse(); !bytes.Equal(g, w) || (d.ktlsCli && len(w) == 0) {
				t.Errorf("OCSPResponse %q, crypto/tls %q", g, w)
			}
			for _, host := range []string{"localhost", "example.test", "elsewhere.test", "127.0.0.1", ""} {
				g, w := c.VerifyHostname(host), ref.VerifyHostname(host)
				if fmt.Sprint(g) != fmt.Sprint(w) {
					t.Errorf("VerifyHostname(%q): %v; crypto/tls: %v", host, g, w)
				}
				if d.ktlsCli && host == "localhost" && g != nil {
					t.Errorf("VerifyHostname(%q): %v", host, g)
				}
			}
		})
	}
}

// TestInstalledKeys checks what an installed direction keeps of its keys
// (installedKeys): a TLS 1.3 one its own, with the traffic secret that a
// KeyUpdate needs; a TLS 1.2 one only the shared entry of its suite, which
// holds no key, IV or secret, before and after the connection closes (an
// idle TLS 1.2 pair otherwise held four dirKeys, issue 18).
func TestInstalledKeys(t *testing.T) {
	for _, d := range droppedCases() {
		t.Run(d.String(), func(t *testing.T) {
			c, _, _ := handshakeDropped(t, d, false)
			for name, h := range map[string]*half{"tx": &c.out.half, "rx": &c.in.half} {
				h.mu.Lock()
				k := h.keys
				h.mu.Unlock()
				shared := suiteKeys[k.suite.ID] == k
				switch d.version {
				case tls.VersionTLS12:
					if !shared {
						t.Errorf("%s: a TLS 1.2 direction keeps a dirKeys of its own", name)
					}
				case tls.VersionTLS13:
					if shared || len(k.secret) == 0 {
						t.Errorf("%s: a TLS 1.3 direction keeps no traffic secret of its own (shared %v)", name, shared)
					}
				}
			}
			c.Close()
			for id, k := range suiteKeys {
				if k.params.Key != nil || k.params.IV != nil || k.secret != nil || k.prot != nil || k.params.Protector != nil || k.suite.ID != id {
					t.Fatalf("the shared entry of suite %#04x was written: %+v", id, k)
				}
			}
		})
	}
}
