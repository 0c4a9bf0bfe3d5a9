package ktlshttp_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/ktls-go/ktls"
	"github.com/ktls-go/ktls/internal/testing/testpki"
	"github.com/ktls-go/ktls/ktlshttp"
)

// seen is what a test handler saw of a request.
type seen struct {
	proto string
	tls   *tls.ConnectionState
	conn  *ktls.Conn
}

// recorder is a handler that answers "hello" and records what it saw.
func recorder(t *testing.T) (http.Handler, <-chan seen) {
	ch := make(chan seen, 16)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ch <- seen{proto: r.Proto, tls: r.TLS, conn: connOf(t, r)}
		io.WriteString(w, "hello")
	}), ch
}

var protos = []struct {
	alpn, proto string
}{{"http/1.1", "HTTP/1.1"}, {"h2", "HTTP/2.0"}}

// The ktls server with stock net/http and crypto/tls clients.
func TestServerWithStockClient(t *testing.T) {
	checkLeaks(t)
	h, reqs := recorder(t)
	s := startServer(t, h, nil)
	for _, p := range protos {
		t.Run(p.alpn, func(t *testing.T) {
			resp, body := get(t, stockClient(t, p.alpn), s.URL+"/")
			if body != "hello" || resp.Proto != p.proto {
				t.Errorf("got %s %q, want %s \"hello\"", resp.Proto, body, p.proto)
			}
			wantState(t, "client", resp.TLS, p.alpn)
			r := <-reqs
			if r.proto != p.proto {
				t.Errorf("server saw %s, want %s", r.proto, p.proto)
			}
			wantState(t, "server", r.tls, p.alpn)
			wantEngines(t, r.conn)
		})
	}
}

// A stock net/http server with crypto/tls and the ktls Transport.
func TestTransportWithStockServer(t *testing.T) {
	checkLeaks(t)
	_, scfg := testpki.Configs(0, 0)
	var h1Only atomic.Bool
	scfg.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		if !h1Only.Load() {
			return nil, nil
		}
		c := scfg.Clone()
		c.GetConfigForClient = nil
		c.NextProtos = []string{"http/1.1"}
		return c, nil
	}
	var newConns atomic.Int32
	srv := &http.Server{
		TLSConfig: scfg,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, r.Proto+" "+r.TLS.NegotiatedProtocol)
		}),
		ConnState: func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew {
				newConns.Add(1)
			}
		},
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.ServeTLS(l, "", "") }()
	defer func() {
		srv.Close()
		<-served
	}()
	url := "https://" + l.Addr().String() + "/"

	for _, p := range protos {
		t.Run(p.alpn, func(t *testing.T) {
			c, _ := ktlsClient(t, p.alpn)
			req, _ := http.NewRequest("GET", url, nil)
			req, info := traced(req)
			for i := range 2 {
				resp, err := c.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if want := p.proto + " " + p.alpn; string(body) != want || resp.Proto != p.proto {
					t.Errorf("got %s %q, want %s %q", resp.Proto, body, p.proto, want)
				}
				wantState(t, "client", resp.TLS, p.alpn)
				if i == 1 && !info().Reused {
					t.Error("the second request did not reuse the connection")
				}
			}
			kc, ok := info().Conn.(*ktls.Conn)
			if !ok {
				t.Fatalf("the request went over a %T, want *ktls.Conn", info().Conn)
			}
			wantEngines(t, kc)
		})
	}

	// A server that picks HTTP/1.1 although the Transport offers h2: the
	// connection dialled for HTTP/2 carries the request over HTTP/1.1, no
	// second one is made. Then the server offers h2 again, and the
	// Transport, which now dials for HTTP/1.1 first, moves over and sends
	// the request, body and all, over HTTP/2.
	t.Run("switch", func(t *testing.T) {
		h1Only.Store(true)
		c, tr := ktlsClient(t)
		before := newConns.Load()
		resp, body := get(t, c, url)
		if body != "HTTP/1.1 http/1.1" {
			t.Errorf("got %q from a server that speaks only HTTP/1.1", body)
		}
		wantState(t, "client", resp.TLS, "http/1.1")
		if n := newConns.Load() - before; n != 1 {
			t.Errorf("%d connections for one request, want 1", n)
		}
		tr.CloseIdleConnections()
		h1Only.Store(false)
		resp, err := c.Post(url, "text/plain", strings.NewReader("a body to send again"))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "HTTP/2.0 h2" {
			t.Errorf("got %q after the server turned HTTP/2 on, want HTTP/2.0 h2", b)
		}
		wantState(t, "client", resp.TLS, "h2")
	})
}

