package rdsca

import (
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestBundleHoldsTheRDSCertificateAuthorities(t *testing.T) {
	t.Parallel()
	rest := PEM()
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		require.Equal(t, "CERTIFICATE", block.Type)
		cert, err := x509.ParseCertificate(block.Bytes)
		require.NoError(t, err, "certificate %d", len(certs)+1)
		certs = append(certs, cert)
	}
	require.Empty(t, strings.TrimSpace(string(rest)), "nothing but certificates in the bundle")
	require.Equal(t, Certificates, len(certs), "origin.go says how many certificates bundle.pem holds")
	require.GreaterOrEqual(t, len(certs), 100, "one root per region and key type, and more")

	subjects := map[string]bool{}
	for _, c := range certs {
		require.True(t, c.IsCA, "%s is a certificate authority", c.Subject)
		subjects[c.Subject.CommonName] = true
	}
	// The current generation of RDS roots, and the Amazon Trust Services
	// root RDS Proxy chains to.
	for _, cn := range []string{"Amazon RDS eu-west-1 Root CA RSA2048 G1", "Amazon RDS us-east-1 Root CA ECC384 G1", "Amazon Root CA 1"} {
		require.True(t, subjects[cn], "the bundle holds %q", cn)
	}

	pool, err := Pool()
	require.NoError(t, err)
	require.NotNil(t, pool)
	require.Regexp(t, `^[0-9a-f]{64}$`, TarballSHA256)
}
