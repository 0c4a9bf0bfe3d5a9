package ktlsgrpc

import (
	"crypto/x509"
	"net/url"
)

// spiffeIDFromCert returns the SPIFFE ID in the certificate's URI SANs, or
// nil, by grpc-go's rules (internal/credentials/spiffe.go, SPIFFEIDFromCert),
// which follow the SPIFFE ID and X509-SVID standards: a URI with the scheme
// "spiffe", no opaque part and no user; at most 2048 bytes, a trust domain
// of at most 255 characters, a non-empty trust domain and path; and the only
// URI SAN of the certificate. grpc-go keeps that code internal, hence this
// copy of its rules. An invalid ID is logged and gives nil.
func spiffeIDFromCert(cert *x509.Certificate) *url.URL {
	if cert == nil {
		return nil
	}
	var id *url.URL
	for _, uri := range cert.URIs {
		if uri == nil || uri.Scheme != "spiffe" || uri.Opaque != "" || (uri.User != nil && uri.User.Username() != "") {
			continue
		}
		switch {
		case len(uri.String()) > 2048:
			logger.Warning("invalid SPIFFE ID: total ID length larger than 2048 bytes")
			return nil
		case uri.Host == "" || uri.Path == "":
			logger.Warning("invalid SPIFFE ID: domain or workload ID is empty")
			return nil
		case len(uri.Host) > 255:
			logger.Warning("invalid SPIFFE ID: domain length larger than 255 characters")
			return nil
		case len(cert.URIs) > 1:
			logger.Warning("invalid SPIFFE ID: multiple URI SANs")
			return nil
		}
		id = uri
	}
	return id
}
