package handshake

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// readKey returns a key's payload (KEYCTL_READ, keyctl(2)). The kernel
// links the request's keyring into this process's keyring before it
// answers ACCEPT (net/handshake/tlshd.c, tls_handshake_private_keyring), so
// the keys it names are within reach.
func readKey(serial uint32) ([]byte, error) {
	size := 4096
	for range 3 {
		buf := make([]byte, size)
		n, err := unix.KeyctlBuffer(unix.KEYCTL_READ, int(int32(serial)), buf, 0)
		if err != nil {
			return nil, fmt.Errorf("handshake: reading key %d: %w", serial, err)
		}
		if n <= len(buf) {
			return buf[:n], nil
		}
		size = n // it grew between the calls, or was larger than guessed
	}
	return nil, fmt.Errorf("handshake: reading key %d: its size keeps changing", serial)
}

// keyPairFromKeyring reads the certificate and private key the request
// names by serial.
func keyPairFromKeyring(certSerial, keySerial uint32) (*tls.Certificate, error) {
	cert, err := readKey(certSerial)
	if err != nil {
		return nil, err
	}
	key, err := readKey(keySerial)
	if err != nil {
		return nil, err
	}
	defer clear(key)
	return parseKeyPair(cert, key)
}

// peerKeyTTL is how long the key that records a peer's certificate lives:
// the consumer reads its serial once, when DONE arrives.
const peerKeyTTL = 5 * time.Minute

// peerKey records the peer's certificate as a key in this process's
// keyring, as tlshd does, and returns its serial for DONE's remote-auth.
// nfsd reads a non-zero serial as "the peer authenticated" (fs/nfsd and
// net/sunrpc/svcsock.c, svc_tcp_handshake_done: XPT_PEER_AUTH unless
// TLS_NO_PEERID). Where the keyring refuses, it returns authenticatedNoKey.
func peerKey(cert *x509.Certificate) (uint32, error) {
	id, err := unix.AddKey("user", "ktls-tlshd peer "+cert.Subject.String(), cert.Raw, unix.KEY_SPEC_PROCESS_KEYRING)
	if err != nil {
		return authenticatedNoKey, fmt.Errorf("handshake: add_key for the peer's certificate: %w", err)
	}
	unix.KeyctlInt(unix.KEYCTL_SET_TIMEOUT, id, int(peerKeyTTL/time.Second), 0, 0)
	return uint32(id), nil
}

// authenticatedNoKey is remote-auth for a peer whose certificate verified
// where no key could be made for it: non-zero, so nfsd sees an
// authenticated peer, and no key's serial, since the kernel numbers keys
// from 3 (security/keys/key.c, key_alloc_serial), so a consumer that looks
// it up finds nothing.
const authenticatedNoKey = 1
