package handshake

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// readKey returns a key's payload (KEYCTL_READ, keyctl(2)). The kernel
// links the request's keyring into the accepting thread's process keyring
// before it answers ACCEPT (net/handshake/tlshd.c,
// tls_handshake_private_keyring), so the keys it names are within reach of
// that thread: readKey runs on it (keyThread).
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

// peerKey records the peer's certificate as a key, as tlshd does (an
// "asymmetric" key of the DER certificate, "TLS x509 <peer>"; a "user" key
// where the kernel has no X.509 parser), in this process's keyring with a
// timeout, so that a long-running agent does not pile them up, and returns
// its serial for DONE's remote-auth.
// nfsd reads a non-zero serial as "the peer authenticated" (fs/nfsd and
// net/sunrpc/svcsock.c, svc_tcp_handshake_done: XPT_PEER_AUTH unless
// TLS_NO_PEERID). Where the keyring refuses, it returns authenticatedNoKey.
func peerKey(cert *x509.Certificate, peer string) (uint32, error) {
	desc := "TLS x509 " + peer
	id, err := unix.AddKey("asymmetric", desc, cert.Raw, unix.KEY_SPEC_PROCESS_KEYRING)
	if err != nil {
		id, err = unix.AddKey("user", desc, cert.Raw, unix.KEY_SPEC_PROCESS_KEYRING)
	}
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

// linkKeyring links the keyring named name (or numbered so: a decimal
// serial) into the key thread's session keyring, as tlshd does for .nfs,
// .nfsd, .nvme and its configuration's keyrings: the consumers' keys are
// then within reach of the agent (keyrings(7), possession). The keyring is
// found in /proc/keys, among those this process may view.
func linkKeyring(keys *keyThread, name string) (uint32, error) {
	serial, err := findKeyring(name)
	if err != nil {
		return 0, err
	}
	keys.do(func() {
		_, err = unix.KeyctlInt(unix.KEYCTL_LINK, int(int32(serial)), unix.KEY_SPEC_SESSION_KEYRING, 0, 0)
	})
	if err != nil {
		return serial, fmt.Errorf("handshake: linking keyring %q (%d) into the session keyring: %w", name, serial, err)
	}
	return serial, nil
}

func findKeyring(name string) (uint32, error) {
	if n, err := strconv.ParseUint(name, 10, 31); err == nil {
		return uint32(n), nil
	}
	b, err := os.ReadFile("/proc/keys")
	if err != nil {
		return 0, fmt.Errorf("handshake: keyring %q: %w", name, err)
	}
	if s, ok := keyringByName(b, name); ok {
		return s, nil
	}
	return 0, fmt.Errorf("handshake: no keyring %q in /proc/keys", name)
}

// linkRequestKeyring links the keyring a request names (ACCEPT's keyring
// attribute, newer kernels) into this process's session keyring, as tlshd
// does for each handshake: this process then possesses the keyring and,
// through it, the keys the consumer put there for it (keyrings(7),
// possession), which may be readable by their possessor only.
func linkRequestKeyring(serial uint32) error {
	if serial == noKey {
		return nil
	}
	if _, err := unix.KeyctlInt(unix.KEYCTL_LINK, int(int32(serial)), unix.KEY_SPEC_SESSION_KEYRING, 0, 0); err != nil {
		return fmt.Errorf("handshake: linking the request's keyring %d into the session keyring: %w", serial, err)
	}
	return nil
}
