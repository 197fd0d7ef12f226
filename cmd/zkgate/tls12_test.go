package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"
)

// ZooKeeper 3.8 with its TLS defaults: the members serve TLSv1.2 alone (its default
// protocol and cipher list), and zkCli with no TLS settings but the certificates speaks
// TLSv1.2 (its default SSLContext protocol). Sessions run on the relay loops: a plain
// client with zkgate reaching the members over TLS 1.2, then a zkCli over TLS 1.2 with
// the members over TLS 1.2 too.
func TestTLSZooKeeperDefaults(t *testing.T) {
	rig := newTLSRigWith(t, true)
	logs := captureLogs(t)
	r := serveForTest(t, rig.ens, rig.withTLS(true))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("zkgate's log:\n%s", logs.String())
		}
	})

	// What a member speaks to a client that offers TLS 1.3 too, as zkgate's does.
	conn, err := tls.Dial("tcp", rig.ens.SecureAddrs()[0], rig.clientTLS(rig.member))
	if err != nil {
		t.Fatal(err)
	}
	st := conn.ConnectionState()
	conn.Close()
	if st.Version != tls.VersionTLS12 {
		t.Fatalf("a member with ZooKeeper's defaults negotiated %s, want TLS 1.2", tls.VersionName(st.Version))
	}
	t.Logf("members: %s %s", tls.VersionName(st.Version), tls.CipherSuiteName(st.CipherSuite))

	if v := javaHelloVersions(t, rig); slices.Contains(v, tls.VersionTLS13) {
		t.Fatalf("zkCli with ZooKeeper's defaults offers TLS 1.3 (%x): the test would not show TLS 1.2", v)
	}

	for i, secure := range []bool{false, true} {
		addr := r.Clients["ops"]
		if secure {
			addr = r.TLSClients["ops"]
		}
		crudZkCli(t, rig, addr, secure, fmt.Sprintf("/tls-zkdefaults-%v-%d", secure, time.Now().UnixNano()))
		if fast, fallback := tlsSessions(t, r.Admin); fast != i+1 || fallback != 0 {
			t.Errorf("client TLS %v: TLS sessions %d fast, %d fallback; want %d and 0", secure, fast, fallback, i+1)
		}
	}
}

// javaHelloVersions is the TLS versions zkCli offers with the rig's flags, read from its
// ClientHello by a listener that refuses it.
func javaHelloVersions(t *testing.T, rig *tlsRig) []uint16 {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hellos := make(chan []uint16, 1)
	cfg := &tls.Config{GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		select {
		case hellos <- h.SupportedVersions:
		default:
		}
		return nil, errors.New("refused: the test reads the ClientHello only")
	}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.SetDeadline(time.Now().Add(10 * time.Second))
			tls.Server(c, cfg).Handshake()
			c.Close()
		}
	}()
	defer func() {
		ln.Close()
		<-done
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := rig.ens.Install().JavaCLIWith(ctx, rig.javaTLSFlags(), ln.Addr().String())
	cmd.Stdin = strings.NewReader("ls /\n")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cancel()
		cmd.Wait()
	}()
	select {
	case v := <-hellos:
		return v
	case <-ctx.Done():
		t.Fatal("zkCli sent no ClientHello")
		return nil
	}
}
