package config

import (
	"errors"

	"github.com/zkgate/zkgate/certs"
)

// TLS is a client-side TLS listener. The files are PEM; they are reloaded when they
// change (looked at once a second at most, as clients connect), and on SIGHUP.
type TLS struct {
	Listen     string   `yaml:"listen"`      // "" = no TLS listener
	Cert       string   `yaml:"cert"`        // the server certificate (chain)
	Key        string   `yaml:"key"`         // its private key
	ClientCA   string   `yaml:"client_ca"`   // when set, clients must present a certificate it signed (mutual TLS)
	MinVersion string   `yaml:"min_version"` // 1.2 or 1.3
	Ciphers    []string `yaml:"ciphers"`     // TLS 1.2 suites by name; empty = Go's defaults
}

// MemberTLS is how zkgate reaches members over TLS.
type MemberTLS struct {
	Enabled    bool   `yaml:"enabled"`
	CA         string `yaml:"ca"`          // verifies the members' certificates ("" = the system's roots)
	Cert       string `yaml:"cert"`        // zkgate's client certificate, for ssl.clientAuth=need
	Key        string `yaml:"key"`         // and its key
	ServerName string `yaml:"server_name"` // the name checked in members' certificates; "" = each member's host
}

func (t TLS) validate() error {
	if t.Listen == "" {
		return nil
	}
	if t.Cert == "" || t.Key == "" {
		return errors.New("a TLS listener needs cert and key")
	}
	if _, err := certs.ParseVersion(t.MinVersion); err != nil {
		return err
	}
	_, err := certs.ParseCiphers(t.Ciphers)
	return err
}
