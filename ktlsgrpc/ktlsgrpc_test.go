package ktlsgrpc

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/ktls-go/ktls"
	"github.com/ktls-go/ktls/selector"
)

// inVM reports whether the test runs in a guest of the repository's VM
// harness, which sets KTLS_VMTEST=1 for every test binary after checking that
// the kernel has kTLS (internal/testing/testenv's EnvVar and InVM; a nested
// module may not import the root module's internal packages, hence this
// copy of the rule).
func inVM() bool { return os.Getenv("KTLS_VMTEST") == "1" }

// testService is grpc-go's interop TestService, enough of it for unary,
// server-streaming and bidirectional calls. Each response's body is the
// SHA-256 of the request's body followed by the requested number of bytes of
// a pattern, so the client checks both directions' bytes. Every call records
// the peer gRPC gives the handler.
type testService struct {
	testpb.UnimplementedTestServiceServer
	mu    sync.Mutex
	peers []*peer.Peer
}

func (s *testService) record(ctx context.Context) error {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return status.Error(codes.Internal, "no peer in the handler's context")
	}
	s.mu.Lock()
	s.peers = append(s.peers, p)
	s.mu.Unlock()
	return nil
}

func (s *testService) seen() []*peer.Peer {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.peers)
}

func reply(req []byte, size int32) []byte {
	h := sha256.Sum256(req)
	return append(h[:], pattern(int(size), h[0])...)
}

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7) ^ seed
	}
	return b
}

func (s *testService) UnaryCall(ctx context.Context, req *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	if err := s.record(ctx); err != nil {
		return nil, err
	}
	return &testpb.SimpleResponse{Payload: &testpb.Payload{Body: reply(req.GetPayload().GetBody(), req.GetResponseSize())}}, nil
}

func (s *testService) StreamingOutputCall(req *testpb.StreamingOutputCallRequest, stream grpc.ServerStreamingServer[testpb.StreamingOutputCallResponse]) error {
	if err := s.record(stream.Context()); err != nil {
		return err
	}
	for _, p := range req.GetResponseParameters() {
		if err := stream.Send(&testpb.StreamingOutputCallResponse{Payload: &testpb.Payload{Body: reply(req.GetPayload().GetBody(), p.GetSize())}}); err != nil {
			return err
		}
	}
	return nil
}

func (s *testService) FullDuplexCall(stream grpc.BidiStreamingServer[testpb.StreamingOutputCallRequest, testpb.StreamingOutputCallResponse]) error {
	if err := s.record(stream.Context()); err != nil {
		return err
	}
	for {
		req, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		var size int32
		if ps := req.GetResponseParameters(); len(ps) > 0 {
			size = ps[0].GetSize()
		}
		if err := stream.Send(&testpb.StreamingOutputCallResponse{Payload: &testpb.Payload{Body: reply(req.GetPayload().GetBody(), size)}}); err != nil {
			return err
		}
	}
}

// serve starts a gRPC server with creds on a loopback port and returns its
// address; the server stops when the test ends.
func serve(t *testing.T, creds credentials.TransportCredentials) (string, *testService) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	svc := &testService{}
	s := grpc.NewServer(grpc.Creds(creds))
	testpb.RegisterTestServiceServer(s, svc)
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Serve(lis)
	}()
	t.Cleanup(func() {
		s.Stop()
		<-done
	})
	return lis.Addr().String(), svc
}

func dial(t *testing.T, target string, creds credentials.TransportCredentials) testpb.TestServiceClient {
	t.Helper()
	cc, err := grpc.NewClient(target, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return testpb.NewTestServiceClient(cc)
}

// conns collects what OnHandshake hands over.
type conns struct {
	mu sync.Mutex
	cs []*ktls.Conn
}

func (r *conns) add(c *ktls.Conn) {
	r.mu.Lock()
	r.cs = append(r.cs, c)
	r.mu.Unlock()
}

func (r *conns) all() []*ktls.Conn {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.cs)
}

