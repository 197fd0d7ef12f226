//go:build linux

package proxy

import (
	"errors"
	"io"
	"net"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/zkgate/zkgate/health"
	"github.com/zkgate/zkgate/internal/zktest"
	"github.com/zkgate/zkgate/jute"
)

// lobbyServer serves on loopback in front of one member that refuses connections.
func lobbyServer(t *testing.T, handshake time.Duration) (*Server, string, *zktest.Buffer) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	view := &health.View{Members: []health.MemberState{{Address: "127.0.0.1:1", Status: health.StatusServing, Mode: "leader", Serving: true}},
		Leader: "127.0.0.1:1", Quorum: true, At: time.Now()}
	logs := &zktest.Buffer{}
	s := NewServer(Config{HandshakeTimeout: handshake}, staticView{view}, zerolog.New(logs))
	s.maint.Do(s.start) // before the test reads s.lobby
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	t.Cleanup(func() {
		s.Close()
		if err := <-served; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return s, ln.Addr().String(), logs
}

func (lb *lobby) count() int {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	return len(lb.waiting)
}

func dialSend(t *testing.T, addr string, b []byte) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
	return c
}

// closedWithin reads until the peer closes (a reset too: closing a socket with unread
// bytes sends one), failing the test after d.
func closedWithin(t *testing.T, c net.Conn, d time.Duration) []byte {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(d))
	b, err := io.ReadAll(c)
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("not closed within %v: %v", d, err)
	}
	return b
}

// Connections that send part of a first request wait without a goroutine each, and go on
// to their handshake once the rest arrives, however it is split.
func TestLobbyHoldsStalledConnections(t *testing.T) {
	s, addr, logs := lobbyServer(t, time.Minute)
	before := runtime.NumGoroutine()
	const n = 200
	for range n {
		dialSend(t, addr, []byte{0, 0})
	}
	zktest.WaitFor(t, 10*time.Second, "every stalled connection in the lobby", func() bool { return s.lobby.count() == n })
	if g := runtime.NumGoroutine(); g > before+n/4 {
		t.Fatalf("%d goroutines for %d stalled connections (%d before)", g, n, before)
	}

	// A four-letter word in two pieces.
	ruok := dialSend(t, addr, []byte("ru"))
	zktest.WaitFor(t, 10*time.Second, "the split ruok in the lobby", func() bool { return s.lobby.count() == n+1 })
	ruok.Write([]byte("ok"))
	if got := closedWithin(t, ruok, 10*time.Second); string(got) != "imok" {
		t.Fatalf("ruok in two pieces: %q", got)
	}

	// A ConnectRequest in three pieces: the length, part of it, the rest. Whole, it reaches
	// routing (whose only member refuses it), not a read error.
	req := jute.AppendFrame(nil, &jute.ConnectRequest{TimeOut: 4000, Passwd: make([]byte, 16)})
	c := dialSend(t, addr, req[:4])
	zktest.WaitFor(t, 10*time.Second, "the length in the lobby", func() bool { return s.lobby.count() == n+1 })
	c.Write(req[4:10])
	c.Write(req[10:])
	closedWithin(t, c, 10*time.Second)
	line := waitLine(t, logs, "refused client")
	if !strings.Contains(line, "no member can take the session") {
		t.Fatalf("the split ConnectRequest was not read whole: %s", line)
	}
	if s.lobby.count() != n {
		t.Fatalf("%d connections in the lobby, want the %d stalled ones", s.lobby.count(), n)
	}
}

// A connection that never completes its first request is refused at its handshake
// deadline, counted from accept, with the usual log line.
func TestLobbyHandshakeDeadline(t *testing.T) {
	s, addr, logs := lobbyServer(t, 300*time.Millisecond)
	c := dialSend(t, addr, []byte{0, 0, 0})
	start := time.Now()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadAll(c); err != nil {
		t.Fatalf("want a clean close (FIN: zkgate reads what was sent before closing), got %v", err)
	}
	if took := time.Since(start); took < 250*time.Millisecond {
		t.Fatalf("closed after %v, before the 300ms handshake timeout", took)
	}
	if line := waitLine(t, logs, "refused client"); !strings.Contains(line, "timeout") {
		t.Fatalf("refusal: %s", line)
	}
	if s.lobby.count() != 0 {
		t.Fatalf("%d connections left in the lobby", s.lobby.count())
	}
}

// Close ends the connections waiting in the lobby and returns.
func TestLobbyClose(t *testing.T) {
	s, addr, _ := lobbyServer(t, time.Hour)
	var cs []net.Conn
	for range 20 {
		cs = append(cs, dialSend(t, addr, []byte{0}))
	}
	zktest.WaitFor(t, 10*time.Second, "the connections in the lobby", func() bool { return s.lobby.count() == 20 })
	s.Close()
	for _, c := range cs {
		closedWithin(t, c, 10*time.Second)
	}
}

// waitLine waits for a log line containing s and returns it.
func waitLine(t *testing.T, logs *zktest.Buffer, s string) string {
	t.Helper()
	var line string
	zktest.WaitFor(t, 10*time.Second, "log line "+s, func() bool {
		for _, l := range strings.Split(logs.String(), "\n") {
			if strings.Contains(l, s) {
				line = l
				return true
			}
		}
		return false
	})
	return line
}
