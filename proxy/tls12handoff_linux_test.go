//go:build linux

package proxy

import (
	"crypto/tls"
	"errors"
	"strings"
	"testing"
)

// TLS 1.2 hand-offs against crypto/tls beyond the ones TestTLSHandoffServer and
// TestTLSHandoffClient run for every version: renegotiation after the hand-off, and a
// resumed session.

// A handshake record after a TLS 1.2 hand-off, authentic (sealed with the peer's keys,
// as crypto/tls starts no renegotiation itself): a ClientHello from a client, a
// HelloRequest from a member. Either ends the connection, the data before it delivered.
func TestTLS12HandoffRenegotiation(t *testing.T) {
	for _, c := range []struct {
		name string
		msg  []byte
	}{
		{"ClientHello from a client", append([]byte{hsClientHello, 0, 0, 40, 3, 3}, make([]byte, 38)...)},
		{"HelloRequest from a member", []byte{0, 0, 0, 0}},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := tlsPair(t, nil, tls12With(tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256), true)
			e.cli.Write([]byte("hi"))
			readString(t, e.srv, "hi")
			e.srv.Write([]byte("ho"))
			readString(t, e.cli, "ho")
			srvP, err := planTLS(e.srv)
			if err != nil {
				t.Fatal(err)
			}
			cliP, err := planTLS(e.cli)
			if err != nil {
				t.Fatal(err)
			}
			// zkgate's side takes the connection; the other side's keys seal the message.
			zk, peer, peerConn := srvP, cliP.rec, e.cliW.Conn
			if strings.Contains(c.name, "member") {
				zk, peer, peerConn = cliP, srvP.rec, e.srvW.Conn
			}
			h, err := zk.take()
			if err != nil {
				t.Fatal(err)
			}
			msg := peer.seal(nil, []byte("before"))
			peerConn.Write(peer.sealOne12(msg, recHandshake, c.msg))
			data, err := readRecords(t, h, 1<<20, 4096)
			if !errors.Is(err, errTLSRenegotiation) || string(data) != "before" {
				t.Fatalf("%q, %v; want the data, then %v", data, err, errTLSRenegotiation)
			}
		})
	}
}

// A resumed TLS 1.2 session (a ticket): crypto/tls logs no master secret for it, so the
// connection stays with crypto/tls (errTLSSecrets) and works as before.
func TestTLS12HandoffResumed(t *testing.T) {
	cache := tls.NewLRUClientSessionCache(4)
	srvMod := func(c *tls.Config) { c.SetSessionTicketKeys([][32]byte{{1, 2, 3}}) }
	cliMod := func(c *tls.Config) {
		tls12With(tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256)(c)
		// Each pair has its own certificate: the resumed one is not checked again.
		c.ClientSessionCache, c.InsecureSkipVerify = cache, true
	}
	first := tlsPair(t, srvMod, cliMod, false)
	if _, err := planTLS(first.srv); err != nil || first.srv.ConnectionState().DidResume {
		t.Fatalf("the first connection: %v (resumed %v)", err, first.srv.ConnectionState().DidResume)
	}
	e := tlsPair(t, srvMod, cliMod, false)
	if !e.srv.ConnectionState().DidResume {
		t.Fatal("the second connection did not resume")
	}
	if _, err := planTLS(e.srv); !errors.Is(err, errTLSSecrets) {
		t.Fatalf("plan: %v, want %v", err, errTLSSecrets)
	}
	settleTLS(e.srv)
	e.cli.Write([]byte("still crypto/tls's"))
	readString(t, e.srv, "still crypto/tls's")
}