// rpcs runs a unary, a server-streaming and a bidirectional call, checking
// every byte, and returns the peer the client saw on the unary call.
func rpcs(t *testing.T, c testpb.TestServiceClient) *peer.Peer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	check := func(what string, req, got []byte, size int32) {
		t.Helper()
		if want := reply(req, size); !bytes.Equal(got, want) {
			t.Fatalf("%s: got %d bytes, want %d (or other bytes)", what, len(got), len(want))
		}
	}

	var p peer.Peer
	req := pattern(1<<10, 1)
	resp, err := c.UnaryCall(ctx, &testpb.SimpleRequest{ResponseSize: 64 << 10, Payload: &testpb.Payload{Body: req}}, grpc.Peer(&p))
	if err != nil {
		t.Fatalf("UnaryCall: %v", err)
	}
	check("UnaryCall", req, resp.GetPayload().GetBody(), 64<<10)

	sizes := []int32{1, 16 << 10, 100 << 10}
	sreq := &testpb.StreamingOutputCallRequest{Payload: &testpb.Payload{Body: pattern(300, 2)}}
	for _, n := range sizes {
		sreq.ResponseParameters = append(sreq.ResponseParameters, &testpb.ResponseParameters{Size: n})
	}
	out, err := c.StreamingOutputCall(ctx, sreq)
	if err != nil {
		t.Fatalf("StreamingOutputCall: %v", err)
	}
	for i, n := range sizes {
		r, err := out.Recv()
		if err != nil {
			t.Fatalf("StreamingOutputCall: response %d: %v", i, err)
		}
		check(fmt.Sprintf("StreamingOutputCall response %d", i), sreq.Payload.Body, r.GetPayload().GetBody(), n)
	}
	if _, err := out.Recv(); err != io.EOF {
		t.Fatalf("StreamingOutputCall: after the last response: %v, want io.EOF", err)
	}

	duplex, err := c.FullDuplexCall(ctx)
	if err != nil {
		t.Fatalf("FullDuplexCall: %v", err)
	}
	for i, n := range []int32{10, 40 << 10, 0, 200 << 10} {
		body := pattern(int(n)/2+1, byte(i+3))
		if err := duplex.Send(&testpb.StreamingOutputCallRequest{
			ResponseParameters: []*testpb.ResponseParameters{{Size: n}},
			Payload:            &testpb.Payload{Body: body},
		}); err != nil {
			t.Fatalf("FullDuplexCall: send %d: %v", i, err)
		}
		r, err := duplex.Recv()
		if err != nil {
			t.Fatalf("FullDuplexCall: receive %d: %v", i, err)
		}
		check(fmt.Sprintf("FullDuplexCall message %d", i), body, r.GetPayload().GetBody(), n)
	}
	if err := duplex.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := duplex.Recv(); err != io.EOF {
		t.Fatalf("FullDuplexCall: after CloseSend: %v, want io.EOF", err)
	}
	return &p
}

// checkAuthInfo checks the AuthInfo a side's gRPC got: exactly
// credentials.TLSInfo, with the version, h2, the security level and the
// peer's SPIFFE ID.
func checkAuthInfo(t *testing.T, who string, p *peer.Peer, version uint16, wantID string) {
	t.Helper()
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		t.Fatalf("%s: AuthInfo is %T, want credentials.TLSInfo", who, p.AuthInfo)
	}
	if info.State.Version != version || !info.State.HandshakeComplete || info.State.NegotiatedProtocol != "h2" {
		t.Errorf("%s: version %#x, handshake complete %v, ALPN %q; want %#x, true, h2", who, info.State.Version, info.State.HandshakeComplete, info.State.NegotiatedProtocol, version)
	}
	if info.SecurityLevel != credentials.PrivacyAndIntegrity {
		t.Errorf("%s: security level %v, want PrivacyAndIntegrity", who, info.SecurityLevel)
	}
	if info.SPIFFEID == nil || info.SPIFFEID.String() != wantID {
		t.Errorf("%s: SPIFFE ID %v, want %s", who, info.SPIFFEID, wantID)
	}
	if info.AuthType() != "tls" {
		t.Errorf("%s: AuthType %q", who, info.AuthType())
	}
}

