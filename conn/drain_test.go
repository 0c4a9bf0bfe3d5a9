package conn

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/ktls-go/ktls/backend"
	"github.com/ktls-go/ktls/backend/userspace"
	"github.com/ktls-go/ktls/internal/testing/testenv"
)

// The TLS 1.3 client's ticket drain (drain.go, docs/ARCHITECTURE.md step 7).

// seqEngine is the userspace engine that notes the sequence number and the
// buffered bytes each opener starts from.
type seqEngine struct {
	backend.Backend
	mu       sync.Mutex
	rxSeq    []uint64
	buffered []int
}

func (e *seqEngine) NewOpener(l backend.Link, p backend.Params) (backend.Opener, error) {
	e.mu.Lock()
	e.rxSeq = append(e.rxSeq, p.Seq)
	e.buffered = append(e.buffered, len(l.Buffered))
	e.mu.Unlock()
	return e.Backend.NewOpener(l, p)
}

// countingCache counts the sessions crypto/tls puts into the cache.
type countingCache struct {
	tls.ClientSessionCache
	mu   sync.Mutex
	puts int
}

func (c *countingCache) Put(key string, cs *tls.ClientSessionState) {
	if cs != nil {
		c.mu.Lock()
		c.puts++
		c.mu.Unlock()
	}
	c.ClientSessionCache.Put(key, cs)
}

func (c *countingCache) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.puts
}

// TestDrainTickets: a stock TLS 1.3 server's tickets reach the client's
// session cache through crypto/tls; the first record that is not a ticket
// (the server's data, sent before or after the client reads) ends the drain,
// RX moves with the count of ticket records crypto/tls consumed, the data
// arrives whole, and the next connection resumes with a ticket. Over a conn
// that is not a socket (no peek), the data record was read already and is
// the engine's Link.Buffered.
func TestDrainTickets(t *testing.T) {
	for _, tc := range []struct {
		name          string
		early, noPeek bool
	}{
		{"data-after-read", false, false},
		{"data-queued", true, false},
		{"no-peek", false, true},
	} {
		early := tc.early
		t.Run(tc.name, func(t *testing.T) {
			ccfg, scfg := testConfigs(tls.VersionTLS13)
			cache := &countingCache{ClientSessionCache: tls.NewLRUClientSessionCache(4)}
			ccfg.ClientSessionCache = cache
			for i := range 2 {
				e := &seqEngine{Backend: userspace.New()}
				rc, rs := testenv.TCPPair(t)
				if tc.noPeek {
					rc = struct{ net.Conn }{rc} // not a syscall.Conn: newPeeker gives nil
				}
				k, peer := Client(rc, ccfg, Options{Backends: []backend.Backend{e}}), tls.Server(rs, scfg)
				wrote := make(chan struct{})
				errc := make(chan error, 1)
				go func() {
					if err := peer.Handshake(); err != nil {
						errc <- err
						return
					}
					if !early {
						<-wrote
					}
					_, err := peer.Write([]byte("data after the tickets"))
					errc <- err
				}()
				if err := k.Handshake(); err != nil {
					t.Fatal(err)
				}
				if resumed := k.ConnectionState().DidResume; resumed != (i == 1) {
					t.Fatalf("connection %d: DidResume = %v", i, resumed)
				}
				if !k.in.draining {
					t.Fatal("no ticket drain after a TLS 1.3 handshake with a session cache")
				}
				if early {
					time.Sleep(10 * time.Millisecond) // let the data queue behind the tickets
				}
				before := cache.count()
				done := make(chan struct{})
				go func() {
					defer close(done)
					if !early {
						time.Sleep(10 * time.Millisecond)
						close(wrote)
					}
				}()
				k.SetReadDeadline(time.Now().Add(advTimeout))
				got := make([]byte, 64)
				n, err := k.Read(got)
				<-done
				if err != nil || string(got[:n]) != "data after the tickets" {
					t.Fatalf("Read = %q, %v", got[:n], err)
				}
				if err := <-errc; err != nil {
					t.Fatal(err)
				}
				tickets := cache.count() - before
				if tickets == 0 {
					t.Fatal("no ticket reached the session cache")
				}
				if k.in.draining || k.rc != nil && k.rc.drain != nil || k.tls != nil {
					t.Fatal("the drain did not end at the data record, or crypto/tls's conn was kept after it")
				}
				e.mu.Lock()
				seqs, buffered := e.rxSeq, e.buffered
				e.mu.Unlock()
				// crypto/tls's server sends each ticket in a record of
				// its own, under the application key from 0.
				if len(seqs) != 1 || seqs[0] != uint64(tickets) {
					t.Fatalf("RX installed at sequence numbers %v; want [%d], the ticket records", seqs, tickets)
				}
				if b := k.Backend(); b.RX != backend.Userspace || b.RXDetail.Drained.Engine != backend.Userspace {
					t.Fatalf("Backend() = %+v", b)
				}
				// Where the socket is peeked, the data record stays in it.
				if peeked := runtime.GOOS == "linux" && !tc.noPeek; peeked != (buffered[0] == 0) {
					t.Fatalf("%d bytes buffered at the install (peeked: %v)", buffered[0], peeked)
				}
				k.Close()
				peer.Close()
			}
		})
	}
}

