// Package userspace is ktls's own record layer in pure Go: AES-GCM from
// crypto/aes and crypto/cipher, ChaCha20-Poly1305 from golang.org/x/crypto,
// framing from internal/record, and the record loop (batching, read-ahead,
// sequence numbers) of backend/internal/recordlayer, which the afalg engine shares.
//
// It is the reference engine and the test double for all others: it serves
// every AEAD suite of TLS 1.2 and 1.3 on every platform, on any net.Conn, and
// the differential tests of the other engines compare against it. It is also
// a real fast path where the kernel offers nothing better.
package userspace

import (
	"github.com/ktls-go/ktls/backend"
	"github.com/ktls-go/ktls/backend/internal/recordlayer"
)

// New returns the userspace engine. Its halves implement backend.Rekeyer,
// and the engine backend.Checker.
func New() backend.Backend { return recordlayer.New(backend.Userspace, nil) }
