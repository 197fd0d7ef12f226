//go:build linux

package proxy

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// tlsEnds is a TLS connection over loopback TCP, handshake done: srv over a recConn as
// ServeTLS makes it, cli a crypto/tls client, over a recConn too when asked (as dialTLS
// makes a member connection), so that a test can seal records in its name.
type tlsEnds struct {
	srv, cli   *tls.Conn
	srvW, cliW *recConn
}

func tlsPair(t testing.TB, srvMod, cliMod func(*tls.Config), watchClient bool) *tlsEnds {
	t.Helper()
	cert, pool := tlsTestCerts(t)
	srvCfg := &tls.Config{Certificates: []tls.Certificate{cert}}
	cliCfg := &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
	if srvMod != nil {
		srvMod(srvCfg)
	}
	if cliMod != nil {
		cliMod(cliCfg)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	e := &tlsEnds{}
	var under net.Conn = raw
	if watchClient {
		e.cliW = newRecConn(raw, true)
		cliCfg.KeyLogWriter, under = &e.cliW.keys, e.cliW
	}
	e.cli = tls.Client(under, cliCfg)
	sraw := <-accepted
	if sraw == nil {
		t.Fatal("accept failed")
	}
	e.srvW = newRecConn(sraw, false)
	e.srv = tls.Server(e.srvW, keyLogConfig(srvCfg))
	t.Cleanup(func() { raw.Close(); sraw.Close() })
	raw.SetDeadline(time.Now().Add(10 * time.Second))
	sraw.SetDeadline(time.Now().Add(10 * time.Second))
	done := make(chan error, 1)
	go func() { done <- e.cli.Handshake() }()
	if err := e.srv.Handshake(); err != nil {
		t.Fatalf("server handshake: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("client handshake: %v", err)
	}
	return e
}

// waitInq waits until c's socket has n bytes or more to read.
func waitInq(t testing.TB, c net.Conn, n int) {
	t.Helper()
	raw, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		var got int
		raw.Control(func(fd uintptr) { got, _ = unix.IoctlGetInt(int(fd), unix.SIOCINQ) })
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d bytes in the socket, want %d", got, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// readRecords reads what the socket under a handoff has and opens it, until want bytes
// of data came or the stream ends; sizes are the reads' sizes, cycled (partial records
// kept between them).
func readRecords(t testing.TB, h *tlsHandoff, want int, sizes ...int) ([]byte, error) {
	t.Helper()
	var out, part []byte
	for i := 0; len(out) < want; i++ {
		buf := make([]byte, sizes[i%len(sizes)])
		h.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := h.nc.Read(buf)
		if err != nil {
			return out, err
		}
		stream := append(part, buf[:n]...)
		data, used, err := h.rec.open(stream)
		out = append(out, data...)
		if err != nil {
			return out, err
		}
		part = bytes.Clone(stream[used:])
	}
	return out, nil
}

func payload(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i*7)
	}
	return b
}

// handoffCases are the TLS versions and suite families a loop takes over, as the client's
// config asks for them (crypto/tls forced to one TLS 1.2 suite; the test certificate is
// ECDSA).
var handoffCases = []struct {
	name  string
	mod   func(*tls.Config)
	suite uint16 // 0: TLS 1.3, whichever suite
}{
	{"TLS 1.3", nil, 0},
	{"TLS 1.2 AES-128-GCM", tls12With(tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256), tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256},
	{"TLS 1.2 AES-256-GCM", tls12With(tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384), tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384},
	{"TLS 1.2 ChaCha20", tls12With(tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256), tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256},
}

func tls12With(id uint16) func(*tls.Config) {
	return func(c *tls.Config) { c.MaxVersion, c.CipherSuites = tls.VersionTLS12, []uint16{id} }
}

// checkNegotiated fails t unless tc runs the case's version and suite, and returns what
// each record of the suite adds to its data.
func checkNegotiated(t *testing.T, tc *tls.Conn, suite uint16) int {
	t.Helper()
	st := tc.ConnectionState()
	switch {
	case suite == 0 && st.Version != tls.VersionTLS13:
		t.Fatalf("%s negotiated, want TLS 1.3", tls.VersionName(st.Version))
	case suite != 0 && (st.Version != tls.VersionTLS12 || st.CipherSuite != suite):
		t.Fatalf("%s %s negotiated, want TLS 1.2 %s", tls.VersionName(st.Version), tls.CipherSuiteName(st.CipherSuite), tls.CipherSuiteName(suite))
	case suite == 0:
		return 1 + 16
	}
	return suiteByID(suite).explicit + 16
}

// checkMaster12 checks, for TLS 1.2, the key log's master secret and the randoms the
// hand-off finds against crypto/tls's exported keying material (RFC 5705: the PRF of the
// master secret over client random + server random). crypto/tls exports it only for an
// extended master secret (RFC 7627): that is the one the key log gave.
func checkMaster12(t *testing.T, tc *tls.Conn, w *recConn, suite uint16) {
	t.Helper()
	if suite == 0 {
		return
	}
	st := tc.ConnectionState()
	ekm, err := st.ExportKeyingMaterial("zkgate test", nil, 32)
	if err != nil {
		t.Fatalf("no keying material (no extended master secret?): %v", err)
	}
	fromClient, fromServer := w.sent, w.got
	if !w.client {
		fromClient, fromServer = fromServer, fromClient
	}
	cr, err1 := helloRandom(fromClient, hsClientHello)
	sr, err2 := helloRandom(fromServer, hsServerHello)
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	w.keys.mu.Lock()
	master := bytes.Clone(w.keys.master)
	w.keys.mu.Unlock()
	if got := prf12(suiteByID(suite).hash, master, "zkgate test", append(bytes.Clone(cr), sr...), 32); !bytes.Equal(got, ekm) {
		t.Errorf("PRF(master secret, randoms) differs from crypto/tls's keying material")
	}
}

// The server's side taken from crypto/tls after a first exchange, with data crypto/tls
// decrypted and nobody read, and a record it did not take: nothing is lost or repeated,
// the sequence numbers fit both ways (crypto/tls's client checks ours), large writes
// span records, partial reads keep partial records, and close_notify ends the stream.
// TLS 1.3 and TLS 1.2's AEAD suite families.
func TestTLSHandoffServer(t *testing.T) {
	for _, c := range handoffCases {
		t.Run(c.name, func(t *testing.T) { testHandoffServer(t, c.mod, c.suite) })
	}
}

func testHandoffServer(t *testing.T, mod func(*tls.Config), suite uint16) {
	e := tlsPair(t, nil, mod, false)
	ov := checkNegotiated(t, e.srv, suite)
	checkMaster12(t, e.srv, e.srvW, suite)
	first, second := payload(100, 1), payload(200, 2)
	e.cli.Write(first)
	e.cli.Write(second)
	// Both records in the server's socket: recConn reads them together, gives crypto/tls
	// the first only.
	waitInq(t, e.srvW.Conn, 2*(recordHeaderLen+ov)+len(first)+len(second))
	head := make([]byte, 30)
	if _, err := io.ReadFull(e.srv, head); err != nil {
		t.Fatal(err)
	}
	if _, err := e.srv.Write([]byte("connect response")); err != nil {
		t.Fatal(err)
	}
	p, err := planTLS(e.srv)
	if err != nil {
		t.Fatal(err)
	}
	if suite != 0 && (p.rec.in.seq != 2 || p.rec.out.seq != 2) {
		// The peer's Finished and one record of data each way.
		t.Errorf("sequence numbers %d in, %d out; want 2 and 2", p.rec.in.seq, p.rec.out.seq)
	}
	h, err := p.take()
	if err != nil {
		t.Fatal(err)
	}
	if len(h.plain) != 70 || len(h.raw) != recordHeaderLen+len(second)+ov {
		t.Errorf("handed over %d bytes of data and %d raw, want 70 and one record", len(h.plain), len(h.raw))
	}
	if _, err := e.srv.Write([]byte("late")); err == nil {
		t.Error("crypto/tls wrote after the hand-off")
	}
	rest, _, err := h.rec.open(bytes.Clone(h.raw))
	if err != nil {
		t.Fatal(err)
	}
	if got := append(append(head, h.plain...), rest...); !bytes.Equal(got, append(first, second...)) {
		t.Fatalf("the stream handed over differs (%d bytes)", len(got))
	}

	got := make([]byte, len("connect response"))
	if _, err := io.ReadFull(e.cli, got); err != nil || string(got) != "connect response" {
		t.Fatalf("%q %v", got, err)
	}
	big := payload(100<<10, 3)
	if _, err := h.nc.Write(h.rec.seal(nil, big)); err != nil {
		t.Fatal(err)
	}
	got = make([]byte, len(big))
	if _, err := io.ReadFull(e.cli, got); err != nil || !bytes.Equal(got, big) {
		t.Fatalf("the client read %v", err)
	}
	wrote := make(chan error, 1)
	go func() { _, err := e.cli.Write(big); wrote <- err }()
	if got, err := readRecords(t, h, len(big), 1, 9, 4093, 17000); err != nil || !bytes.Equal(got, big) {
		t.Fatalf("%d bytes back, %v", len(got), err)
	}
	// crypto/tls's Close sends no close_notify while a Write is still returning (it only
	// closes the socket), so the Write must be over first.
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	e.cli.Close()
	if _, err := readRecords(t, h, 1, 512); !errors.Is(err, errCloseNotify) {
		t.Fatalf("after the client's Close: %v", err)
	}
}

// A member connection (zkgate the TLS client) handed over: the server's session ticket
// (TLS 1.3: after the handshake, encrypted; TLS 1.2: before its ChangeCipherSpec, in the
// clear) is counted or ignored wherever it is, and data goes both ways; then zkgate's
// side closes with a close_notify crypto/tls takes as the end.
func TestTLSHandoffClient(t *testing.T) {
	for _, c := range handoffCases {
		t.Run(c.name, func(t *testing.T) {
			e := tlsPair(t, nil, c.mod, true)
			checkNegotiated(t, e.cli, c.suite)
			checkMaster12(t, e.cli, e.cliW, c.suite)
			e.cli.Write([]byte("connect request"))
			readString(t, e.srv, "connect request")
			e.srv.Write([]byte("connect response"))
			readString(t, e.cli, "connect response")
			h, err := handoffTLS(e.cli)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := h.nc.Write(h.rec.seal(nil, []byte("request"))); err != nil {
				t.Fatal(err)
			}
			readString(t, e.srv, "request")
			e.srv.Write([]byte("reply"))
			if data, err := readRecords(t, h, 5, 3); err != nil || string(data) != "reply" {
				t.Fatalf("%q %v", data, err)
			}
			h.nc.Write(h.rec.closeNotify(nil))
			if n, err := e.srv.Read(make([]byte, 1)); err != io.EOF {
				t.Fatalf("after close_notify crypto/tls read %d, %v", n, err)
			}
		})
	}
}

// handedPair is tlsPair with a first exchange, then the server's side handed over.
func handedPair(t *testing.T, watchClient bool) (*tlsEnds, *tlsHandoff) {
	t.Helper()
	e := tlsPair(t, nil, nil, watchClient)
	e.cli.Write([]byte("hi"))
	io.ReadFull(e.srv, make([]byte, 2))
	e.srv.Write([]byte("ho"))
	io.ReadFull(e.cli, make([]byte, 2))
	h, err := handoffTLS(e.srv)
	if err != nil {
		t.Fatal(err)
	}
	return e, h
}

func readString(t *testing.T, r io.Reader, want string) {
	t.Helper()
	got := make([]byte, len(want))
	if _, err := io.ReadFull(r, got); err != nil || string(got) != want {
		t.Fatalf("read %q, %v; want %q", got, err, want)
	}
}

// KeyUpdate both ways against crypto/tls: the client asks for one (sealed by the test,
// as crypto/tls starts none) and zkgate's side answers it; zkgate's side asks for one
// and crypto/tls answers; zkgate's side updates its own key past rekeyAt.
func TestTLSHandoffKeyUpdate(t *testing.T) {
	t.Run("the client asks", func(t *testing.T) {
		e, h := handedPair(t, true)
		peer, err := planTLS(e.cli) // the client's keys as they stand, to seal in its name
		if err != nil {
			t.Fatal(err)
		}
		pr := peer.rec
		msg := pr.sealOne(nil, recHandshake, []byte{hsKeyUpdate, 0, 0, 1, 1})
		pr.out.update()
		e.cliW.Conn.Write(pr.seal(msg, []byte("after the client's update")))
		data, err := readRecords(t, h, len("after the client's update"), 4096)
		if err != nil || string(data) != "after the client's update" {
			t.Fatalf("%q %v", data, err)
		}
		if len(h.rec.pend) == 0 {
			t.Fatal("the requested KeyUpdate was not answered")
		}
		h.nc.Write(h.rec.seal(h.rec.pend, []byte("under the server's next key")))
		readString(t, e.cli, "under the server's next key") // crypto/tls takes the update
	})
	t.Run("zkgate asks", func(t *testing.T) {
		e, h := handedPair(t, false)
		ask := h.rec.sealOne(nil, recHandshake, []byte{hsKeyUpdate, 0, 0, 1, 1})
		h.rec.out.update()
		h.nc.Write(h.rec.seal(ask, []byte("ask")))
		readString(t, e.cli, "ask") // crypto/tls answers with its own KeyUpdate
		e.cli.Write([]byte("under the client's next key"))
		if data, err := readRecords(t, h, len("under the client's next key"), 7); err != nil || string(data) != "under the client's next key" {
			t.Fatalf("%q %v", data, err)
		}
		if len(h.rec.pend) != 0 {
			t.Error("an update_not_requested was answered")
		}
	})
	t.Run("zkgate rekeys", func(t *testing.T) {
		e, h := handedPair(t, false)
		h.rec.rekeyAt = h.rec.out.seq + 3
		big := payload(10*maxPlaintext, 5)
		go h.nc.Write(h.rec.seal(nil, big))
		got := make([]byte, len(big))
		if _, err := io.ReadFull(e.cli, got); err != nil || !bytes.Equal(got, big) {
			t.Fatalf("crypto/tls read %v", err)
		}
		if h.rec.out.seq >= 10 {
			t.Errorf("sequence %d: no update", h.rec.out.seq)
		}
	})
}

// What does not fit stays with crypto/tls, and works as before: a TLS 1.2 CBC suite
// (crypto/tls still takes one listed explicitly), TLS 1.1, and more records before the
// hand-off than recConn keeps, in either version.
func TestTLSHandoffFallback(t *testing.T) {
	for _, c := range []struct {
		name           string
		srvMod, cliMod func(*tls.Config)
		before         int
		want           error
	}{
		{"TLS 1.2 CBC", nil, tls12With(tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA), 10, errTLSSuite},
		{"TLS 1.1", func(c *tls.Config) { c.MinVersion = tls.VersionTLS10 },
			func(c *tls.Config) { c.MinVersion, c.MaxVersion = tls.VersionTLS11, tls.VersionTLS11 }, 10, errTLSVersion},
		{"copy over its bound", nil, nil, recCopyMax + 1, errTLSCopy},
		{"TLS 1.2 copy over its bound", nil, tls12With(tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256), recCopyMax + 1, errTLSCopy},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := tlsPair(t, c.srvMod, c.cliMod, false)
			go e.cli.Write(payload(c.before, 1))
			io.ReadFull(e.srv, make([]byte, c.before))
			if _, err := planTLS(e.srv); !errors.Is(err, c.want) {
				t.Fatalf("plan: %v, want %v", err, c.want)
			}
			settleTLS(e.srv)
			e.cli.Write([]byte("still crypto/tls's"))
			readString(t, e.srv, "still crypto/tls's")
			e.srv.Write([]byte("both ways"))
			readString(t, e.cli, "both ways")
		})
	}
}
