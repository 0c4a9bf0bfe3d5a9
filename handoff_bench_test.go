package ktls

import (
	"crypto/tls"
	"testing"

	"github.com/ktls-go/ktls/selector"
)

// BenchmarkEngineChoice: what a connection pays to be wired (connOptions,
// in Client and Server) and what its handoff pays to choose engines (the
// facts and candidates of both directions), with the default options.
func BenchmarkEngineChoice(b *testing.B) {
	b.Run("step=options", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			connOptions(nil)
		}
	})
	b.Run("step=choice", func(b *testing.B) {
		o := connOptions(nil)
		b.ReportAllocs()
		for range b.N {
			for _, d := range []selector.Direction{selector.TX, selector.RX} {
				if _, err := o.Policy.Candidates(o.Facts(d, tls.VersionTLS13, tls.TLS_AES_128_GCM_SHA256, "")); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}
