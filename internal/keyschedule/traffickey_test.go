package keyschedule

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"testing"
)

// TestTrafficKeyHMAC checks TrafficKey's HMAC, written out from RFC 2104,
// against ExpandLabel's crypto/hmac for every TLS 1.3 suite (both hashes,
// every key length) on random secrets, and that key and iv do not overlap.
func TestTrafficKeyHMAC(t *testing.T) {
	n := 0
	for _, s := range Suites() {
		if s.Version != tls.VersionTLS13 {
			continue
		}
		n++
		for range 50 {
			secret := make([]byte, s.Hash.Size())
			rand.Read(secret)
			key, iv := TrafficKey(s, secret)
			if want := ExpandLabel(s.Hash, secret, "key", nil, s.KeyLen); !bytes.Equal(key, want) {
				t.Fatalf("%s key: got %x, want %x", s.Name(), key, want)
			}
			if want := ExpandLabel(s.Hash, secret, "iv", nil, s.IVLen); !bytes.Equal(iv, want) {
				t.Fatalf("%s iv: got %x, want %x", s.Name(), iv, want)
			}
			if cap(key) != s.KeyLen || len(iv) != s.IVLen {
				t.Fatalf("%s: key cap %d, iv len %d", s.Name(), cap(key), len(iv))
			}
			// Zeroing one must leave the other.
			clear(key)
			if want := ExpandLabel(s.Hash, secret, "iv", nil, s.IVLen); !bytes.Equal(iv, want) {
				t.Fatalf("%s: zeroing the key changed the iv", s.Name())
			}
		}
	}
	if n != 3 {
		t.Fatalf("%d TLS 1.3 suites, want 3", n)
	}
}

func BenchmarkTrafficKey(b *testing.B) {
	for _, id := range []uint16{tls.TLS_AES_128_GCM_SHA256, tls.TLS_AES_256_GCM_SHA384} {
		s, _ := Lookup(tls.VersionTLS13, id)
		secret := make([]byte, s.Hash.Size())
		b.Run(s.Name(), func(b *testing.B) {
			b.ReportAllocs()
			for range b.N {
				TrafficKey(s, secret)
			}
		})
	}
}
