// Package certs loads TLS certificates, keys and CA bundles from PEM files and keeps them
// current: the files are checked for changes at most once a second, when a connection
// needs them, and a change is loaded without touching established connections. A file
// that fails to load leaves the last good version in use, and says why in the log.
package certs

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// Files names the PEM files of one side. Cert and Key go together; CA is a bundle of
// certificates to verify the peer with.
type Files struct {
	Cert, Key, CA string
}

// checkEvery bounds how often the files are looked at.
const checkEvery = time.Second

// Source holds the loaded files and reloads them when they change.
type Source struct {
	files Files
	log   zerolog.Logger
	now   func() time.Time

	mu      sync.Mutex
	checked time.Time
	stamps  [3]stamp // of Cert, Key, CA as loaded
	cert    *tls.Certificate
	pool    *x509.CertPool
	serial  string // of the loaded certificate, for the logs
}

type stamp struct {
	mod  time.Time
	size int64
}

// Load reads the files once; an error here is a configuration error.
func Load(f Files, log zerolog.Logger) (*Source, error) {
	s := &Source{files: f, log: log, now: time.Now}
	if err := s.load(); err != nil {
		return nil, err
	}
	s.checked = s.now()
	return s, nil
}

func (s *Source) load() error {
	var st [3]stamp
	for i, p := range []string{s.files.Cert, s.files.Key, s.files.CA} {
		if p == "" {
			continue
		}
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		st[i] = stamp{fi.ModTime(), fi.Size()}
	}
	var cert *tls.Certificate
	serial := ""
	if s.files.Cert != "" || s.files.Key != "" {
		if s.files.Cert == "" || s.files.Key == "" {
			return errors.New("a certificate needs both cert and key")
		}
		c, err := tls.LoadX509KeyPair(s.files.Cert, s.files.Key)
		if err != nil {
			return fmt.Errorf("%s, %s: %w", s.files.Cert, s.files.Key, err)
		}
		if c.Leaf == nil {
			if c.Leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
				return fmt.Errorf("%s: %w", s.files.Cert, err)
			}
		}
		cert, serial = &c, c.Leaf.SerialNumber.Text(16)
	}
	var pool *x509.CertPool
	if s.files.CA != "" {
		b, err := os.ReadFile(s.files.CA)
		if err != nil {
			return err
		}
		pool = x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return fmt.Errorf("%s: no PEM certificate in it", s.files.CA)
		}
	}
	s.mu.Lock()
	s.cert, s.pool, s.stamps, s.serial = cert, pool, st, serial
	s.mu.Unlock()
	return nil
}

// refresh reloads the files if one changed since they were loaded (looked at no more
// than once a second).
func (s *Source) refresh() {
	now := s.now()
	s.mu.Lock()
	if now.Sub(s.checked) < checkEvery {
		s.mu.Unlock()
		return
	}
	s.checked = now
	old := s.stamps
	s.mu.Unlock()
	changed := false
	for i, p := range []string{s.files.Cert, s.files.Key, s.files.CA} {
		if p == "" {
			continue
		}
		fi, err := os.Stat(p)
		if err != nil || fi.ModTime() != old[i].mod || fi.Size() != old[i].size {
			changed = true
		}
	}
	if !changed {
		return
	}
	if err := s.Reload(); err != nil {
		s.log.Error().Err(err).Str("cert", s.files.Cert).Str("ca", s.files.CA).Msg("TLS files changed but do not load; keeping the ones loaded before")
		s.mu.Lock()
		s.stamps = [3]stamp{} // try again at the next check
		s.mu.Unlock()
	}
}

// Reload reads the files now (SIGHUP does); on error the loaded ones stay.
func (s *Source) Reload() error {
	s.mu.Lock()
	before := s.serial
	s.mu.Unlock()
	if err := s.load(); err != nil {
		return err
	}
	s.mu.Lock()
	after := s.serial
	s.mu.Unlock()
	s.log.Info().Str("cert", s.files.Cert).Str("serial_before", before).Str("serial", after).Str("ca", s.files.CA).Msg("TLS files reloaded")
	return nil
}

func (s *Source) current() (*tls.Certificate, *x509.CertPool) {
	s.refresh()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cert, s.pool
}

