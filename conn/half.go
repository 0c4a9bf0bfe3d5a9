package conn

import (
	"crypto/tls"
	"math"
	"net"
	"sync"

	"github.com/ktls-go/ktls/backend"
	"github.com/ktls-go/ktls/selector"
)

// half is what both directions of a moved connection have, as crypto/tls's
// halfConn: a lock, the traffic key, and the sticky error that ends the
// direction.
type half struct {
	// mu protects every field of the direction once the handshake is
	// done; Close takes it with TryLock (Conn.Close, Conn.unlockOut,
	// Conn.unlockIn).
	mu   sync.Mutex
	keys *dirKeys // TLS 1.3: for KeyUpdate; the suite in every version
	err  error    // sticky: once set, every call of the direction fails with it

	// eng is the engine's index in the counters (stats.EngineIndex),
	// set once when the direction settles (countDirection), before any
	// data moves; wrapRefused says a socket engine was refused because the
	// conn arrived wrapped (installHalf).
	eng         uint8
	wrapRefused bool
}

// setErrorLocked makes err the direction's sticky error and returns it, as
// crypto/tls's halfConn.setErrorLocked.
func (h *half) setErrorLocked(err error) error {
	h.err = err
	return err
}

// endLocked ends the direction after Close: its traffic secret (and, for RX
// during the ticket drain, the pending key and IV) is zeroed and later calls
// fail. It may run more than once.
func (h *half) endLocked() {
	h.keys.wipeIfSet()
	if h.err == nil {
		h.err = net.ErrClosed
	}
}

// outHalf is the TX direction: the installed Sealer and what the key has
// sealed. Its fields are protected by mu.
type outHalf struct {
	half
	sealer          backend.Sealer
	records         uint64 // records sealed under the current key
	keyUpdateAfter  uint64 // records under one key before we update it
	closeNotifySent bool
}

// inHalf is the RX direction: the installed Opener, what was read and not
// yet returned, and the counters against floods. Its fields are protected
// by mu. During the ticket drain, keys also holds the key and IV of the
// install still to come, and cands its candidates.
type inHalf struct {
	half
	opener     backend.Opener
	draining   bool // TLS 1.3 client: crypto/tls still reads tickets (drain.go)
	cands      []selector.Candidate
	input      []byte // plaintext of the last record not yet returned
	hand       []byte // post-handshake handshake bytes not yet a whole message
	useless    int    // consecutive records that returned no data, KeyUpdates aside
	keyUpdates int    // consecutive KeyUpdates without application data
}

// recordsLeftLocked is the one TLS 1.3 key-wear check (RFC 8446 §5.5): how
// many more records the current key may seal before it is updated (0: it
// must be now). TLS 1.2 cannot update its key, and has no bound here. Write
// and sendfile both ask it before application data (Conn.beforeDataLocked).
func (h *outHalf) recordsLeftLocked() uint64 {
	if h.keys.suite.Version != tls.VersionTLS13 {
		return math.MaxUint64
	}
	if h.records >= h.keyUpdateAfter {
		return 0
	}
	return h.keyUpdateAfter - h.records
}
