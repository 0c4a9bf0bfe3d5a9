package ktlshttp_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/ktls-go/ktls"
	"github.com/ktls-go/ktls/internal/testing/testpki"
	"github.com/ktls-go/ktls/ktlshttp"
)

// blocker is a handler that answers once released, and says when a request
// arrived.
type blocker struct {
	arrived chan struct{}
	release chan struct{}
}

func newBlocker() *blocker {
	return &blocker{arrived: make(chan struct{}, 16), release: make(chan struct{})}
}

func (b *blocker) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/" {
		io.WriteString(w, "ok")
		return
	}
	b.arrived <- struct{}{}
	select {
	case <-b.release:
		io.WriteString(w, "done")
	case <-r.Context().Done():
	}
}

// fetch sends a GET in the background; its result comes on the channel.
func fetch(c *http.Client, url string) <-chan error {
	errc := make(chan error, 1)
	go func() {
		resp, err := c.Get(url)
		if err == nil {
			var body []byte
			body, err = io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil && string(body) != "done" {
				err = errors.New("body " + string(body) + ", want done")
			}
		}
		errc <- err
	}()
	return errc
}

// Shutdown waits for the requests in flight on HTTP/2 connections, as
// net/http's does for its own, and lets them finish; it closes the
// listener at once.
func TestShutdownWaitsForHTTP2(t *testing.T) {
	checkLeaks(t)
	b := newBlocker()
	s := startServer(t, b, nil)
	c, _ := ktlsClient(t, "h2")
	idle, _ := ktlsClient(t, "h2") // an idle HTTP/2 connection, which must not hold Shutdown up
	get(t, idle, s.URL+"/nothing")
	done := fetch(c, s.URL+"/")
	<-b.arrived

	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(context.Background()) }()
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v with a request in flight", err)
	case <-time.After(300 * time.Millisecond):
	}
	if conn, err := net.Dial("tcp", s.URL[len("https://"):]); err == nil {
		conn.Close()
		t.Error("the listener still accepts during Shutdown")
	}
	close(b.release)
	if err := <-done; err != nil {
		t.Errorf("the request in flight: %v", err)
	}
	select {
	case err := <-shut:
		if err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown did not return once the request finished")
	}
}

// Shutdown gives up when its context ends, and Close then ends the
// HTTP/2 connections at once.
func TestShutdownTimeoutThenClose(t *testing.T) {
	checkLeaks(t)
	b := newBlocker()
	s := startServer(t, b, nil)
	c, _ := ktlsClient(t, "h2")
	done := fetch(c, s.URL+"/")
	<-b.arrived
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := s.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown returned %v, want %v", err, context.DeadlineExceeded)
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	select {
	case err := <-done:
		if err == nil {
			t.Error("the request in flight succeeded after Close")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close left the HTTP/2 request in flight hanging")
	}
}

// Close ends HTTP/1.1 and HTTP/2 requests in flight at once.
func TestCloseEndsRequests(t *testing.T) {
	checkLeaks(t)
	b := newBlocker()
	s := startServer(t, b, nil)
	var dones []<-chan error
	for _, p := range protos {
		c, _ := ktlsClient(t, p.alpn)
		dones = append(dones, fetch(c, s.URL+"/"))
		<-b.arrived
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	for i, done := range dones {
		select {
		case err := <-done:
			if err == nil {
				t.Errorf("%s: the request in flight succeeded after Close", protos[i].alpn)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: Close left the request in flight hanging", protos[i].alpn)
		}
	}
	if err := s.Serve(nil); err != http.ErrServerClosed {
		t.Errorf("Serve after Close returned %v, want %v", err, http.ErrServerClosed)
	}
}

// A client that never finishes its handshake neither holds up the others
// nor outlives the handshake timeout, and Shutdown does not wait for it.
func TestHandshakeTimeout(t *testing.T) {
	checkLeaks(t)
	s := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "done")
	}), func(srv *http.Server) { srv.ReadHeaderTimeout = 500 * time.Millisecond })
	addr := s.URL[len("https://"):]
	silent := make([]net.Conn, 2)
	defer func() {
		for _, c := range silent {
			c.Close()
		}
	}()
	for i := range silent {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		silent[i] = c
	}
	start := time.Now()
	// HTTP/1.1: the connection then closes at once on Shutdown, where
	// HTTP/2 takes a second after its GOAWAY (goAwayTimeout, in x/net and in
	// Go 1.27's net/http/internal/http2 alike).
	c, tr := ktlsClient(t, "http/1.1")
	if _, body := get(t, c, s.URL+"/"); body != "done" {
		t.Errorf("got %q", body)
	}
	if d := time.Since(start); d > 400*time.Millisecond {
		t.Errorf("a request took %v while other clients sat in their handshake", d)
	}
	// The first silent client: the server ends it after the timeout.
	silent[0].SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := silent[0].Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("a client silent past the handshake timeout read %v, want EOF", err)
	}
	if d := time.Since(start); d < 400*time.Millisecond {
		t.Errorf("the server gave up on a handshake after %v, before its timeout", d)
	}
	// A second one, mid-handshake when Shutdown comes.
	silent[1].Close()
	var err error
	if silent[1], err = net.Dial("tcp", addr); err != nil {
		t.Fatal(err)
	}
	tr.CloseIdleConnections()
	time.Sleep(50 * time.Millisecond)
	start = time.Now()
	if err := s.Shutdown(context.Background()); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if d := time.Since(start); d > 300*time.Millisecond {
		t.Errorf("Shutdown waited %v for a client in its handshake", d)
	}
	silent[1].SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := silent[1].Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("a client in its handshake during Shutdown read %v, want EOF", err)
	}
}