// checkEngines checks that each direction of c got the engine ktls's own
// selector puts first for its version and suite (ktls.Candidates, the code
// that makes the choice); and, in the VM harness's guests with the automatic
// choice, that this is the kernel, which the harness has checked is there.
func checkEngines(t *testing.T, who string, c *ktls.Conn) {
	t.Helper()
	st := c.ConnectionState()
	b := c.Backend()
	for _, d := range []struct {
		dir selector.Direction
		got string
	}{{selector.TX, b.TX}, {selector.RX, b.RX}} {
		cands, err := ktls.Candidates(st.Version, st.CipherSuite, d.dir)
		if err != nil {
			t.Fatalf("%s: ktls.Candidates: %v", who, err)
		}
		want := cands[0].Name
		if inVM() && (os.Getenv("KTLS_BACKEND") == "" || os.Getenv("KTLS_BACKEND") == "auto") {
			want = "kernel"
		}
		if d.got != want {
			t.Errorf("%s: %v engine %q, want %q (%s; %s)", who, d.dir, d.got, want, tls.CipherSuiteName(st.CipherSuite), b.Reason)
		}
	}
	t.Logf("%s: %s, %s", who, tls.CipherSuiteName(st.CipherSuite), b.Reason)
}

// TestAgainstGRPCTLS runs gRPC calls over these credentials with grpc-go's
// own TLS credentials on the other side, in both roles, and with these on
// both sides, under mTLS, in TLS 1.3 and 1.2.
func TestAgainstGRPCTLS(t *testing.T) {
	pki := newPKI(t)
	for _, version := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
		for _, roles := range []struct{ serverKTLS, clientKTLS bool }{{true, false}, {false, true}, {true, true}} {
			name := fmt.Sprintf("%s/server=%s/client=%s", tls.VersionName(version), impl(roles.serverKTLS), impl(roles.clientKTLS))
			t.Run(name, func(t *testing.T) {
				var serverConns, clientConns conns
				// Registered first, so it runs last: once the client
				// and the server are closed, so are the conns they had.
				t.Cleanup(func() {
					checkClosed(t, append(serverConns.all(), clientConns.all()...))
				})
				scfg := pki.serverConfig()
				scfg.MaxVersion = version
				var sc credentials.TransportCredentials = credentials.NewTLS(scfg)
				if roles.serverKTLS {
					sc = NewTLS(scfg, OnHandshake(serverConns.add))
				}
				ccfg := pki.clientConfig()
				ccfg.MaxVersion = version
				var cc credentials.TransportCredentials = credentials.NewTLS(ccfg)
				if roles.clientKTLS {
					cc = NewTLS(ccfg, OnHandshake(clientConns.add))
				}
				addr, svc := serve(t, sc)
				clientPeer := rpcs(t, dial(t, addr, cc))

				checkAuthInfo(t, "client", clientPeer, version, pki.serverID.String())
				seen := svc.seen()
				if len(seen) != 3 {
					t.Fatalf("the server saw %d calls, want 3", len(seen))
				}
				for _, p := range seen {
					checkAuthInfo(t, "server", p, version, pki.clientID.String())
					if p.Addr.String() != seen[0].Addr.String() {
						t.Errorf("calls came from %v and %v, want one connection", p.Addr, seen[0].Addr)
					}
				}
				if roles.serverKTLS {
					cs := serverConns.all()
					if len(cs) != 1 {
						t.Fatalf("OnHandshake saw %d server connections, want 1", len(cs))
					}
					// What the package documentation promises: the conn's
					// RemoteAddr is the handler's peer address.
					if got := cs[0].RemoteAddr().String(); got != seen[0].Addr.String() {
						t.Errorf("OnHandshake's conn comes from %s, the handler's peer from %s", got, seen[0].Addr)
					}
					checkEngines(t, "server", cs[0])
				}
				if roles.clientKTLS {
					cs := clientConns.all()
					if len(cs) != 1 {
						t.Fatalf("OnHandshake saw %d client connections, want 1", len(cs))
					}
					if got := cs[0].RemoteAddr().String(); got != clientPeer.Addr.String() {
						t.Errorf("OnHandshake's conn goes to %s, the call's peer is %s", got, clientPeer.Addr)
					}
					checkEngines(t, "client", cs[0])
				}
			})
		}
	}
}

func impl(k bool) string {
	if k {
		return "ktls"
	}
	return "grpc"
}

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := lis.Accept()
		accepted <- c
	}()
	client, err = net.Dial("tcp", lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	// No handshake here may hang the test.
	client.SetDeadline(time.Now().Add(time.Minute))
	server.SetDeadline(time.Now().Add(time.Minute))
	t.Cleanup(func() {
		client.Close()
		server.Close()
	})
	return client, server
}

