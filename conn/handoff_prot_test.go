package conn

import (
	"bytes"
	"crypto/tls"
	"testing"

	"github.com/ktls-go/ktls/internal/record"
	"github.com/ktls-go/ktls/internal/testing/testpki"
)

// TestProofProtector: a Protector the proof leaves in dirKeys, which the
// handoff hands the engine with the Params (backend.Params.Protector), is
// one for exactly the Params' key and IV: records it seals open under a
// Protector built afresh from Params.Key and IV, and the other way round,
// at the direction's next sequence number and past it. Every TLS 1.2
// direction comes with one; TLS 1.3 ones only where the proof opened a
// record under the application key (a server's tickets: below, with a
// client session cache).
func TestProofProtector(t *testing.T) {
	for _, pc := range proofCases {
		t.Run(pc.name, func(t *testing.T) {
			cli, srv := recordedPair(t, pc.version, pc.suite)
			for _, c := range []*Conn{cli, srv} {
				st := c.tls.ConnectionState()
				tx, rx, why := c.handoffKeys(st)
				if why != "" {
					t.Fatal(why)
				}
				for _, d := range []struct {
					name string
					k    *dirKeys
					want bool
				}{
					{"tx", tx, pc.version == tls.VersionTLS12},
					{"rx", rx, pc.version == tls.VersionTLS12},
				} {
					if (d.k.prot != nil) != d.want {
						t.Errorf("client %v %s: Protector made: %v, want %v", c.isClient, d.name, d.k.prot != nil, d.want)
					}
					if d.k.prot == nil {
						continue
					}
					checkSameKey(t, d.k)
				}
				tx.wipe()
				rx.wipe()
			}
		})
	}
}

// TestProofProtectorTickets: with a client session cache, the TLS 1.3
// server sends tickets and its proof opens the last under its TX key; the
// client, which drains them, gets both directions' Protectors for the drain
// (RX's goes to the engine after it).
func TestProofProtectorTickets(t *testing.T) {
	ccfg, scfg := testpki.Configs(tls.VersionTLS13, 0)
	ccfg.ClientSessionCache = tls.NewLRUClientSessionCache(1)
	cli, srv := recordedPairConfigs(t, ccfg, scfg)
	ctx, crx, why := cli.handoffKeys(cli.tls.ConnectionState())
	if why != "" {
		t.Fatal(why)
	}
	stx, srx, why := srv.handoffKeys(srv.tls.ConnectionState())
	if why != "" {
		t.Fatal(why)
	}
	if srx.prot != nil {
		t.Error("server rx: a Protector made, for no record under the key")
	}
	for _, k := range []*dirKeys{ctx, crx, stx} {
		if k.prot == nil {
			t.Fatal("no Protector")
		}
		checkSameKey(t, k)
	}
	for _, k := range []*dirKeys{ctx, crx, stx, srx} {
		k.wipe()
	}
}

func checkSameKey(t *testing.T, k *dirKeys) {
	t.Helper()
	p := k.params
	if !k.prot.Matches(p.Version, p.CipherSuite, p.IV) {
		t.Fatal("Protector not made for the Params")
	}
	fresh, err := record.NewProtector(p.Version, p.CipherSuite, p.Key, p.IV)
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("sealed under the direction's key")
	for _, seq := range []uint64{p.Seq, p.Seq + 1, 1 << 20} {
		for _, pair := range [][2]*record.Protector{{k.prot, fresh}, {fresh, k.prot}} {
			rec := pair[0].Seal(nil, seq, record.TypeApplicationData, msg)
			typ, got, err := pair[1].Open(seq, rec)
			if err != nil || typ != record.TypeApplicationData || !bytes.Equal(got, msg) {
				t.Fatalf("seq %d: a record of one does not open under the other: %v", seq, err)
			}
		}
	}
}