// TestDrainEndsAtKeyUpdate: a handshake record that is not only tickets
// (here a KeyUpdate, alone or after a ticket in the same record) ends the
// drain; the engine takes it at the right sequence number and follows the
// update, and the data under the new key arrives.
func TestDrainEndsAtKeyUpdate(t *testing.T) {
	for _, withTicket := range []bool{false, true} {
		p := newAdvPair(t, advVariants[1])
		if withTicket {
			// A ticket crypto/tls could read, then a KeyUpdate, in one
			// record: not a ticket record.
			ticket := []byte{typeNewSessionTicket, 0, 0, 14, 0, 0, 0, 60, 1, 2, 3, 4, 0, 0, 1, 9, 0, 0}
			p.attacker.out.mu.Lock()
			_, err := p.attacker.out.sealer.WriteRecords(backend.TypeHandshake, append(ticket, typeKeyUpdate, 0, 0, 1, 0))
			if err == nil {
				err = rekey(p.attacker.out.sealer.(backend.Rekeyer), p.attacker.out.keys)
			}
			p.attacker.out.mu.Unlock()
			if err != nil {
				t.Fatal(err)
			}
		} else {
			p.keyUpdate(t, 0)
		}
		if _, err := p.attacker.Write([]byte("under the next key")); err != nil {
			t.Fatal(err)
		}
		got, err := p.victimRead(t)
		if err != nil || got != "under the next key" {
			t.Fatalf("withTicket=%v: victim Read = %q, %v", withTicket, got, err)
		}
		if p.victim.in.draining {
			t.Fatal("still draining")
		}
	}
}

// TestCloseDuringDrain: Close before the drain ended zeroes what the drain
// holds (the server's application key for opening tickets, the pending
// install's key and IV), installs nothing more, and later reads fail.
func TestCloseDuringDrain(t *testing.T) {
	ccfg, scfg := testConfigs(tls.VersionTLS13)
	ccfg.ClientSessionCache = tls.NewLRUClientSessionCache(1)
	rc, rs := testenv.TCPPair(t)
	g := newGateEngine()
	close(g.release)
	k, peer := Client(rc, ccfg, Options{Backends: []backend.Backend{g}}), tls.Server(rs, scfg)
	defer peer.Close()
	handshakeBoth(t, k, peer)
	if !k.in.draining {
		t.Fatal("no ticket drain: the test needs one")
	}
	d := k.rc.drain
	if d == nil || d.prot == nil {
		t.Fatal("the drain holds no key")
	}
	if err := k.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	k.in.mu.Lock()
	if d.prot != nil || !allZero(d.scratch) {
		t.Error("the drain's key outlived Close")
	}
	if !allZero(k.in.keys.params.Key) || !allZero(k.in.keys.params.IV) || !allZero(k.in.keys.secret) {
		t.Error("the pending RX key, IV or secret outlived Close")
	}
	k.in.mu.Unlock()
	if _, err := k.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Read after Close = %v; want net.ErrClosed", err)
	}
	if opened, closed := g.counts(); opened != 1 || closed != 1 {
		t.Errorf("%d halves installed, %d closed; want the sealer alone, closed", opened, closed)
	}
	io.Copy(io.Discard, peer)
}
