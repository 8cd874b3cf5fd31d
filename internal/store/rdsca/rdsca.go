// Package rdsca holds the Amazon RDS certificate authorities, embedded in
// the binaries so that a connection to RDS can verify the server without
// reading any file at run time. Their origin is in origin.go; `make rds-ca`
// refreshes them (see README.md, "TLS to the database").
package rdsca

import (
	"crypto/x509"
	_ "embed" // for the bundle
	"errors"
	"sync"
)

//go:embed bundle.pem
var bundle []byte

// PEM returns the bundle as PEM certificates.
func PEM() []byte { return bundle }

var (
	poolOnce sync.Once
	pool     *x509.CertPool
)

// Pool returns the bundle as a certificate pool (parsed once; callers must
// not add to it).
func Pool() (*x509.CertPool, error) {
	poolOnce.Do(func() {
		p := x509.NewCertPool()
		if p.AppendCertsFromPEM(bundle) {
			pool = p
		}
	})
	if pool == nil {
		return nil, errors.New("the embedded Amazon RDS CA bundle holds no certificate")
	}
	return pool, nil
}
