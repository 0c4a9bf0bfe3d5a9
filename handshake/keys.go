package handshake

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
)

// parseKeyPair reads a certificate chain and a private key as the kernel
// keyring holds them for tlshd: DER (a certificate, or several
// concatenated; PKCS #8, PKCS #1 or SEC 1) or PEM. The key must match the
// leaf certificate.
func parseKeyPair(certData, keyData []byte) (*tls.Certificate, error) {
	var chain [][]byte
	if b, rest := pem.Decode(certData); b != nil {
		for ; b != nil; b, rest = pem.Decode(rest) {
			if b.Type == "CERTIFICATE" {
				chain = append(chain, b.Bytes)
			}
		}
	} else {
		certs, err := x509.ParseCertificates(certData)
		if err != nil {
			return nil, fmt.Errorf("handshake: certificate: %w", err)
		}
		for _, c := range certs {
			chain = append(chain, c.Raw)
		}
	}
	if len(chain) == 0 {
		return nil, errors.New("handshake: no certificate in the key's payload")
	}
	if b, _ := pem.Decode(keyData); b != nil {
		keyData = b.Bytes
	}
	key, err := parsePrivateKey(keyData)
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(chain[0])
	if err != nil {
		return nil, fmt.Errorf("handshake: certificate: %w", err)
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(leaf.PublicKey) {
		return nil, errors.New("handshake: the private key does not match the certificate")
	}
	return &tls.Certificate{Certificate: chain, PrivateKey: key, Leaf: leaf}, nil
}

func parsePrivateKey(der []byte) (crypto.Signer, error) {
	if k, err := x509.ParsePKCS8PrivateKey(der); err == nil {
		if s, ok := k.(crypto.Signer); ok {
			return s, nil
		}
		return nil, errors.New("handshake: private key: not a signing key")
	}
	if k, err := x509.ParsePKCS1PrivateKey(der); err == nil {
		return k, nil
	}
	if k, err := x509.ParseECPrivateKey(der); err == nil {
		return k, nil
	}
	return nil, errors.New("handshake: private key: neither PKCS #8, PKCS #1 nor SEC 1")
}
