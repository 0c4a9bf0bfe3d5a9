package interop_test

import (
	"crypto/tls"
	"io"
	"sync"
	"testing"

	"github.com/ktls-go/ktls/internal/testing/ktlstest"
	"github.com/ktls-go/ktls/internal/testing/testenv"
	"github.com/ktls-go/ktls/internal/testing/testpki"
)

// TestInteropStock runs every suite in both roles against stock crypto/tls:
// data both ways at once, checked by hash, and the engine that carried it.
func TestInteropStock(t *testing.T) {
	size := 4 << 20
	if testing.Short() {
		size = 256 << 10
	}
	for _, sc := range ktlstest.InteropSuites {
		t.Run(sc.String(), ktlstest.Roles(func(t *testing.T, ktlsClient bool) {
			ccfg, scfg := testpki.Configs(sc.Version, sc.Suite)
			k, s := ktlstest.PairWithStock(t, ktlsClient, ccfg, scfg)
			st := k.ConnectionState()
			if st.Version != sc.Version || (sc.Suite != 0 && st.CipherSuite != sc.Suite) {
				t.Fatalf("negotiated %s %s", tls.VersionName(st.Version), tls.CipherSuiteName(st.CipherSuite))
			}
			ktlstest.WantAuto(t, k)
			testenv.Exchange(t, k, s, size)
			testenv.Exchange(t, k, s, 1)
			ktlstest.CloseBoth(t, k, s)
		}))
	}
}

// TestLargeTransfer moves 64 MiB each way (32 MiB in short mode... 8 MiB)
// through each role, checked by hash.
func TestLargeTransfer(t *testing.T) {
	size := 64 << 20
	if testing.Short() {
		size = 8 << 20
	}
	for _, sc := range []ktlstest.SuiteCase{{Version: tls.VersionTLS13, Suite: 0}, {Version: tls.VersionTLS12, Suite: tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}} {
		t.Run(sc.String(), ktlstest.Roles(func(t *testing.T, ktlsClient bool) {
			ccfg, scfg := testpki.Configs(sc.Version, sc.Suite)
			k, s := ktlstest.PairWithStock(t, ktlsClient, ccfg, scfg)
			ktlstest.WantAuto(t, k)
			testenv.Exchange(t, k, s, size)
		}))
	}
}

// TestOneByteWrites sends a stream of one-byte writes each way.
func TestOneByteWrites(t *testing.T) {
	for _, sc := range []ktlstest.SuiteCase{{Version: tls.VersionTLS13, Suite: 0}, {Version: tls.VersionTLS12, Suite: tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256}} {
		t.Run(sc.String(), ktlstest.Roles(func(t *testing.T, ktlsClient bool) {
			ccfg, scfg := testpki.Configs(sc.Version, sc.Suite)
			k, s := ktlstest.PairWithStock(t, ktlsClient, ccfg, scfg)
			const n = 300
			for _, dir := range []struct {
				w io.Writer
				r io.Reader
			}{{k, s}, {s, k}} {
				errc := make(chan error, 1)
				go func() {
					for i := range n {
						if _, err := dir.w.Write([]byte{byte(i)}); err != nil {
							errc <- err
							return
						}
					}
					errc <- nil
				}()
				got := make([]byte, n)
				if _, err := io.ReadFull(dir.r, got); err != nil {
					t.Fatal(err)
				}
				if err := <-errc; err != nil {
					t.Fatal(err)
				}
				for i, b := range got {
					if b != byte(i) {
						t.Fatalf("byte %d = %d", i, b)
					}
				}
			}
		}))
	}
}

// TestClientCertALPN uses client certificates and ALPN in both roles.
func TestClientCertALPN(t *testing.T) {
	for _, v := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
		t.Run(tls.VersionName(v), ktlstest.Roles(func(t *testing.T, ktlsClient bool) {
			p := testpki.Get()
			ccfg, scfg := testpki.Configs(v, 0)
			ccfg.Certificates = []tls.Certificate{p.Client()}
			ccfg.NextProtos = []string{"h2", "http/1.1"}
			scfg.ClientAuth = tls.RequireAndVerifyClientCert
			scfg.ClientCAs = p.Pool
			scfg.NextProtos = []string{"http/1.1"}
			k, s := ktlstest.PairWithStock(t, ktlsClient, ccfg, scfg)
			st := k.ConnectionState()
			if st.NegotiatedProtocol != "http/1.1" {
				t.Fatalf("ALPN = %q", st.NegotiatedProtocol)
			}
			if !ktlsClient && len(st.PeerCertificates) != 1 {
				t.Fatalf("server saw %d client certificates", len(st.PeerCertificates))
			}
			ktlstest.WantAuto(t, k)
			testenv.Exchange(t, k, s, 100<<10)
		}))
	}
}

// TestResumption resumes a session on a second connection, in both roles and
// both versions, with the record layer moved on both connections. For a TLS
// 1.3 ktls client this needs the tickets that arrive after the handshake to
// reach crypto/tls's session cache with RX moved.
func TestResumption(t *testing.T) {
	for _, sc := range []ktlstest.SuiteCase{{Version: tls.VersionTLS13, Suite: 0}, {Version: tls.VersionTLS12, Suite: tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384}} {
		t.Run(sc.String(), ktlstest.Roles(func(t *testing.T, ktlsClient bool) {
			ccfg, scfg := testpki.Configs(sc.Version, sc.Suite)
			ccfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
			for i, wantResume := range []bool{false, true, true} {
				k, s := ktlstest.PairWithStock(t, ktlsClient, ccfg, scfg)
				// The server speaks first: on TLS 1.3 the client's ticket
				// is read (by crypto/tls, in the drain) before the data.
				testenv.Exchange(t, k, s, 10<<10)
				if got := k.ConnectionState().DidResume; got != wantResume {
					t.Fatalf("connection %d: DidResume = %v, want %v", i, got, wantResume)
				}
				ktlstest.WantAuto(t, k)
				k.Close()
				s.Close()
			}
		}))
	}
}

// TestConcurrentReadWrite reads and writes at once from several goroutines'
// worth of traffic on one connection, under the race detector.
func TestConcurrentReadWrite(t *testing.T) {
	ccfg, scfg := testpki.Configs(tls.VersionTLS13, 0)
	k, s := ktlstest.PairWithStock(t, true, ccfg, scfg)
	// The stock side echoes.
	go io.Copy(s, s)
	const chunks, size = 64, 8 << 10
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range chunks {
			if _, err := k.Write(testenv.Pattern(size, byte(i))); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for i := range chunks {
		got := make([]byte, size)
		if _, err := io.ReadFull(k, got); err != nil {
			t.Fatal(err)
		}
		if string(got) != string(testenv.Pattern(size, byte(i))) {
			t.Fatalf("chunk %d differs", i)
		}
	}
	wg.Wait()
}
