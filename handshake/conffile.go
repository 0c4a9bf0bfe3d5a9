package handshake

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// DefaultConfigPaths returns where tlshd looks for its configuration, in
// order: /etc/tlshd/config (newer ktls-utils), and /etc/tlshd.conf, which
// older releases, Debian trixie's ktls-utils 1.0 among them, read.
func DefaultConfigPaths() []string { return []string{"/etc/tlshd/config", "/etc/tlshd.conf"} }

// ConfigFile is tlshd's configuration file (tlshd.conf(5)), in GLib's key
// file format: [sections] of key=value lines, # comments, lists separated
// by semicolons.
type ConfigFile struct {
	// Keyrings are [authenticate] keyrings: names or serials of keyrings
	// to link into the session keyring, beside .nfs, .nfsd and .nvme.
	Keyrings []string
	// Client and Server are [authenticate.client] and
	// [authenticate.server].
	Client, Server X509Files
	// Debug holds the [debug] keys tlshd reads (loglevel, tls, nl,
	// delay_done).
	// They set the verbosity of tlshd's own libraries and mean nothing
	// here: they are accepted and ignored.
	Debug map[string]string
	// Warnings name every key and section this agent does not know or
	// use, with its line: they are reported, not silently ignored.
	Warnings []string
}

// X509Files are one role's x509.* keys: paths of PEM files.
type X509Files struct {
	Truststore, Certificate, PrivateKey, CRL string
}

// ParseConfigFile parses the text of a tlshd configuration file.
func ParseConfigFile(data []byte) (*ConfigFile, error) {
	cf := &ConfigFile{Debug: map[string]string{}}
	section := ""
	for i, line := range strings.Split(string(data), "\n") {
		n := i + 1
		line = strings.TrimSpace(strings.TrimSuffix(line, "\r"))
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(line, "[") {
			if !strings.HasSuffix(line, "]") || len(line) < 3 {
				return nil, fmt.Errorf("handshake: config line %d: malformed section %q", n, line)
			}
			section = line[1 : len(line)-1]
			switch section {
			case "debug", "authenticate", "authenticate.client", "authenticate.server":
			default:
				cf.Warnings = append(cf.Warnings, fmt.Sprintf("line %d: section [%s] is unknown; its keys are ignored", n, section))
			}
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("handshake: config line %d: neither a section, a key=value nor a comment", n)
		}
		k = strings.TrimSpace(k)
		v, err := unescape(strings.TrimSpace(v))
		if err != nil {
			return nil, fmt.Errorf("handshake: config line %d: %w", n, err)
		}
		if section == "" {
			return nil, fmt.Errorf("handshake: config line %d: key %q before any section", n, k)
		}
		if !cf.set(section, k, v) {
			cf.Warnings = append(cf.Warnings, fmt.Sprintf("line %d: [%s] %s is unknown here; ignored", n, section, k))
		}
	}
	return cf, nil
}

func (cf *ConfigFile) set(section, k, v string) bool {
	switch section {
	case "debug":
		switch k {
		case "loglevel", "tls", "nl", "delay_done":
			cf.Debug[k] = v
			return true
		}
	case "authenticate":
		if k == "keyrings" {
			cf.Keyrings = nil
			for _, r := range strings.Split(v, ";") {
				if r = strings.TrimSpace(r); r != "" {
					cf.Keyrings = append(cf.Keyrings, r)
				}
			}
			return true
		}
	case "authenticate.client", "authenticate.server":
		x := &cf.Client
		if section == "authenticate.server" {
			x = &cf.Server
		}
		switch k {
		case "x509.truststore":
			x.Truststore = v
		case "x509.certificate":
			x.Certificate = v
		case "x509.private_key":
			x.PrivateKey = v
		case "x509.crl":
			x.CRL = v
		default:
			return false
		}
		return true
	}
	return false
}

// unescape undoes GLib's escapes in a value: \s \n \t \r \\ and \;.
func unescape(v string) (string, error) {
	if !strings.Contains(v, `\`) {
		return v, nil
	}
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		if v[i] != '\\' {
			b.WriteByte(v[i])
			continue
		}
		i++
		if i == len(v) {
			return "", errors.New(`a value ends in "\"`)
		}
		switch v[i] {
		case 's':
			b.WriteByte(' ')
		case 'n':
			b.WriteByte('\n')
		case 't':
			b.WriteByte('\t')
		case 'r':
			b.WriteByte('\r')
		case '\\', ';':
			b.WriteByte(v[i])
		default:
			return "", fmt.Errorf(`unknown escape "\%c"`, v[i])
		}
	}
	return b.String(), nil
}

// LoadConfigFile reads path, or where path is "" the first of
// DefaultConfigPaths that exists, and returns the file and the path read.
func LoadConfigFile(path string) (*ConfigFile, string, error) {
	paths := []string{path}
	if path == "" {
		paths = DefaultConfigPaths()
	}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if errors.Is(err, fs.ErrNotExist) && path == "" {
			continue
		}
		if err != nil {
			return nil, p, fmt.Errorf("handshake: %w", err)
		}
		cf, err := ParseConfigFile(b)
		if err != nil {
			return nil, p, fmt.Errorf("%w (in %s)", err, p)
		}
		return cf, p, nil
	}
	return nil, "", fmt.Errorf("handshake: no configuration file: none of %s exists", strings.Join(DefaultConfigPaths(), ", "))
}

// Credentials loads the files the section names.
func (x X509Files) Credentials() (*Credentials, error) {
	cr := &Credentials{}
	if x.Truststore != "" {
		b, err := os.ReadFile(x.Truststore)
		if err != nil {
			return nil, fmt.Errorf("handshake: x509.truststore: %w", err)
		}
		cr.RootCAs = x509.NewCertPool()
		if !cr.RootCAs.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("handshake: x509.truststore %s: no PEM certificate", x.Truststore)
		}
	}
	if (x.Certificate == "") != (x.PrivateKey == "") {
		return nil, errors.New("handshake: x509.certificate and x509.private_key go together")
	}
	if x.Certificate != "" {
		c, err := tls.LoadX509KeyPair(x.Certificate, x.PrivateKey)
		if err != nil {
			return nil, fmt.Errorf("handshake: x509.certificate: %w", err)
		}
		cr.Certificates = []tls.Certificate{c}
	}
	if x.CRL != "" {
		b, err := os.ReadFile(x.CRL)
		if err != nil {
			return nil, fmt.Errorf("handshake: x509.crl: %w", err)
		}
		for blk, rest := pem.Decode(b); blk != nil; blk, rest = pem.Decode(rest) {
			if blk.Type != "X509 CRL" {
				continue
			}
			l, err := x509.ParseRevocationList(blk.Bytes)
			if err != nil {
				return nil, fmt.Errorf("handshake: x509.crl %s: %w", x.CRL, err)
			}
			cr.CRLs = append(cr.CRLs, l)
		}
		if len(cr.CRLs) == 0 {
			return nil, fmt.Errorf("handshake: x509.crl %s: no PEM \"X509 CRL\"", x.CRL)
		}
	}
	return cr, nil
}
