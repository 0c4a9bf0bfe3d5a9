package recordlayer

import (
	"testing"

	"github.com/ktls-go/ktls/backend"
	"github.com/ktls-go/ktls/internal/record"
	"github.com/ktls-go/ktls/internal/testing/testenv"
)

// TestParamsProtector: a half takes Params.Protector when it was made for
// the Params' version, suite and IV, and builds its own otherwise; either
// way its records open at the other end under Params' key.
func TestParamsProtector(t *testing.T) {
	e := goEngine()
	for _, s := range testenv.EngineSuites() {
		t.Run(suiteName(s), func(t *testing.T) {
			p := randomParams(s, 7)
			prot, err := record.NewProtector(p.Version, p.CipherSuite, p.Key, p.IV)
			if err != nil {
				t.Fatal(err)
			}
			other := randomParams(s, 7) // another key and IV
			var otherVersion backend.Params
			for _, o := range testenv.EngineSuites() {
				if o.Version != s.Version && o.IVLen == s.IVLen {
					otherVersion = randomParams(o, 7)
					otherVersion.IV = p.IV
				}
			}
			for _, tc := range []struct {
				name string
				p    backend.Params
				take bool
			}{
				{"same", p, true},
				{"other-key", other, false},
				{"other-version", otherVersion, false},
			} {
				if tc.p.Key == nil {
					continue
				}
				w, r := pipePair(t)
				sp, op := cloneParams(tc.p), cloneParams(tc.p)
				sp.Protector = prot
				se, err := e.NewSealer(backend.Link{Conn: w}, sp)
				if err != nil {
					t.Fatalf("%s: %v", tc.name, err)
				}
				o, err := e.NewOpener(backend.Link{Conn: r}, op)
				if err != nil {
					t.Fatalf("%s: %v", tc.name, err)
				}
				zero(sp)
				zero(op)
				if took := se.(*sealer).prot == prot; took != tc.take {
					t.Errorf("%s: took the Protector: %v, want %v", tc.name, took, tc.take)
				}
				msg := message{backend.TypeApplicationData, []byte("a record under the Params' own key")}
				errc := make(chan error, 1)
				go func() {
					_, err := se.WriteRecords(msg.typ, msg.data)
					errc <- err
				}()
				readMessage(t, o, msg)
				if err := <-errc; err != nil {
					t.Fatal(err)
				}
				se.Close()
				o.Close()
			}
		})
	}
}
