package ktls

import "github.com/ktls-go/ktls/internal/stats"

// Counters is a snapshot of ktls's process-wide counters, as Stats returns
// it: every connection made by this package, in this process, since it
// started. Each counter only grows (until it wraps at 2^64); rates are the
// differences between two snapshots. A snapshot reads each counter
// atomically, not all of them at one instant: two counters may differ by
// a call in flight.
//
// The counters cost a connection one atomic add per Read, Write, ReadFrom
// or WriteTo call (never per byte or record), into one of a few
// cache-line-padded shards that connections take round robin, and a few
// atomic adds when it is made; no lock (docs/ARCHITECTURE.md, "Counters").
//
// The JSON names are stable: package ktlsexpvar publishes this struct under
// the expvar name "ktls", and `ktls doctor -stats URL` reads it back.
type Counters struct {
	// TX is the sending direction of every connection: which engine took
	// it, and the application data bytes each engine sent.
	TX DirectionCounters `json:"tx"`
	// RX is the receiving direction: which engine took it, and the
	// application data bytes each engine delivered to the program.
	RX DirectionCounters `json:"rx"`
	// Fallbacks counts, per direction, the directions that did not get the
	// engine that was forced or the best one the automatic order lists,
	// by the class of the reason.
	Fallbacks FallbackDirections `json:"fallbacks"`
	// HandshakeFailures counts handshakes that failed, for any reason:
	// crypto/tls's (a certificate, a protocol error, a peer that hung up,
	// a cancelled context), a *StrictError, an engine that failed after it
	// changed the socket, a Close that overtook the handshake, or a
	// malformed KTLS_BACKEND on a connection made by Client or Server
	// (Dial and Listen return that error before there is a connection, and
	// count nothing). A connection counts once, whatever number of calls
	// see the error.
	HandshakeFailures uint64 `json:"handshake_failures"`
	// SendfileBytes are the bytes ReadFrom sent from a file with the TX
	// engine's sendfile(2) (io.Copy(conn, file) on the kernel engine): the
	// file's bytes never entered the process. They count in TX.Bytes too.
	SendfileBytes uint64 `json:"sendfile_bytes"`
	// SpliceReadBytes are the bytes WriteTo moved out of kTLS RX with
	// splice(2) (io.Copy(dst, conn) into a socket, pipe or file on the
	// kernel engine): decrypted by the kernel, never in the process. They
	// count in RX.Bytes too.
	SpliceReadBytes uint64 `json:"splice_read_bytes"`
	// SpliceWriteBytes are the bytes ReadFrom moved from a socket into kTLS
	// TX with splice(2) (io.Copy(conn, tcpConn) on the kernel engine),
	// including those held after a write deadline, which go out first on
	// the next write. They count in TX.Bytes too.
	SpliceWriteBytes uint64 `json:"splice_write_bytes"`
	// KeyUpdatesSent counts TLS 1.3 KeyUpdate messages ktls sent: its key
	// wore out (RFC 8446 §5.5) or the peer asked (update_requested). Those
	// of connections on stdlib are crypto/tls's and are not seen.
	KeyUpdatesSent uint64 `json:"key_updates_sent"`
	// KeyUpdatesReceived counts the peer's TLS 1.3 KeyUpdates that a
	// connection followed (its RX engine took the new key). One that the
	// engine could not follow (ErrKeyUpdateUnsupported) is not counted.
	// Those of connections on stdlib are not seen.
	KeyUpdatesReceived uint64 `json:"key_updates_received"`
}

// DirectionCounters are one direction's engines and bytes.
type DirectionCounters struct {
	// Connections counts connections by the engine that took this
	// direction, once, when it settles: at the end of the handshake, or,
	// for the RX of a TLS 1.3 client that keeps session tickets, at the end
	// of the ticket drain, on its first Read (docs/ARCHITECTURE.md step 7).
	// The engine is the one Conn.Backend reports (a nic half the kernel
	// kept in software counts as kernel). A failed handshake counts no
	// engine.
	Connections EngineCounters `json:"connections"`
	// Bytes are application data bytes, by engine: those Write, ReadFrom
	// and io.Copy sent (TX), and those Read and WriteTo delivered (RX). No
	// record headers, tags, alerts or handshake messages.
	Bytes EngineCounters `json:"bytes"`
}

// EngineCounters is one count per engine (package backend's names).
type EngineCounters struct {
	// Kernel is Linux kTLS in software.
	Kernel uint64 `json:"kernel"`
	// NIC is kTLS with the records offloaded to the network device.
	NIC uint64 `json:"nic"`
	// AFALG is the kernel crypto API through AF_ALG.
	AFALG uint64 `json:"afalg"`
	// Userspace is ktls's own pure-Go record layer.
	Userspace uint64 `json:"userspace"`
	// Stdlib is crypto/tls's own record layer: the connection never left
	// it.
	Stdlib uint64 `json:"stdlib"`
}

