package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"sync/atomic"
)

// KeyPair is a certificate and key loaded from PEM files that Reload reads
// again: a tls.Config whose GetCertificate is the KeyPair's serves the new
// certificate from the next handshake on, and connections already open keep
// theirs.
type KeyPair struct {
	CertFile, KeyFile string
	cert              atomic.Pointer[tls.Certificate]
}

// LoadKeyPair reads certFile and keyFile, as tls.LoadX509KeyPair.
func LoadKeyPair(certFile, keyFile string) (*KeyPair, error) {
	kp := &KeyPair{CertFile: certFile, KeyFile: keyFile}
	if err := kp.Reload(); err != nil {
		return nil, err
	}
	return kp, nil
}

// Reload reads the files again. On an error the certificate in use stays.
func (kp *KeyPair) Reload() error {
	c, err := tls.LoadX509KeyPair(kp.CertFile, kp.KeyFile)
	if err != nil {
		return fmt.Errorf("proxy: %w", err)
	}
	kp.cert.Store(&c)
	return nil
}

// Certificate returns the certificate in use.
func (kp *KeyPair) Certificate() *tls.Certificate { return kp.cert.Load() }

// GetCertificate is a tls.Config.GetCertificate that returns the
// certificate in use.
func (kp *KeyPair) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return kp.cert.Load(), nil
}

// LoadCertPool reads a PEM file of CA certificates.
func LoadCertPool(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("proxy: %s: no PEM certificate", file)
	}
	return p, nil
}
