package proxy

import (
	"maps"
	"sync"
	"sync/atomic"
)

// Stats are a Proxy's counters since it was made.
type Stats struct {
	// Accepted counts the connections accepted, Rejected among them
	// those closed at once because MaxConns were open or the proxy was
	// stopping.
	Accepted, Rejected uint64
	// Active is the connections open now.
	Active int64
	// HandshakeFailures counts the TLS handshakes that failed (with the
	// client in server mode, with the remote server in client mode);
	// BackendFailures the backends or remote servers that could not be
	// reached, or that had no route (no backend for a server name).
	HandshakeFailures, BackendFailures uint64
	// FromClient and ToClient are the bytes copied from the clients (the
	// side that connected to the proxy) and to them, plaintext.
	FromClient, ToClient uint64
	// Engines are the bytes each ktls engine moved, by engine name
	// (kernel, nic, afalg, userspace, stdlib).
	Engines map[string]EngineStats
}

// EngineStats are what one engine moved for the proxy: Sealed the
// plaintext bytes it protected (TX of the TLS connections), Opened those
// it opened (RX), and TXConns and RXConns the connections whose TX (RX) it
// held.
type EngineStats struct {
	TXConns, RXConns uint64
	Sealed, Opened   uint64
}

type counters struct {
	accepted, rejected, handshakeFailures, backendFailures atomic.Uint64
	active                                                 atomic.Int64
	fromClient, toClient                                   atomic.Uint64

	mu      sync.Mutex // guards engines
	engines map[string]EngineStats
}

func (c *counters) engine(name string, f func(*EngineStats)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.engines == nil {
		c.engines = make(map[string]EngineStats)
	}
	e := c.engines[name]
	f(&e)
	c.engines[name] = e
}

// Stats returns the counters now. Bytes are counted each time a
// direction's copy returns, at least once per IdleTimeout where one is
// set, and when a connection ends.
func (p *Proxy) Stats() Stats {
	c := &p.stats
	c.mu.Lock()
	engines := maps.Clone(c.engines)
	c.mu.Unlock()
	if engines == nil {
		engines = map[string]EngineStats{}
	}
	return Stats{
		Accepted:          c.accepted.Load(),
		Rejected:          c.rejected.Load(),
		Active:            c.active.Load(),
		HandshakeFailures: c.handshakeFailures.Load(),
		BackendFailures:   c.backendFailures.Load(),
		FromClient:        c.fromClient.Load(),
		ToClient:          c.toClient.Load(),
		Engines:           engines,
	}
}