// FallbackDirections are the fallbacks of each direction.
type FallbackDirections struct {
	// TX are the sending directions that fell back.
	TX FallbackCounters `json:"tx"`
	// RX are the receiving directions that fell back.
	RX FallbackCounters `json:"rx"`
}

// FallbackCounters counts the directions that fell back, by the class of
// the reason. A direction falls back when it settles on another engine than
// the one forced (KTLS_BACKEND, WithBackend), or, automatically, when an
// engine ahead of the one it got was passed over, or when it stays on
// stdlib although the program did not ask for it. A direction that falls
// back counts once, in the first of these classes that applies, in the
// order below; Conn.Backend gives a connection's whole reason. The classes
// are stable: a new one may be added, none renamed or removed.
type FallbackCounters struct {
	// FIPS: stdlib, because the program runs in FIPS 140-3 mode
	// (crypto/fips140.Enabled), where only crypto/tls's record layer is
	// inside the Go Cryptographic Module.
	FIPS uint64 `json:"fips"`
	// Suite: stdlib, because no engine takes the version or cipher suite
	// (TLS 1.2 CBC suites have no AEAD), even where one was forced.
	Suite uint64 `json:"suite"`
	// Uncertain: stdlib, because the keys or sequence numbers were not known
	// with certainty, or the tls.Config allows TLS 1.2 renegotiation
	// (docs/ARCHITECTURE.md step 4).
	Uncertain uint64 `json:"uncertain"`
	// Paired: stdlib, because the other direction stayed on stdlib, and
	// crypto/tls cannot share a connection with another engine
	// (BackendInfo.BothStdlib).
	Paired uint64 `json:"paired"`
	// Wrapped: a socket engine (kernel, nic) was refused because the conn
	// arrived wrapped and ktls could not prove that the wrapper holds no
	// byte of the stream ("Conns that arrive wrapped" in the package
	// documentation).
	Wrapped uint64 `json:"wrapped"`
	// Forced: an engine was forced and the direction got another one: the
	// forced engine was unavailable (its probe said so) or refused the
	// install, and KTLS_STRICT was not set.
	Forced uint64 `json:"forced"`
	// Refused: an engine the policy listed declined the direction when it
	// was installed (a backend.NotSupportedError: the kernel refused the
	// setsockopt, the conn is not a TCP socket, bytes were buffered).
	Refused uint64 `json:"refused"`
	// Unavailable: an engine ahead in the automatic order could not serve,
	// by its cached probe (the tls module is not loaded, the kernel lacks
	// the suite or KeyUpdate): the commonest reason a host gets userspace
	// rather than kernel. ktls doctor says why for this host.
	Unavailable uint64 `json:"unavailable"`
	// Strict: a forced engine could not serve under KTLS_STRICT=1 or
	// WithStrict, and the handshake (or, for RX after the ticket drain, the
	// first Read) failed; it counts in HandshakeFailures too where it was
	// the handshake.
	Strict uint64 `json:"strict"`
}

// Stats returns a snapshot of the process-wide counters. It is cheap (a
// few hundred atomic loads) and safe to call from any goroutine.
func Stats() Counters {
	s := stats.Read()
	dir := func(d int) DirectionCounters {
		return DirectionCounters{Connections: engines(s.Conns[d]), Bytes: engines(s.Bytes[d])}
	}
	return Counters{
		TX:                 dir(stats.TX),
		RX:                 dir(stats.RX),
		Fallbacks:          FallbackDirections{TX: fallbacks(s.Fallbacks[stats.TX]), RX: fallbacks(s.Fallbacks[stats.RX])},
		HandshakeFailures:  s.HandshakeFailures,
		SendfileBytes:      s.Sendfile,
		SpliceReadBytes:    s.SpliceTo,
		SpliceWriteBytes:   s.SpliceFrom,
		KeyUpdatesSent:     s.KeyUpdatesSent,
		KeyUpdatesReceived: s.KeyUpdatesRecv,
	}
}

func engines(a [stats.NumEngines]uint64) EngineCounters {
	return EngineCounters{
		Kernel:    a[stats.Kernel],
		NIC:       a[stats.NIC],
		AFALG:     a[stats.AFALG],
		Userspace: a[stats.Userspace],
		Stdlib:    a[stats.Stdlib],
	}
}

func fallbacks(a [stats.NumClasses]uint64) FallbackCounters {
	return FallbackCounters{
		FIPS:        a[stats.FIPS],
		Suite:       a[stats.Suite],
		Uncertain:   a[stats.Uncertain],
		Paired:      a[stats.Paired],
		Wrapped:     a[stats.Wrapped],
		Forced:      a[stats.Forced],
		Refused:     a[stats.Refused],
		Unavailable: a[stats.Unavailable],
		Strict:      a[stats.Strict],
	}
}