// both returns grpc-go's credentials and these for the same configuration,
// for checks that must give the same answer.
func both(cfg *tls.Config) map[string]credentials.TransportCredentials {
	return map[string]credentials.TransportCredentials{"grpc": credentials.NewTLS(cfg), "ktls": NewTLS(cfg)}
}

// TestALPNEnforced checks that a peer without ALPN is refused on both sides
// with grpc-go's own error, and a peer that offers no h2 is refused by the
// handshake, as grpc-go's credentials refuse them.
func TestALPNEnforced(t *testing.T) {
	pki := newPKI(t)
	errs := map[string][]string{}
	for name, creds := range both(pki.serverConfig()) {
		// A crypto/tls client without NextProtos: the handshake succeeds,
		// and the server's credentials refuse the connection after it.
		cfg := pki.clientConfig()
		cfg.ServerName = "localhost"
		rawC, rawS := tcpPair(t)
		client := tls.Client(rawC, cfg)
		go client.Handshake()
		_, _, err := creds.ServerHandshake(rawS)
		if err == nil {
			t.Fatalf("%s: ServerHandshake accepted a client without ALPN", name)
		}
		errs[name] = append(errs[name], err.Error())
		// The refused conn is closed: the client reads EOF or a reset.
		client.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := client.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("%s: the refused client's read: %v, want the connection closed", name, err)
		}

		// A client that offers only http/1.1: crypto/tls's server treats
		// it as one without ALPN (its negotiateALPN lets http/1.1 clients
		// reach h2 servers so), and the credentials refuse it after the
		// handshake.
		cfg.NextProtos = []string{"http/1.1"}
		rawC, rawS = tcpPair(t)
		go tls.Client(rawC, cfg).Handshake()
		_, _, err = creds.ServerHandshake(rawS)
		if err == nil {
			t.Fatalf("%s: ServerHandshake accepted a client offering http/1.1 only", name)
		}
		errs[name] = append(errs[name], err.Error())

		// A client that offers only another protocol: crypto/tls's
		// server refuses it in the handshake (no_application_protocol,
		// RFC 7301 section 3.2), since the credentials' NextProtos is h2.
		cfg.NextProtos = []string{"foo"}
		rawC, rawS = tcpPair(t)
		go tls.Client(rawC, cfg).Handshake()
		_, _, err = creds.ServerHandshake(rawS)
		if err == nil {
			t.Fatalf("%s: ServerHandshake accepted a client offering foo only", name)
		}
		errs[name] = append(errs[name], err.Error())
	}
	for name, creds := range both(pki.clientConfig()) {
		// A crypto/tls server without NextProtos: the client's credentials
		// refuse it after the handshake.
		rawC, rawS := tcpPair(t)
		server := tls.Server(rawS, pki.serverConfig())
		go server.Handshake()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		_, _, err := creds.ClientHandshake(ctx, "localhost:443", rawC)
		cancel()
		if err == nil {
			t.Fatalf("%s: ClientHandshake accepted a server without ALPN", name)
		}
		errs[name] = append(errs[name], err.Error())
	}
	if !slices.Equal(errs["grpc"], errs["ktls"]) {
		t.Errorf("the refusals differ:\ngrpc: %q\nktls: %q", errs["grpc"], errs["ktls"])
	}
	t.Logf("refusals: %q", errs["ktls"])
}

// TestALPNNotEnforced checks GRPC_ENFORCE_ALPN_ENABLED=false's effect (the
// variable grpc-go reads once at start, so the test sets what it set).
func TestALPNNotEnforced(t *testing.T) {
	defer func(old bool) { enforceALPN = old }(enforceALPN)
	enforceALPN = false
	pki := newPKI(t)

	cfg := pki.clientConfig()
	cfg.ServerName = "localhost"
	rawC, rawS := tcpPair(t)
	client := tls.Client(rawC, cfg)
	go client.Handshake()
	conn, info, err := NewTLS(pki.serverConfig()).ServerHandshake(rawS)
	if err != nil {
		t.Fatalf("ServerHandshake with ALPN not enforced: %v", err)
	}
	defer conn.Close()
	if p := info.(credentials.TLSInfo).State.NegotiatedProtocol; p != "" {
		t.Errorf("negotiated %q", p)
	}

	rawC, rawS = tcpPair(t)
	server := tls.Server(rawS, pki.serverConfig())
	go server.Handshake()
	conn, _, err = NewTLS(pki.clientConfig()).ClientHandshake(context.Background(), "localhost", rawC)
	if err != nil {
		t.Fatalf("ClientHandshake with ALPN not enforced: %v", err)
	}
	conn.Close()
}

