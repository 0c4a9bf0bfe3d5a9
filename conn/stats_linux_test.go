//go:build linux

package conn

import (
	"crypto/tls"
	"net"
	"testing"

	"github.com/ktls-go/ktls/backend"
	"github.com/ktls-go/ktls/internal/stats"
	"github.com/ktls-go/ktls/internal/testing/testenv"
)

// TestStatsWrapped checks the "wrapped" fallback class on any Linux host,
// with the kernel's stand-in (sockEngine, wrapped_linux_test.go): a wrapper
// that still holds the server's last TLS 1.2 flight keeps both directions
// off the socket engine (TestWrappedHeldWrites), and each counts once as
// wrapped; a wrapper that holds nothing (TestWrappedSyscallConn) counts no
// fallback. Sequential: no other test moves the counters meanwhile.
func TestStatsWrapped(t *testing.T) {
	needSocketCounts(t)
	for _, tc := range []struct {
		name    string
		pair    func(t *testing.T) (*Conn, *tls.Conn)
		engine  string
		wrapped uint64
	}{
		{"held writes", func(t *testing.T) (*Conn, *tls.Conn) {
			return wrappedPair(t, tls.VersionTLS12, func(c net.Conn) net.Conn { return &lazyWriter{Conn: c} }, nil)
		}, backend.Userspace, 1},
		{"nothing held", func(t *testing.T) (*Conn, *tls.Conn) {
			rc, rs := testenv.TCPPair(t)
			ccfg, scfg := testConfigs(tls.VersionTLS13)
			k := Server(sysConn{rs}, scfg, sockOptions())
			t.Cleanup(func() { k.Close() })
			return k, tls.Client(rc, ccfg)
		}, backend.Kernel, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := stats.Read()
			k, c := tc.pair(t)
			testenv.HandshakeBoth(t, k, c)
			wantDir(t, k, true, tc.engine)
			wantDir(t, k, false, tc.engine)
			exchangeAfter(t, k, c, nil, 1000)
			after := stats.Read()
			i := stats.EngineIndex(tc.engine)
			for d, name := range []string{"tx", "rx"} {
				if got := after.Fallbacks[d][stats.Wrapped] - before.Fallbacks[d][stats.Wrapped]; got != tc.wrapped {
					t.Errorf("%s: wrapped fallbacks moved by %d, want %d", name, got, tc.wrapped)
				}
				var all uint64
				for class := range stats.NumClasses {
					all += after.Fallbacks[d][class] - before.Fallbacks[d][class]
				}
				if all != tc.wrapped {
					t.Errorf("%s: fallbacks moved by %d in all, want %d", name, all, tc.wrapped)
				}
				if got := after.Conns[d][i] - before.Conns[d][i]; got != 1 {
					t.Errorf("%s: %s connections moved by %d, want 1", name, tc.engine, got)
				}
				if got := after.Bytes[d][i] - before.Bytes[d][i]; got != 1000 {
					t.Errorf("%s: %s bytes moved by %d, want 1000", name, tc.engine, got)
				}
			}
		})
	}
}