// ktls on both ends, with several requests at once on each protocol.
func TestServerWithTransport(t *testing.T) {
	checkLeaks(t)
	s := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		wantState(t, "server", r.TLS, r.TLS.NegotiatedProtocol)
		wantEngines(t, connOf(t, r))
		body, _ := io.ReadAll(r.Body)
		w.Write(bytes.ToUpper(body))
	}), nil)
	for _, p := range protos {
		t.Run(p.alpn, func(t *testing.T) {
			c, _ := ktlsClient(t, p.alpn)
			var wg sync.WaitGroup
			for i := range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					msg := strings.Repeat("abc", 1000*i+1)
					resp, err := c.Post(s.URL+"/", "text/plain", strings.NewReader(msg))
					if err != nil {
						t.Error(err)
						return
					}
					defer resp.Body.Close()
					body, err := io.ReadAll(resp.Body)
					if err != nil || string(body) != strings.ToUpper(msg) || resp.Proto != p.proto {
						t.Errorf("got %s, %d bytes, %v; want %s, %d bytes", resp.Proto, len(body), err, p.proto, len(msg))
					}
					wantState(t, "client", resp.TLS, p.alpn)
				}()
			}
			wg.Wait()
		})
	}
}

// The user's NextProtos win over the defaults on both sides, and neither
// side changes the config it was given.
func TestNextProtosRespected(t *testing.T) {
	checkLeaks(t)
	h, reqs := recorder(t)
	var given *tls.Config
	s := startServer(t, h, func(srv *http.Server) {
		srv.TLSConfig.NextProtos = []string{"http/1.1"}
		given = srv.TLSConfig
	})
	resp, _ := get(t, stockClient(t, "http/1.1"), s.URL+"/")
	wantState(t, "client", resp.TLS, "http/1.1")
	<-reqs
	// A client that would take h2 still gets HTTP/1.1.
	c, _ := ktlsClient(t)
	resp, _ = get(t, c, s.URL+"/")
	wantState(t, "client", resp.TLS, "http/1.1")
	<-reqs
	if len(given.NextProtos) != 1 {
		t.Errorf("the server's TLSConfig.NextProtos became %q", given.NextProtos)
	}

	ccfg, _ := testpki.Configs(0, 0)
	tr := ktlshttp.NewTransport(ccfg)
	defer tr.CloseIdleConnections()
	if ccfg.NextProtos != nil {
		t.Errorf("NewTransport set the caller's NextProtos to %q", ccfg.NextProtos)
	}
}

// Serve takes a ktls listener as it is; its config decides the protocols.
func TestServeKTLSListener(t *testing.T) {
	checkLeaks(t)
	_, scfg := testpki.Configs(0, 0)
	scfg.NextProtos = []string{"h2", "http/1.1"}
	l, err := ktls.Listen("tcp", "127.0.0.1:0", scfg)
	if err != nil {
		t.Fatal(err)
	}
	testServeListener(t, l, true)
}

// Serve takes a crypto/tls listener too.
func TestServeTLSListener(t *testing.T) {
	checkLeaks(t)
	_, scfg := testpki.Configs(0, 0)
	scfg.NextProtos = []string{"h2", "http/1.1"}
	l, err := tls.Listen("tcp", "127.0.0.1:0", scfg)
	if err != nil {
		t.Fatal(err)
	}
	testServeListener(t, l, false)
}

func testServeListener(t *testing.T, l net.Listener, isKTLS bool) {
	ch := make(chan seen, 4)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		kc, _ := r.Context().Value(connKey{}).(*ktls.Conn)
		ch <- seen{proto: r.Proto, tls: r.TLS, conn: kc}
	})
	var reqs <-chan seen = ch
	s := &ktlshttp.Server{Server: &http.Server{Handler: h,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, connKey{}, c)
		}}}
	served := make(chan error, 1)
	go func() { served <- s.Serve(l) }()
	for _, p := range protos {
		c, _ := ktlsClient(t, p.alpn)
		resp, _ := get(t, c, "https://"+l.Addr().String()+"/")
		wantState(t, "client", resp.TLS, p.alpn)
		r := <-reqs
		wantState(t, "server", r.tls, p.alpn)
		if isKTLS {
			wantEngines(t, r.conn)
		} else if r.conn != nil {
			t.Errorf("a crypto/tls listener gave a %T", r.conn)
		}
	}
	s.Close()
	if err := <-served; err != http.ErrServerClosed {
		t.Errorf("Serve returned %v, want %v", err, http.ErrServerClosed)
	}
}