// TestDefaults checks grpc-go's configuration defaults, in the configuration
// and in what a peer can negotiate, beside grpc-go's credentials.
func TestDefaults(t *testing.T) {
	protos := make([]string, 1, 4)
	protos[0] = "foo"
	in := &tls.Config{NextProtos: protos}
	got := applyDefaults(in)
	if !slices.Equal(got.NextProtos, []string{"foo", "h2"}) || got.MinVersion != tls.VersionTLS12 {
		t.Errorf("NextProtos %q, MinVersion %#x; want [foo h2], TLS 1.2", got.NextProtos, got.MinVersion)
	}
	if len(in.NextProtos) != 1 || protos[:2][1] != "" || in.MinVersion != 0 || in.CipherSuites != nil {
		t.Errorf("applyDefaults changed the caller's config: %q %q", in.NextProtos, protos[:2])
	}
	for _, cs := range got.CipherSuites {
		if tls12ForbiddenCipherSuites[cs] {
			t.Errorf("default suites include %s, which RFC 7540 appendix A forbids", tls.CipherSuiteName(cs))
		}
	}
	var want []uint16
	for _, cs := range tls.CipherSuites() {
		if !tls12ForbiddenCipherSuites[cs.ID] {
			want = append(want, cs.ID)
		}
	}
	if len(want) == 0 || !slices.Equal(got.CipherSuites, want) {
		t.Errorf("default suites %v, want crypto/tls's secure suites minus RFC 7540's forbidden ones, %v", got.CipherSuites, want)
	}
	if c := applyDefaults(&tls.Config{NextProtos: []string{"h2"}, MaxVersion: tls.VersionTLS11, CipherSuites: []uint16{}}); c.MinVersion != 0 || len(c.NextProtos) != 1 || c.CipherSuites == nil {
		t.Errorf("applyDefaults overrode explicit choices: %+v", c)
	}

	// GetConfigForClient's configs get the defaults too: the server's
	// per-client config lacks h2, and a client offering only h2 still
	// connects.
	pki := newPKI(t)
	scfg := &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
		return &tls.Config{Certificates: []tls.Certificate{pki.server}}, nil
	}}
	addr, _ := serve(t, NewTLS(scfg))
	rpcs(t, dial(t, addr, NewClientTLSFromCert(pki.pool, "")))

	// What a peer can negotiate: TLS 1.1, or only a suite RFC 7540 forbids,
	// is refused by both credentials.
	for name, creds := range both(pki.serverConfig()) {
		for _, cfg := range []*tls.Config{
			{MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11, NextProtos: []string{"h2"}},
			{MaxVersion: tls.VersionTLS12, NextProtos: []string{"h2"}, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}},
		} {
			cfg.RootCAs, cfg.ServerName, cfg.Certificates = pki.pool, "localhost", []tls.Certificate{pki.client}
			rawC, rawS := tcpPair(t)
			go tls.Client(rawC, cfg).Handshake()
			if _, _, err := creds.ServerHandshake(rawS); err == nil {
				t.Errorf("%s: a client with max version %#x and suites %v connected", name, cfg.MaxVersion, cfg.CipherSuites)
			}
		}
	}
}

