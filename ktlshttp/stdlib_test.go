package ktlshttp_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"testing"

	"github.com/ktls-go/ktls"
	"github.com/ktls-go/ktls/internal/testing/testpki"
)

// Plain net/http over ktls, without this package: an http.Server serving
// ktls.NewListener and an http.Transport dialling with ktls.Dialer. On Go
// 1.27 both speak HTTP/2 over the *ktls.Conn and fill in Request.TLS and
// Response.TLS; on Go 1.26 they speak HTTP/1.1 only, the server's
// Request.TLS is read before the handshake and the client's Response.TLS is
// nil, which is what this package is for there (stdlibServesKTLS, per
// version).
func TestStdlibOverKTLS(t *testing.T) {
	checkLeaks(t)
	ccfg, scfg := testpki.Configs(0, 0)
	scfg.NextProtos = []string{"h2", "http/1.1"}
	ccfg.NextProtos = []string{"h2", "http/1.1"}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	reqs := make(chan seen, 1)
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c, _ := r.Context().Value(connKey{}).(*ktls.Conn)
			reqs <- seen{proto: r.Proto, tls: r.TLS, conn: c}
			io.WriteString(w, "hello")
		}),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, connKey{}, c)
		},
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ktls.NewListener(l, scfg)) }()
	defer func() {
		srv.Close()
		if err := <-served; err != http.ErrServerClosed {
			t.Errorf("Serve returned %v, want %v", err, http.ErrServerClosed)
		}
	}()

	d := &ktls.Dialer{Config: ccfg}
	tr := &http.Transport{DialTLSContext: d.DialContext, ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequest("GET", "https://"+l.Addr().String()+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	req, info := traced(req)
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || string(body) != "hello" {
		t.Fatalf("got %q, %v", body, err)
	}
	r := <-reqs
	kc, ok := info().Conn.(*ktls.Conn)
	if !ok {
		t.Fatalf("the request went over a %T, want *ktls.Conn", info().Conn)
	}
	if !stdlibServesKTLS {
		if resp.Proto != "HTTP/1.1" || r.proto != "HTTP/1.1" {
			t.Errorf("client %s, server %s; Go 1.26's net/http speaks only HTTP/1.1 over a *ktls.Conn", resp.Proto, r.proto)
		}
		if resp.TLS != nil {
			t.Errorf("Go 1.26's http.Transport filled in Response.TLS for a *ktls.Conn: %+v", resp.TLS)
		}
		if r.tls == nil || r.tls.HandshakeComplete {
			t.Errorf("Go 1.26's http.Server gave Request.TLS %+v, want the state before the handshake", r.tls)
		}
		return
	}
	if resp.Proto != "HTTP/2.0" || r.proto != "HTTP/2.0" {
		t.Errorf("client %s, server %s; want HTTP/2.0 on both", resp.Proto, r.proto)
	}
	wantState(t, "client", resp.TLS, "h2")
	wantState(t, "server", r.tls, "h2")
	wantEngines(t, kc)
	wantEngines(t, r.conn)
}
