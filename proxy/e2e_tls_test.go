package proxy_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/zkgate/zkgate/certs"
	"github.com/zkgate/zkgate/health"
	"github.com/zkgate/zkgate/internal/zktest"
)

// tlsEnsemble is a 3-member ensemble with a secureClientPort on each member, requiring
// client certificates there (mutual TLS), and the PKI its certificates come from.
func tlsEnsemble(t *testing.T) (*zktest.Ensemble, *zktest.PKI) {
	t.Helper()
	pki := zktest.NewPKI(t)
	server := pki.Issue(t, "zookeeper", false, false)
	ens := zktest.Start(t, zktest.Config{Members: 3, SecureClientPort: true, Extra: pki.ZooKeeperTLS(server, "need")})
	return ens, pki
}

func memberDialer(t *testing.T, pki *zktest.PKI, c zktest.Cert) health.Dialer {
	src, err := certs.Load(certs.Files{Cert: c.Crt, Key: c.Key, CA: pki.CA}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	cfg := src.ClientConfig("")
	return func(ctx context.Context, addr string) (net.Conn, error) {
		d := tls.Dialer{Config: certs.For(cfg, addr)}
		return d.DialContext(ctx, "tcp", addr)
	}
}

func TestTLSMemberSmoke(t *testing.T) {
	ens, pki := tlsEnsemble(t)
	dial := memberDialer(t, pki, pki.Issue(t, "zkgate-member-client", false, false))
	out, err := health.AskWith(context.Background(), dial, ens.Member(1).SecureAddr, "srvr", 5*time.Second)
	t.Logf("srvr over TLS: %q %v", out, err)
	_ = x509.NewCertPool
	_ = os.Getenv
}