// ConnContext and ConnState see the *ktls.Conn after its handshake, in the
// order net/http gives them, for both protocols.
func TestConnHooks(t *testing.T) {
	checkLeaks(t)
	var mu sync.Mutex
	states := map[net.Conn][]http.ConnState{}
	var hookErrs []string
	s := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}), func(srv *http.Server) {
		cc := srv.ConnContext
		srv.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
			if kc, ok := c.(*ktls.Conn); !ok || !kc.ConnectionState().HandshakeComplete || kc.Backend().TX == "" {
				mu.Lock()
				hookErrs = append(hookErrs, "ConnContext got a conn before its handshake")
				mu.Unlock()
			}
			return cc(ctx, c)
		}
		srv.ConnState = func(c net.Conn, st http.ConnState) {
			mu.Lock()
			defer mu.Unlock()
			if _, ok := c.(*ktls.Conn); !ok {
				hookErrs = append(hookErrs, "ConnState got a "+st.String()+" conn that is not a *ktls.Conn")
			}
			states[c] = append(states[c], st)
		}
	})
	for _, p := range protos {
		c, tr := ktlsClient(t, p.alpn)
		get(t, c, s.URL+"/")
		tr.CloseIdleConnections()
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		closed := 0
		for _, sts := range states {
			if sts[len(sts)-1] == http.StateClosed {
				closed++
			}
		}
		mu.Unlock()
		if closed == len(protos) || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, e := range hookErrs {
		t.Error(e)
	}
	if len(states) != len(protos) {
		t.Fatalf("ConnState saw %d connections, want %d", len(states), len(protos))
	}
	for c, sts := range states {
		p := c.(*ktls.Conn).ConnectionState().NegotiatedProtocol
		want := []http.ConnState{http.StateNew, http.StateActive, http.StateIdle, http.StateClosed}
		if p == "h2" {
			// The HTTP/2 serve loop goes Active and Idle once on the
			// preface, then again for the request (x/net's
			// http2/server.go on Go 1.26, Go 1.27's
			// net/http/internal/http2/server.go alike).
			want = []http.ConnState{http.StateNew, http.StateActive, http.StateIdle, http.StateActive, http.StateIdle, http.StateClosed}
		}
		if !slices.Equal(sts, want) {
			t.Errorf("%s: ConnState saw %v, want %v", p, sts, want)
		}
	}
}

// Misuse gives errors, not panics.
func TestServerErrors(t *testing.T) {
	checkLeaks(t)
	var s ktlshttp.Server
	if err := s.Serve(nil); err == nil {
		t.Error("Serve without an http.Server succeeded")
	}
	if err := s.Shutdown(context.Background()); err == nil {
		t.Error("Shutdown without an http.Server succeeded")
	}
	if err := s.Close(); err == nil {
		t.Error("Close without an http.Server succeeded")
	}
	s.Server = &http.Server{Addr: "127.0.0.1:0"}
	if err := s.ListenAndServeTLS("/nonexistent/cert.pem", "/nonexistent/key.pem"); err == nil {
		t.Error("ListenAndServeTLS without a certificate succeeded")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := s.ServeTLS(l, "", ""); err == nil {
		t.Error("ServeTLS without a certificate succeeded")
	}
	s.Close()
	if err := s.ListenAndServeTLS("", ""); err != http.ErrServerClosed {
		t.Errorf("ListenAndServeTLS after Close returned %v, want %v", err, http.ErrServerClosed)
	}
	var tr ktlshttp.Transport
	if _, err := tr.RoundTrip(&http.Request{}); err == nil {
		t.Error("the zero Transport sent a request")
	}
}

// A listener that fails on its own ends Serve with its error, and the
// connections it gave go on, as with net/http.
func TestListenerFailure(t *testing.T) {
	checkLeaks(t)
	_, scfg := testpki.Configs(0, 0)
	scfg.NextProtos = []string{"h2", "http/1.1"}
	l, err := ktls.Listen("tcp", "127.0.0.1:0", scfg)
	if err != nil {
		t.Fatal(err)
	}
	s := &ktlshttp.Server{Server: &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Proto)
	})}}
	defer s.Close()
	served := make(chan error, 1)
	go func() { served <- s.Serve(l) }()
	url := "https://" + l.Addr().String() + "/"
	var clients []*http.Client
	for _, p := range protos {
		c, _ := ktlsClient(t, p.alpn)
		get(t, c, url)
		clients = append(clients, c)
	}
	l.Close()
	select {
	case err := <-served:
		if err == nil || err == http.ErrServerClosed {
			t.Errorf("Serve returned %v, want the listener's error", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return when its listener failed")
	}
	for i, c := range clients {
		if _, body := get(t, c, url); body != protos[i].proto {
			t.Errorf("%s after the listener failed: got %q", protos[i].alpn, body)
		}
	}
}

// An http.Server that serves only HTTP/1 offers only "http/1.1".
func TestProtocolsHTTP1Only(t *testing.T) {
	checkLeaks(t)
	h, reqs := recorder(t)
	s := startServer(t, h, func(srv *http.Server) {
		srv.Protocols = new(http.Protocols)
		srv.Protocols.SetHTTP1(true)
	})
	c, _ := ktlsClient(t)
	resp, _ := get(t, c, s.URL+"/")
	wantState(t, "client", resp.TLS, "http/1.1")
	if r := <-reqs; r.proto != "HTTP/1.1" {
		t.Errorf("server saw %s", r.proto)
	}
}

// Serve hands a conn that is not TLS to the http.Server as it is.
func TestServePlain(t *testing.T) {
	checkLeaks(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &ktlshttp.Server{Server: &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS != nil {
			t.Error("a plain request has a TLS state")
		}
		io.WriteString(w, "plain")
	})}}
	served := make(chan error, 1)
	go func() { served <- s.Serve(l) }()
	c, _ := ktlsClient(t)
	if _, body := get(t, c, "http://"+l.Addr().String()+"/"); body != "plain" {
		t.Errorf("got %q", body)
	}
	s.Close()
	if err := <-served; err != http.ErrServerClosed {
		t.Errorf("Serve returned %v, want %v", err, http.ErrServerClosed)
	}
}

