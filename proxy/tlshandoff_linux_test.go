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

// The server's side taken from crypto/tls after a first exchange, with data crypto/tls
// decrypted and nobody read, and a record it did not take: nothing is lost or repeated,
// the sequence numbers fit both ways (crypto/tls's client checks ours), large writes
// span records, partial reads keep partial records, and close_notify ends the stream.
func TestTLSHandoffServer(t *testing.T) {
	e := tlsPair(t, nil, nil, false)
	first, second := payload(100, 1), payload(200, 2)
	e.cli.Write(first)
	e.cli.Write(second)
	// Both records in the server's socket: recConn reads them together, gives crypto/tls
	// the first only.
	waitInq(t, e.srvW.Conn, 2*(recordHeaderLen+1+16)+len(first)+len(second))
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
	h, err := p.take()
	if err != nil {
		t.Fatal(err)
	}
	if len(h.plain) != 70 || len(h.raw) != recordHeaderLen+len(second)+1+16 {
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
	go e.cli.Write(big)
	if got, err := readRecords(t, h, len(big), 1, 9, 4093, 17000); err != nil || !bytes.Equal(got, big) {
		t.Fatalf("%d bytes back, %v", len(got), err)
	}
	e.cli.Close()
	if _, err := readRecords(t, h, 1, 512); !errors.Is(err, errCloseNotify) {
		t.Fatalf("after the client's Close: %v", err)
	}
}

// A member connection (zkgate the TLS client) handed over: the server's session ticket
// is counted or ignored wherever it is, and data goes both ways.
func TestTLSHandoffClient(t *testing.T) {
	e := tlsPair(t, nil, nil, true)
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

// What does not fit stays with crypto/tls, and works as before: TLS 1.2, and more
// records before the hand-off than recConn keeps.
func TestTLSHandoffFallback(t *testing.T) {
	for _, c := range []struct {
		name   string
		cliMod func(*tls.Config)
		before int
		want   error
	}{
		{"TLS 1.2", func(c *tls.Config) { c.MaxVersion = tls.VersionTLS12 }, 10, errTLSVersion},
		{"copy over its bound", nil, recCopyMax + 1, errTLSCopy},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := tlsPair(t, nil, c.cliMod, false)
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