// TestClientHandshakeContext checks that the client's handshake ends when
// its context does, with the context's error, as grpc-go's.
func TestClientHandshakeContext(t *testing.T) {
	pki := newPKI(t)
	for name, creds := range both(pki.clientConfig()) {
		// A server that accepts the TCP connection and never answers.
		rawC, _ := tcpPair(t)
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		start := time.Now()
		_, _, err := creds.ClientHandshake(ctx, "localhost", rawC)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s: ClientHandshake past its deadline: %v, want context.DeadlineExceeded", name, err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%s: ClientHandshake took %v past a 200ms deadline", name, d)
		}

		rawC, _ = tcpPair(t)
		ctx, cancel = context.WithCancel(context.Background())
		time.AfterFunc(100*time.Millisecond, cancel)
		if _, _, err := creds.ClientHandshake(ctx, "localhost", rawC); !errors.Is(err, context.Canceled) {
			t.Errorf("%s: ClientHandshake cancelled: %v, want context.Canceled", name, err)
		}
	}
}

// TestSyscallConn checks the syscall.Conn passthrough that channelz uses: the
// conns returned reach the raw socket's descriptor, and carry the data
// through ktls; over a conn without SyscallConn, the conn is ktls's own.
func TestSyscallConn(t *testing.T) {
	pki := newPKI(t)
	rawC, rawS := tcpPair(t)
	type result struct {
		conn net.Conn
		err  error
	}
	res := make(chan result, 1)
	go func() {
		c, _, err := NewTLS(pki.serverConfig()).ServerHandshake(rawS)
		res <- result{c, err}
	}()
	client, _, err := NewTLS(pki.clientConfig()).ClientHandshake(context.Background(), "localhost", rawC)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	r := <-res
	if r.err != nil {
		t.Fatal(r.err)
	}
	server := r.conn
	defer server.Close()
	for _, c := range []struct {
		got, raw net.Conn
	}{{client, rawC}, {server, rawS}} {
		if fd, want := fdOf(t, c.got), fdOf(t, c.raw); fd != want {
			t.Errorf("SyscallConn reaches descriptor %d, the socket is %d", fd, want)
		}
	}
	msg := []byte("through ktls")
	go client.Write(msg)
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(server, buf); err != nil || !bytes.Equal(buf, msg) {
		t.Fatalf("read %q, %v", buf, err)
	}

	// net.Pipe has no SyscallConn: the conn is the *ktls.Conn, as grpc-go
	// returns its *tls.Conn.
	p1, p2 := net.Pipe()
	defer p1.Close()
	defer p2.Close()
	go tls.Server(p2, withH2(pki.serverConfig())).Handshake()
	conn, _, err := NewTLS(pki.clientConfig()).ClientHandshake(context.Background(), "localhost", p1)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := conn.(*ktls.Conn); !ok {
		t.Errorf("over net.Pipe the conn is %T, want *ktls.Conn", conn)
	}
}

func withH2(c *tls.Config) *tls.Config {
	c.NextProtos = []string{"h2"}
	return c
}

// TestCloneAndOverride checks Clone, OverrideServerName and Info beside
// grpc-go's, and that an overridden name is the one verified and sent.
func TestCloneAndOverride(t *testing.T) {
	pki := newPKI(t)
	for name, creds := range both(pki.clientConfig()) {
		clone := creds.Clone()
		if err := clone.OverrideServerName(overrideName); err != nil {
			t.Fatal(err)
		}
		if got := creds.Info(); got.ServerName != "" || got.SecurityProtocol != "tls" || got.SecurityVersion != "1.2" {
			t.Errorf("%s: the original's Info after the clone's override: %+v", name, got)
		}
		if got := clone.Info().ServerName; got != overrideName {
			t.Errorf("%s: the clone's ServerName %q, want %q", name, got, overrideName)
		}
	}

	// End to end: the client dials 127.0.0.1 with the name overridden; the
	// server sees it as SNI, and the certificate is verified for it. The
	// clone keeps OnHandshake.
	var sni []string
	var mu sync.Mutex
	scfg := pki.serverConfig()
	scfg.GetConfigForClient = func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		mu.Lock()
		sni = append(sni, h.ServerName)
		mu.Unlock()
		return nil, nil
	}
	addr, _ := serve(t, NewTLS(scfg))
	var clientConns conns
	creds := NewTLS(pki.clientConfig(), OnHandshake(clientConns.add)).Clone()
	if err := creds.OverrideServerName(overrideName); err != nil {
		t.Fatal(err)
	}
	rpcs(t, dial(t, addr, creds))
	mu.Lock()
	if !slices.Equal(sni, []string{overrideName}) {
		t.Errorf("the server saw SNI %q, want [%s]", sni, overrideName)
	}
	mu.Unlock()
	if len(clientConns.all()) != 1 {
		t.Errorf("the clone's OnHandshake saw %d connections, want 1", len(clientConns.all()))
	}

	// A name the certificate does not have fails the call.
	creds = NewClientTLSFromCert(pki.pool, "wrong.example")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := dial(t, addr, creds).UnaryCall(ctx, &testpb.SimpleRequest{})
	if status.Code(err) != codes.Unavailable {
		t.Errorf("a call to a server whose certificate lacks the overridden name: %v, want Unavailable", err)
	}
}