// Settings are the protocol settings of a TLS listener.
type Settings struct {
	MinVersion uint16   // 0: TLS 1.2
	Ciphers    []uint16 // nil: Go's defaults (TLS 1.3 suites are not configurable)
}

// ServerConfig is a listener's TLS: this source's certificate, and, when it has a CA,
// client certificates required and verified against it (mutual TLS).
func (s *Source) ServerConfig(set Settings) *tls.Config {
	minV := set.MinVersion
	if minV == 0 {
		minV = tls.VersionTLS12
	}
	return &tls.Config{
		MinVersion: minV,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			cert, pool := s.current()
			c := &tls.Config{MinVersion: minV, CipherSuites: set.Ciphers}
			if cert != nil {
				c.Certificates = []tls.Certificate{*cert}
			}
			if pool != nil {
				c.ClientCAs, c.ClientAuth = pool, tls.RequireAndVerifyClientCert
			}
			return c, nil
		},
	}
}

// ClientConfig is the TLS to dial a server with: verified against this source's CA (the
// system's roots without one) for serverName, presenting this source's certificate if
// it has one. An empty serverName is taken from each dialed address (see For).
func (s *Source) ClientConfig(serverName string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		ServerName: serverName,
		// Verified in VerifyConnection against the CA as loaded now, so a rotated CA
		// bundle applies to the next connection.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			_, pool := s.current()
			if len(cs.PeerCertificates) == 0 {
				return errors.New("the server presented no certificate")
			}
			opts := x509.VerifyOptions{Roots: pool, DNSName: cs.ServerName, Intermediates: x509.NewCertPool()}
			for _, c := range cs.PeerCertificates[1:] {
				opts.Intermediates.AddCert(c)
			}
			_, err := cs.PeerCertificates[0].Verify(opts)
			return err
		},
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			cert, _ := s.current()
			if cert == nil {
				return &tls.Certificate{}, nil // none: the server decides
			}
			return cert, nil
		},
	}
}

// For returns cfg for dialing addr: its ServerName, when empty, is addr's host.
func For(cfg *tls.Config, addr string) *tls.Config {
	if cfg.ServerName != "" {
		return cfg
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	c := cfg.Clone()
	c.ServerName = host
	return c
}

// ParseVersion reads "1.2" or "1.3" ("" is 1.2).
func ParseVersion(v string) (uint16, error) {
	switch v {
	case "", "1.2":
		return tls.VersionTLS12, nil
	case "1.3":
		return tls.VersionTLS13, nil
	}
	return 0, fmt.Errorf("TLS version %q: want 1.2 or 1.3", v)
}

// ParseCiphers reads cipher suite names as Go and IANA spell them
// (TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256); insecure suites are refused.
func ParseCiphers(names []string) ([]uint16, error) {
	var out []uint16
	for _, n := range names {
		i := slices.IndexFunc(tls.CipherSuites(), func(c *tls.CipherSuite) bool { return strings.EqualFold(c.Name, n) })
		if i < 0 {
			return nil, fmt.Errorf("cipher suite %q: unknown or insecure (known: %s)", n, cipherNames())
		}
		out = append(out, tls.CipherSuites()[i].ID)
	}
	return out, nil
}

func cipherNames() string {
	var names []string
	for _, c := range tls.CipherSuites() {
		names = append(names, c.Name)
	}
	return strings.Join(names, ", ")
}

// Explain turns a TLS handshake error into what an operator should check.
func Explain(err error) string {
	msg := err.Error()
	for _, c := range []struct{ sub, why string }{
		{"first record does not look like a TLS handshake", "a plain (non-TLS) client on a TLS port"},
		{"client didn't provide a certificate", "mutual TLS: the client presented no certificate"},
		{"certificate has expired", "a certificate has expired or is not yet valid"},
		{"certificate signed by unknown authority", "the certificate is signed by a CA that is not trusted here"},
		{"unknown certificate authority", "the peer does not trust our certificate's CA"},
		{"bad certificate", "the peer refused our certificate"},
		{"certificate is valid for", "the certificate does not name this server"},
		{"no cipher suite supported", "no cipher suite in common"},
		{"protocol version not supported", "no TLS version in common"},
	} {
		if strings.Contains(msg, c.sub) {
			return c.why
		}
	}
	return "TLS handshake failed"
}
