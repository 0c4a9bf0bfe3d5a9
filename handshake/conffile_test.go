package handshake

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ktls-go/ktls/internal/testing/testpki"
)

func TestParseConfigFile(t *testing.T) {
	b, err := os.ReadFile("testdata/tlshd.conf")
	if err != nil {
		t.Fatal(err)
	}
	cf, err := ParseConfigFile(b)
	if err != nil {
		t.Fatal(err)
	}
	want := &ConfigFile{
		Keyrings: []string{".mykeys", "12345"},
		Client:   X509Files{Truststore: "/etc/pki/nfs/ca.pem", Certificate: "/etc/pki/nfs/client.pem", PrivateKey: "/etc/pki/nfs/client.key"},
		Server:   X509Files{Truststore: "/etc/pki/nfs/ca.pem", Certificate: "/etc/pki/nfs/server name.pem", PrivateKey: "/etc/pki/nfs/server.key", CRL: "/etc/pki/nfs/revoked.pem"},
		Debug:    map[string]string{"loglevel": "0", "tls": "0", "nl": "0"},
	}
	if !reflect.DeepEqual(cf, want) {
		t.Errorf("ParseConfigFile =\n%+v, want\n%+v", cf, want)
	}
}

func TestParseConfigFileWarnings(t *testing.T) {
	cf, err := ParseConfigFile([]byte("[authenticate.client]\nx509.pq.certificate=/a\n[authenticate.server]\r\nx509.truststore=/b\r\n[tls]\nfoo=1\n[debug]\nverbose=2\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cf.Server.Truststore != "/b" {
		t.Errorf("CRLF line: %+v", cf.Server)
	}
	want := []string{"line 2: [authenticate.client] x509.pq.certificate", "line 5: section [tls]", "line 6: [tls] foo", "line 8: [debug] verbose"}
	if len(cf.Warnings) != len(want) {
		t.Fatalf("warnings %q", cf.Warnings)
	}
	for i, w := range want {
		if !strings.HasPrefix(cf.Warnings[i], w) {
			t.Errorf("warning %q, want %q...", cf.Warnings[i], w)
		}
	}
	for _, bad := range []string{"key=value\n", "[authenticate\n", "[authenticate]\nkeyrings\n", "[debug]\nloglevel=1\\\n", "[debug]\nloglevel=\\q\n"} {
		if _, err := ParseConfigFile([]byte(bad)); err == nil || !strings.HasPrefix(err.Error(), "handshake: config line ") {
			t.Errorf("ParseConfigFile(%q) = %v", bad, err)
		}
	}
}

func TestLoadConfigFile(t *testing.T) {
	p := testpki.Get()
	dir := t.TempDir()
	certFile, keyFile := p.WriteECDSA(dir)
	ca := filepath.Join(dir, "ca.pem")
	os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.CADER}), 0o600)
	conf := filepath.Join(dir, "config")
	os.WriteFile(conf, []byte("[authenticate.server]\nx509.truststore="+ca+"\nx509.certificate="+certFile+"\nx509.private_key="+keyFile+"\n"), 0o600)
	cf, path, err := LoadConfigFile(conf)
	if err != nil || path != conf {
		t.Fatal(path, err)
	}
	cr, err := cf.Server.Credentials()
	if err != nil || len(cr.Certificates) != 1 || cr.RootCAs == nil || cr.CRLs != nil {
		t.Fatalf("Credentials = %+v, %v", cr, err)
	}
	if _, err := (X509Files{Certificate: certFile}).Credentials(); err == nil {
		t.Error("a certificate without its key was taken")
	}
	if _, err := (X509Files{Truststore: keyFile}).Credentials(); err == nil {
		t.Error("a key file was taken for a trust store")
	}
	if _, _, err := LoadConfigFile(filepath.Join(dir, "missing")); err == nil {
		t.Error("a missing file was read")
	}
}

// TestCRL: a chain whose leaf the issuer's list revokes is refused; the
// list of another issuer does not count.
func TestCRL(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "crl CA"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	leafTmpl := &x509.Certificate{SerialNumber: big.NewInt(77), Subject: pkix.Name{CommonName: "revoked"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	leafDER, _ := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &key.PublicKey, key)
	leaf, _ := x509.ParseCertificate(leafDER)
	crlDER, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(1),
		RevokedCertificateEntries: []x509.RevocationListEntry{{SerialNumber: big.NewInt(77), RevocationTime: time.Now()}},
		ThisUpdate:                time.Now(), NextUpdate: time.Now().Add(time.Hour)}, ca, key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	crlFile := filepath.Join(dir, "crl.pem")
	os.WriteFile(crlFile, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: crlDER}), 0o600)
	cr, err := (X509Files{CRL: crlFile}).Credentials()
	if err != nil || len(cr.CRLs) != 1 {
		t.Fatal(cr, err)
	}
	cs := tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{leaf, ca}}}
	if err := checkCRLs(cs, cr.CRLs); err == nil || !strings.Contains(err.Error(), "revoked") {
		t.Errorf("checkCRLs(revoked) = %v", err)
	}
	p := testpki.Get()
	other, _ := x509.ParseCertificate(p.ECDSA().Certificate[0])
	otherCA, _ := x509.ParseCertificate(p.CADER)
	if err := checkCRLs(tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{other, otherCA}}}, cr.CRLs); err != nil {
		t.Errorf("checkCRLs(another issuer) = %v", err)
	}
}