// TestFromFile checks the file constructors against the same PEM files.
func TestFromFile(t *testing.T) {
	pki := newPKI(t)
	dir := t.TempDir()
	caFile, certFile, keyFile := dir+"/ca.pem", dir+"/cert.pem", dir+"/key.pem"
	writePEM(t, caFile, certFile, keyFile, pki)

	sc, err := NewServerTLSFromFile(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	cc, err := NewClientTLSFromFile(caFile, "")
	if err != nil {
		t.Fatal(err)
	}
	addr, _ := serve(t, sc)
	rpcs(t, dial(t, addr, cc))

	if _, err := NewClientTLSFromFile(keyFile, ""); err == nil || err.Error() != "credentials: failed to append certificates" {
		t.Errorf("roots from a key file: %v", err)
	}
	if _, err := NewServerTLSFromFile(dir+"/missing.pem", keyFile); err == nil {
		t.Error("a missing certificate file gave no error")
	}
}

// TestSPIFFEID checks grpc-go's rules for the SPIFFE ID
// (internal/credentials/spiffe.go).
func TestSPIFFEID(t *testing.T) {
	for _, tc := range []struct {
		uris []string
		want string
	}{
		{[]string{"spiffe://example.org/a/b"}, "spiffe://example.org/a/b"},
		{[]string{"https://example.org/a"}, ""},
		{[]string{"spiffe://example.org"}, ""},
		{[]string{"spiffe:///a"}, ""},
		{[]string{"spiffe://user@example.org/a"}, ""},
		{[]string{"spiffe://example.org/a", "https://example.org/b"}, ""},
		{nil, ""},
	} {
		cert := &x509.Certificate{}
		for _, u := range tc.uris {
			cert.URIs = append(cert.URIs, mustURL(t, u))
		}
		got := spiffeIDFromCert(cert)
		if (got == nil) != (tc.want == "") || (got != nil && got.String() != tc.want) {
			t.Errorf("%q: %v, want %q", tc.uris, got, tc.want)
		}
	}
}

// fdOf returns the descriptor that c's SyscallConn reaches; c must be a
// syscall.Conn.
func fdOf(t *testing.T, c net.Conn) uintptr {
	t.Helper()
	sc, ok := c.(syscall.Conn)
	if !ok {
		t.Fatalf("%T is not a syscall.Conn", c)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var fd uintptr
	if err := rc.Control(func(f uintptr) { fd = f }); err != nil {
		t.Fatal(err)
	}
	return fd
}

// writePEM writes the CA's certificate, and the server's certificate and key.
func writePEM(t *testing.T, caFile, certFile, keyFile string, pki *testPKI) {
	t.Helper()
	// The CA is the root of the server certificate's verified chain.
	leaf, err := x509.ParseCertificate(pki.server.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	chains, err := leaf.Verify(x509.VerifyOptions{Roots: pki.pool, DNSName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: chains[0][len(chains[0])-1].Raw})
	key, err := x509.MarshalPKCS8PrivateKey(pki.server.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{
		caFile:   ca,
		certFile: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: pki.server.Certificate[0]}),
		keyFile:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key}),
	} {
		if err := os.WriteFile(name, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// checkClosed checks that gRPC closed every conn the credentials gave it:
// their sockets refuse a deadline with net.ErrClosed. A client's transport
// closes its conn in its own goroutine, so this waits a little.
func checkClosed(t *testing.T, cs []*ktls.Conn) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for _, c := range cs {
		for {
			err := c.SetReadDeadline(time.Now())
			if errors.Is(err, net.ErrClosed) {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("the conn to %s is still open after gRPC closed (SetReadDeadline: %v)", c.RemoteAddr(), err)
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}
