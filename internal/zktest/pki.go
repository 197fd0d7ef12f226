package zktest

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// PKI is a throwaway certificate authority for TLS tests, its files in a test's temp dir.
// Each certificate has a .crt (certificate), a .key (PKCS#8 key) and a .pem (key and
// certificate together, as ZooKeeper's PEM key store reads them).
type PKI struct {
	Dir     string
	CA      string // the CA certificate (a trust store)
	OtherCA string // a CA nobody trusts

	key      *rsa.PrivateKey // every leaf's key: one RSA key keeps the test quick
	caCert   *x509.Certificate
	caKey    *rsa.PrivateKey
	otherCrt *x509.Certificate
	otherKey *rsa.PrivateKey
	serial   int64
}

// Cert is one issued certificate's files.
type Cert struct {
	Crt, Key, PEM string
	Serial        *big.Int
}

// NewPKI makes a CA, and a second CA for certificates nobody trusts.
func NewPKI(tb testing.TB) *PKI {
	tb.Helper()
	p := &PKI{Dir: tb.TempDir(), serial: 100}
	var err error
	if p.key, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		tb.Fatal(err)
	}
	p.caKey, p.otherKey = p.key, p.key
	p.caCert, p.CA = p.selfSigned(tb, "zkgate test CA", "ca")
	p.otherCrt, p.OtherCA = p.selfSigned(tb, "untrusted CA", "other-ca")
	return p
}

func (p *PKI) selfSigned(tb testing.TB, cn, name string) (*x509.Certificate, string) {
	p.serial++
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(p.serial), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &p.key.PublicKey, p.key)
	if err != nil {
		tb.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	path := filepath.Join(p.Dir, name+".crt")
	writePEM(tb, path, "CERTIFICATE", der)
	return c, path
}

// Issue signs a certificate for 127.0.0.1 and localhost, usable by servers and clients.
// expired makes one that expired an hour ago; untrusted signs it with OtherCA.
func (p *PKI) Issue(tb testing.TB, name string, expired, untrusted bool) Cert {
	tb.Helper()
	p.serial++
	notAfter := time.Now().Add(24 * time.Hour)
	if expired {
		notAfter = time.Now().Add(-time.Hour)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(p.serial), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-2 * time.Hour), NotAfter: notAfter,
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	parent, parentKey := p.caCert, p.caKey
	if untrusted {
		parent, parentKey = p.otherCrt, p.otherKey
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &p.key.PublicKey, parentKey)
	if err != nil {
		tb.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(p.key)
	if err != nil {
		tb.Fatal(err)
	}
	c := Cert{Crt: filepath.Join(p.Dir, name+".crt"), Key: filepath.Join(p.Dir, name+".key"),
		PEM: filepath.Join(p.Dir, name+".pem"), Serial: tmpl.SerialNumber}
	writePEM(tb, c.Crt, "CERTIFICATE", der)
	writePEM(tb, c.Key, "PRIVATE KEY", keyDER)
	both := append(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	if err := os.WriteFile(c.PEM, both, 0o600); err != nil {
		tb.Fatal(err)
	}
	return c
}

func writePEM(tb testing.TB, path, typ string, der []byte) {
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		tb.Fatal(err)
	}
}

// ZooKeeperTLS is the zoo.cfg keys for a secureClientPort serving cert, trusting the PKI's
// CA; clientAuth is need, want or none.
func (p *PKI) ZooKeeperTLS(server Cert, clientAuth string) map[string]string {
	return map[string]string{
		"ssl.keyStore.location":   server.PEM,
		"ssl.keyStore.type":       "PEM",
		"ssl.trustStore.location": p.CA,
		"ssl.trustStore.type":     "PEM",
		"ssl.clientAuth":          clientAuth,
	}
}