// Shutdown sends each HTTP/2 connection a GOAWAY (RFC 9113, section 6.8)
// with no error that names the last stream the server took, lets that
// stream finish, and then ends the connection: seen frame by frame by a
// client on x/net's Framer over stock crypto/tls.
func TestShutdownSendsGOAWAY(t *testing.T) {
	checkLeaks(t)
	b := newBlocker()
	s := startServer(t, b, nil)
	addr := s.URL[len("https://"):]
	ccfg, _ := testpki.Configs(0, 0)
	ccfg.NextProtos = []string{"h2"}
	c, err := tls.Dial("tcp", addr, ccfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if p := c.ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Fatalf("negotiated %q, want h2", p)
	}
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(c, c)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", addr}, {":path", "/"}} {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	// next returns the next frame that is not SETTINGS, PING or
	// WINDOW_UPDATE, answering those as a client must.
	next := func() (http2.Frame, error) {
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				return nil, err
			}
			switch f := f.(type) {
			case *http2.SettingsFrame:
				if !f.IsAck() {
					if err := fr.WriteSettingsAck(); err != nil {
						return nil, err
					}
				}
				continue
			case *http2.PingFrame:
				if !f.IsAck() {
					if err := fr.WritePing(true, f.Data); err != nil {
						return nil, err
					}
				}
				continue
			case *http2.WindowUpdateFrame:
				continue
			}
			return f, nil
		}
	}
	<-b.arrived

	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(context.Background()) }()
	f, err := next()
	if err != nil {
		t.Fatalf("reading the GOAWAY: %v", err)
	}
	ga, ok := f.(*http2.GoAwayFrame)
	if !ok {
		t.Fatalf("got %v, want a GOAWAY", f.Header())
	}
	if ga.ErrCode != http2.ErrCodeNo || ga.LastStreamID != 1 {
		t.Errorf("GOAWAY with %v, last stream %d; want NO_ERROR, last stream 1", ga.ErrCode, ga.LastStreamID)
	}
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v with a stream in flight", err)
	case <-time.After(100 * time.Millisecond):
	}

	// The stream in flight finishes, then the server ends the connection.
	close(b.release)
	var body []byte
	var status string
	for {
		f, err := next()
		if err != nil {
			t.Fatalf("reading the response: %v", err)
		}
		if f.Header().StreamID != 1 {
			t.Fatalf("got %v, want a frame of stream 1", f.Header())
		}
		end := false
		switch f := f.(type) {
		case *http2.MetaHeadersFrame:
			status = f.PseudoValue("status")
			end = f.StreamEnded()
		case *http2.DataFrame:
			body = append(body, f.Data()...)
			end = f.StreamEnded()
		default:
			t.Fatalf("got %v on stream 1", f.Header())
		}
		if end {
			break
		}
	}
	if status != "200" || string(body) != "done" {
		t.Errorf("stream 1 ended with status %s, body %q; want 200, \"done\"", status, body)
	}
	if f, err := next(); err == nil {
		t.Errorf("got %v after the last stream, want the end of the connection", f.Header())
	}
	select {
	case err := <-shut:
		if err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown did not return once the connection ended")
	}
}
