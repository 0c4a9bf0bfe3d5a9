package ktlsgrpc_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"log"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"github.com/ktls-go/ktls"
	"github.com/ktls-go/ktls/ktlsgrpc"
)

// A gRPC server on ktls: the same tls.Config as with credentials.NewTLS.
func ExampleNewTLS() {
	cert, err := tls.LoadX509KeyPair("server.pem", "server.key")
	if err != nil {
		log.Fatal(err)
	}
	s := grpc.NewServer(grpc.Creds(ktlsgrpc.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}})))
	// Register services here.
	lis, err := net.Listen("tcp", ":8443")
	if err != nil {
		log.Fatal(err)
	}
	log.Fatal(s.Serve(lis))
}

// A gRPC client on ktls that trusts the roots in pool.
func ExampleNewClientTLSFromCert() {
	pool, err := x509.SystemCertPool()
	if err != nil {
		log.Fatal(err)
	}
	cc, err := grpc.NewClient("dns:///grpc.example.com:443",
		grpc.WithTransportCredentials(ktlsgrpc.NewClientTLSFromCert(pool, "")))
	if err != nil {
		log.Fatal(err)
	}
	defer cc.Close()
	// Make calls on cc: handlers on the other side see a
	// credentials.TLSInfo, as with grpc-go's credentials.
}

// Which engines each connection got: OnHandshake logs them; a handler ties
// its request to the connection by the peer's address.
func ExampleOnHandshake() {
	creds := ktlsgrpc.NewServerTLSFromCert(&tls.Certificate{}, ktlsgrpc.OnHandshake(func(c *ktls.Conn) {
		b := c.Backend()
		log.Printf("%s: tx=%s rx=%s (%s)", c.RemoteAddr(), b.TX, b.RX, b.Reason)
	}))
	_ = grpc.NewServer(grpc.Creds(creds))
}

// In a handler, the peer's AuthInfo is grpc-go's credentials.TLSInfo, with
// the client's SPIFFE ID under mTLS.
func ExampleNewTLS_peer() {
	handler := func(ctx context.Context) {
		p, ok := peer.FromContext(ctx)
		if !ok {
			return
		}
		if info, ok := p.AuthInfo.(credentials.TLSInfo); ok && info.SPIFFEID != nil {
			log.Printf("call from %s (%s), %s", info.SPIFFEID, p.Addr, tls.VersionName(info.State.Version))
		}
	}
	_ = handler
}
