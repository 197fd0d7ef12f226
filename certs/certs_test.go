package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// writeCert writes a self-signed certificate with serial n to dir/name.crt and .key.
func writeCert(t *testing.T, dir, name string, n int64) Files {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(n), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"localhost"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalPKCS8PrivateKey(key)
	f := Files{Cert: filepath.Join(dir, name+".crt"), Key: filepath.Join(dir, name+".key")}
	os.WriteFile(f.Cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(f.Key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600)
	return f
}

// Changed files are loaded at the next check; files that do not load leave the old ones.
func TestSourceReloadsChangedFiles(t *testing.T) {
	dir := t.TempDir()
	f := writeCert(t, dir, "a", 1)
	s, err := Load(f, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	s.now = func() time.Time { return now }
	serial := func() int64 { c, _ := s.current(); return c.Leaf.SerialNumber.Int64() }
	g := writeCert(t, dir, "b", 2)
	for _, p := range [][2]string{{g.Cert, f.Cert}, {g.Key, f.Key}} {
		b, _ := os.ReadFile(p[0])
		os.WriteFile(p[1], b, 0o600)
		os.Chtimes(p[1], now.Add(time.Minute), now.Add(time.Minute))
	}
	if serial() != 1 {
		t.Fatal("reloaded before a second passed")
	}
	now = now.Add(2 * time.Second)
	if got := serial(); got != 2 {
		t.Fatalf("serial %d after the files changed, want 2", got)
	}
	os.WriteFile(f.Cert, []byte("not a certificate"), 0o600)
	now = now.Add(2 * time.Second)
	if got := serial(); got != 2 {
		t.Fatalf("serial %d after a broken file, want the last good one (2)", got)
	}
	if _, err := Load(Files{Cert: f.Cert}, zerolog.Nop()); err == nil {
		t.Fatal("a certificate without its key loaded")
	}
}

func TestSettingsParsing(t *testing.T) {
	if v, err := ParseVersion(""); err != nil || v != tls.VersionTLS12 {
		t.Errorf("default version: %v %v", v, err)
	}
	if v, err := ParseVersion("1.3"); err != nil || v != tls.VersionTLS13 {
		t.Errorf("1.3: %v %v", v, err)
	}
	if _, err := ParseVersion("1.0"); err == nil {
		t.Error("TLS 1.0 accepted")
	}
	if ids, err := ParseCiphers([]string{"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"}); err != nil || len(ids) != 1 {
		t.Errorf("a secure suite: %v %v", ids, err)
	}
	if _, err := ParseCiphers([]string{"TLS_RSA_WITH_RC4_128_SHA"}); err == nil || !strings.Contains(err.Error(), "insecure") {
		t.Errorf("an insecure suite: %v", err)
	}
	for msg, want := range map[string]string{
		"tls: first record does not look like a TLS handshake":     "plain (non-TLS) client",
		"tls: client didn't provide a certificate":                 "presented no certificate",
		"x509: certificate signed by unknown authority":            "not trusted here",
		"x509: certificate has expired or is not yet valid: today": "expired",
		"something else": "TLS handshake failed",
	} {
		if got := Explain(errors.New(msg)); !strings.Contains(got, want) {
			t.Errorf("Explain(%q) = %q, want %q in it", msg, got, want)
		}
	}
}
