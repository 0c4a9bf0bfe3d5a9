package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"os/signal"
	"slices"
	"sync/atomic"
	"syscall"

	"github.com/ktls-go/ktls/handshake"
)

// tlshdKeyrings are the keyrings tlshd always links into its session
// keyring, whatever the configuration says: where the NFS client, the NFS
// server and NVMe keep the keys they name in their requests.
var tlshdKeyrings = []string{".nvme", ".nfs", ".nfsd"}

// settings are the credentials one reading of the configuration gives.
type settings struct {
	client, server *handshake.Credentials
}

// tlshd is `ktls tlshd`: the handshake agent in the foreground, logging to
// stderr, until SIGTERM or SIGINT; SIGHUP reads the configuration again.
func tlshd(args []string, stderr io.Writer) int {
	fs := newFlags("tlshd", stderr)
	config := fs.String("config", "", "tlshd's configuration file (default: /etc/tlshd/config, else /etc/tlshd.conf, else none)")
	debug := fs.Bool("debug", false, "log Serve's debug events too")
	if code, ok := parseFlags(fs, args, stderr); !ok {
		return code
	}
	level := slog.LevelInfo
	if *debug {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	cf, st, err := loadSettings(*config, log)
	if err != nil {
		log.Error("ktls tlshd: " + err.Error())
		return 1
	}
	var current atomic.Pointer[settings]
	current.Store(st)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				if _, st, err := loadSettings(*config, log); err != nil {
					log.Error("ktls tlshd: SIGHUP: keeping the configuration in use: " + err.Error())
				} else {
					current.Store(st)
					log.Info("ktls tlshd: configuration reloaded")
				}
			}
		}
	}()

	err = handshake.Serve(ctx, &handshake.Config{
		Logger:   log,
		Keyrings: keyrings(cf),
		GetCredentials: func(t handshake.MsgType) (*handshake.Credentials, error) {
			st := current.Load()
			if t == handshake.ServerHello {
				return st.server, nil
			}
			return st.client, nil
		},
	})
	if err != nil {
		log.Error("ktls tlshd: " + err.Error())
		return 1
	}
	log.Info("ktls tlshd: stopped")
	return 0
}

// loadSettings reads the configuration and loads the files it names. With
// no path and no file at the default places, the agent runs with the
// system's trust store and no certificate of its own.
func loadSettings(path string, log *slog.Logger) (*handshake.ConfigFile, *settings, error) {
	cf, used, err := handshake.LoadConfigFile(path)
	if err != nil {
		if path != "" || used != "" {
			return nil, nil, err
		}
		log.Warn("ktls tlshd: no configuration file; the system trust store and no certificate of our own", "looked_at", handshake.DefaultConfigPaths())
		cf = &handshake.ConfigFile{}
	} else {
		log.Info("ktls tlshd: configuration", "file", used)
	}
	for _, w := range cf.Warnings {
		log.Warn("ktls tlshd: configuration: " + w)
	}
	if len(cf.Debug) != 0 {
		keys := slices.Sorted(maps.Keys(cf.Debug))
		log.Info("ktls tlshd: configuration: [debug] sets tlshd's own logging and delays; ignored here (use -debug)", "keys", keys)
	}
	client, err := cf.Client.Credentials()
	if err != nil {
		return nil, nil, fmt.Errorf("[authenticate.client]: %w", err)
	}
	server, err := cf.Server.Credentials()
	if err != nil {
		return nil, nil, fmt.Errorf("[authenticate.server]: %w", err)
	}
	return cf, &settings{client: client, server: server}, nil
}

// keyrings are .nvme, .nfs, .nfsd and the configuration's keyrings, which
// Serve links into its session keyring as tlshd does at start.
func keyrings(cf *handshake.ConfigFile) []string {
	names := append([]string(nil), tlshdKeyrings...)
	for _, k := range cf.Keyrings {
		if !slices.Contains(tlshdKeyrings, k) {
			names = append(names, k)
		}
	}
	return names
}
