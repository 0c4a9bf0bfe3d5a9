// Package testpki makes the certificates that the project's tests, examples
// and benchmarks use: a CA, an ECDSA and an RSA server certificate for
// localhost, 127.0.0.1 and ::1, and a client certificate. Each key is made
// once per process, on first use (an RSA key costs many seconds in the
// emulated kernel VMs, so it is made only when a test asks for it).
//
// It is for tests only: failures panic.
package testpki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// PKI is the CA and what it signed.
type PKI struct {
	// CADER is the CA certificate, DER-encoded.
	CADER []byte
	// Pool holds the CA certificate.
	Pool *x509.CertPool

	ca    *x509.Certificate
	caKey crypto.Signer

	ecdsaOnce, rsaOnce, clientOnce sync.Once
	ecdsaCert, rsaCert, clientCert tls.Certificate
}

var (
	once sync.Once
	pki  *PKI
)

// Get returns the process's PKI.
func Get() *PKI {
	once.Do(func() {
		key := must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader))
		tmpl := &x509.Certificate{
			SerialNumber:          big.NewInt(1),
			Subject:               pkix.Name{CommonName: "ktls test CA"},
			NotBefore:             time.Now().Add(-time.Hour),
			NotAfter:              time.Now().Add(24 * time.Hour),
			IsCA:                  true,
			BasicConstraintsValid: true,
			KeyUsage:              x509.KeyUsageCertSign,
		}
		der := must(x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key))
		p := &PKI{CADER: der, ca: must(x509.ParseCertificate(der)), caKey: key, Pool: x509.NewCertPool()}
		p.Pool.AddCert(p.ca)
		pki = p
	})
	return pki
}

// ECDSA returns a P-256 server certificate.
func (p *PKI) ECDSA() tls.Certificate {
	p.ecdsaOnce.Do(func() {
		k := must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader))
		p.ecdsaCert = p.leaf(2, k, false)
	})
	return p.ecdsaCert
}

// RSA returns a 2048-bit RSA server certificate.
func (p *PKI) RSA() tls.Certificate {
	p.rsaOnce.Do(func() {
		k := must(rsa.GenerateKey(rand.Reader, 2048))
		p.rsaCert = p.leaf(3, k, false)
	})
	return p.rsaCert
}

// Client returns a P-256 client certificate.
func (p *PKI) Client() tls.Certificate {
	p.clientOnce.Do(func() {
		k := must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader))
		p.clientCert = p.leaf(4, k, true)
	})
	return p.clientCert
}

func (p *PKI) leaf(serial int64, key crypto.Signer, client bool) tls.Certificate {
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: "ktls test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		DNSNames:     []string{"localhost", "example.test"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if client {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	der := must(x509.CreateCertificate(rand.Reader, tmpl, p.ca, key.Public(), p.caKey))
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// Configs returns a matching client and server config for one version (0:
// crypto/tls's default range) and, for TLS 1.2, one suite (0: crypto/tls's
// choice). The server presents the RSA certificate for ECDHE_RSA suites and
// the ECDSA one otherwise; the client trusts the CA and expects localhost.
func Configs(version, suite uint16) (client, server *tls.Config) {
	p := Get()
	var cert tls.Certificate
	switch suite {
	case tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256, tls.TLS_RSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_RSA_WITH_AES_256_GCM_SHA384:
		cert = p.RSA()
	default:
		cert = p.ECDSA()
	}
	server = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: version, MaxVersion: version}
	client = &tls.Config{RootCAs: p.Pool, ServerName: "localhost", MinVersion: version, MaxVersion: version}
	if suite != 0 {
		server.CipherSuites = []uint16{suite}
		client.CipherSuites = []uint16{suite}
	}
	return client, server
}

func must[T any](v T, err error) T {
	if err != nil {
		panic("testpki: " + err.Error())
	}
	return v
}

// WriteECDSA writes the ECDSA server certificate chain and its key as PEM
// files in dir, for peers that read files (openssl s_server, gnutls-serv),
// and returns their paths.
func (p *PKI) WriteECDSA(dir string) (certFile, keyFile string) {
	c := p.ECDSA()
	der := must(x509.MarshalPKCS8PrivateKey(c.PrivateKey))
	var certs []byte
	for _, b := range c.Certificate {
		certs = append(certs, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: b})...)
	}
	certFile, keyFile = filepath.Join(dir, "ecdsa.crt"), filepath.Join(dir, "ecdsa.key")
	if err := os.WriteFile(certFile, certs, 0o600); err != nil {
		panic(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		panic(err)
	}
	return certFile, keyFile
}
