package conn

import (
	"strings"
	"testing"
)

// BenchmarkKeyLogWrite: the lines crypto/tls writes to one end's
// KeyLogWriter in a TLS 1.3 handshake, per op (keyLog.Write keeps four of
// them and forwards all).
func BenchmarkKeyLogWrite(b *testing.B) {
	random := strings.Repeat("ab", 32)
	secret := strings.Repeat("cd", 32)
	var lines [][]byte
	for _, l := range []string{"CLIENT_HANDSHAKE_TRAFFIC_SECRET", "SERVER_HANDSHAKE_TRAFFIC_SECRET", "CLIENT_TRAFFIC_SECRET_0", "SERVER_TRAFFIC_SECRET_0", "EXPORTER_SECRET"} {
		lines = append(lines, []byte(l+" "+random+" "+secret+"\n"))
	}
	b.ReportAllocs()
	for range b.N {
		var k keyLog
		for _, l := range lines {
			if _, err := k.Write(l); err != nil {
				b.Fatal(err)
			}
		}
		k.wipe()
	}
}
