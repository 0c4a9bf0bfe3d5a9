package proxy_test

import (
	"context"
	"crypto/tls"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/ktls-go/ktls/proxy"
)

// A TLS terminator in front of a local service: certificates read again on
// SIGHUP, a graceful stop of up to 30 seconds on SIGTERM.
func Example() {
	kp, err := proxy.LoadKeyPair("site.pem", "site.key")
	if err != nil {
		log.Fatal(err)
	}
	p := &proxy.Proxy{HandshakeTimeout: 10 * time.Second, IdleTimeout: 5 * time.Minute}
	ln, err := proxy.Listen(":443")
	if err != nil {
		log.Fatal(err)
	}
	go func() {
		err := p.Serve(ln, &proxy.Listener{
			TLSConfig: &tls.Config{GetCertificate: kp.GetCertificate},
			Backend:   "127.0.0.1:8080",
			Backends:  map[string]string{"api.example": "unix:/run/api.sock"},
		})
		if err != proxy.ErrServerClosed {
			log.Fatal(err)
		}
	}()

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGHUP, syscall.SIGTERM)
	for s := range sig {
		if s == syscall.SIGHUP {
			if err := kp.Reload(); err != nil {
				log.Print(err)
			}
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		p.Shutdown(ctx)
		cancel()
		log.Printf("%+v", p.Stats())
		return
	}
}
