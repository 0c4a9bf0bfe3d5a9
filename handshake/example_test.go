package handshake_test

import (
	"context"
	"log"
	"os"
	"os/signal"
	"syscall"

	"github.com/ktls-go/ktls/handshake"
)

// Serve the kernel's handshake requests with tlshd's configuration file
// until SIGTERM, as `ktls tlshd` does.
func ExampleServe() {
	cf, _, err := handshake.LoadConfigFile("") // /etc/tlshd/config, else /etc/tlshd.conf
	if err != nil {
		log.Fatal(err)
	}
	client, err := cf.Client.Credentials()
	if err != nil {
		log.Fatal(err)
	}
	server, err := cf.Server.Credentials()
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := handshake.Serve(ctx, &handshake.Config{Client: client, Server: server}); err != nil {
		log.Fatal(err) // e.g. handshake.ErrNoFamily before Linux 6.4
	}
}
