//go:build linux

package proxy

import (
	"crypto/tls"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/zkgate/zkgate/health"
	"github.com/zkgate/zkgate/internal/zktest"
	"github.com/zkgate/zkgate/jute"
)

// loopTLS is a session on a relay loop whose client (or member) connection was taken
// from crypto/tls; the member (or client) is a socket pair's other end.
type loopTLS struct {
	s    *Server
	l    *loop
	c    *conn
	e    *tlsEnds
	peer net.Conn // the plain side's far end
	logs *zktest.Buffer
}

// startLoopTLS hands over the TLS pair's server side as the session's client connection,
// or, with member, the pair's client side as its member connection.
func startLoopTLS(t *testing.T, member bool) *loopTLS { return startLoopTLSWith(t, member, nil) }

// startLoopTLSWith is startLoopTLS with the TLS client's config changed by cliMod.
func startLoopTLSWith(t *testing.T, member bool, cliMod func(*tls.Config)) *loopTLS {
	t.Helper()
	logs := &zktest.Buffer{}
	view := &health.View{Members: []health.MemberState{{Address: "m1", Status: health.StatusServing, Mode: "leader", Serving: true}},
		Leader: "m1", Quorum: true, At: time.Now()}
	s := NewServer(Config{Loops: 1}, staticView{view}, zerolog.New(logs).Level(zerolog.DebugLevel))
	s.maint.Do(s.start)
	if s.lerr != nil {
		t.Fatal(s.lerr)
	}
	t.Cleanup(func() { s.Close() })
	lt := &loopTLS{s: s, l: s.loops[0], c: placed(s), logs: logs}
	lt.e = tlsPair(t, nil, cliMod, true)
	lt.e.cli.Write([]byte("hi"))
	readString(t, lt.e.srv, "hi")
	lt.e.srv.Write([]byte("ho"))
	readString(t, lt.e.cli, "ho")
	taken := lt.e.srv
	if member {
		taken = lt.e.cli
	}
	h, err := handoffTLS(taken)
	if err != nil {
		t.Fatal(err)
	}
	tfd, err := detach(h.nc)
	if err != nil {
		t.Fatal(err)
	}
	pfd, far := socketPair(t)
	f := os.NewFile(uintptr(far), "peer")
	if lt.peer, err = net.FileConn(f); err != nil {
		t.Fatal(err)
	}
	f.Close()
	t.Cleanup(func() { lt.peer.Close() })
	lt.peer.SetDeadline(time.Now().Add(10 * time.Second))
	cfd, mfd, ct, mt := tfd, pfd, h, (*tlsHandoff)(nil)
	if member {
		cfd, mfd, ct, mt = pfd, tfd, nil, h
	}
	lt.l.sessions.Add(1)
	if reason := lt.c.handOver(lt.l, func() bool { return lt.l.post(func() { lt.l.register(lt.c, cfd, mfd, nil, ct, mt) }) }); reason != "" {
		t.Fatal(reason)
	}
	return lt
}

// onLoop runs f on the loop and waits for it.
func (lt *loopTLS) onLoop(t *testing.T, f func()) {
	t.Helper()
	done := make(chan struct{})
	if !lt.l.post(func() { f(); close(done) }) {
		t.Fatal("loop stopped")
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the loop did not run the task")
	}
}

// waitLoop waits for cond, read on the loop.
func (lt *loopTLS) waitLoop(t *testing.T, what string, cond func() bool) {
	t.Helper()
	zktest.WaitFor(t, 10*time.Second, what, func() bool {
		var ok bool
		lt.onLoop(t, func() { ok = cond() })
		return ok
	})
}

func tlsGetData(xid int32) []byte {
	return jute.AppendFrame(nil, &jute.RequestHeader{Xid: xid, Type: jute.OpGetData}, &jute.GetDataRequest{Path: "/tls"})
}

func tlsGetDataReply(xid int32, value string) []byte {
	return jute.AppendFrame(nil, &jute.ReplyHeader{Xid: xid, Zxid: 7}, &jute.GetDataResponse{Data: []byte(value)})
}

func readFrame(t *testing.T, fr *jute.FrameReader) []byte {
	t.Helper()
	f, err := fr.Next()
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// A TLS client on a loop: requests (one split over reads mid-header and mid-body) reach
// the member, replies come back sealed, a KeyUpdate the client asks for is answered
// under the old key before the replies under the new one, and a corrupted record ends
// the session as a protocol error, logged with its reason.
func TestTLSLoopClient(t *testing.T) {
	lt := startLoopTLS(t, false)
	member := jute.NewFrameReader(lt.peer, 0)
	client := jute.NewFrameReader(lt.e.cli, 0)

	lt.e.cli.Write(tlsGetData(1)) // crypto/tls seals it
	if f := readFrame(t, member); string(f) != string(tlsGetData(1)) {
		t.Fatalf("the member got % x", f)
	}
	lt.peer.Write(tlsGetDataReply(1, "one"))
	if f := readFrame(t, client); string(f) != string(tlsGetDataReply(1, "one")) {
		t.Fatalf("the client got % x", f)
	}

	// From here the test seals the client's records itself.
	peer, err := planTLS(lt.e.cli)
	if err != nil {
		t.Fatal(err)
	}
	pr, raw := peer.rec, lt.e.cliW.Conn
	rec := pr.seal(nil, tlsGetData(2))
	prev := 0
	for _, cut := range []int{3, recordHeaderLen + 10, len(rec)} {
		raw.Write(rec[prev:cut])
		kept := cut
		if cut == len(rec) {
			kept = 0
		}
		lt.waitLoop(t, "the loop read the piece", func() bool { return lt.c.ce.tls != nil && len(lt.c.ce.tls.part) == kept })
		prev = cut
	}
	if f := readFrame(t, member); string(f) != string(tlsGetData(2)) {
		t.Fatalf("the member got % x", f)
	}
	lt.peer.Write(tlsGetDataReply(2, "two"))
	if f := readFrame(t, client); string(f) != string(tlsGetDataReply(2, "two")) {
		t.Fatalf("the client got % x", f)
	}

	ku := pr.sealOne(nil, recHandshake, []byte{hsKeyUpdate, 0, 0, 1, 1})
	pr.out.update()
	raw.Write(pr.seal(ku, tlsGetData(3)))
	if f := readFrame(t, member); string(f) != string(tlsGetData(3)) {
		t.Fatalf("the member got % x", f)
	}
	lt.peer.Write(tlsGetDataReply(3, "three"))
	if f := readFrame(t, client); string(f) != string(tlsGetDataReply(3, "three")) { // crypto/tls took the update
		t.Fatalf("the client got % x", f)
	}

	bad := pr.seal(nil, tlsGetData(4))
	bad[len(bad)-1] ^= 0xff
	raw.Write(bad)
	lt.waitLoop(t, "the session ended", func() bool { return lt.c.closed })
	zktest.WaitFor(t, 10*time.Second, "the ending logged", func() bool {
		return strings.Contains(lt.logs.String(), "session closed: protocol error")
	})
	if log := lt.logs.String(); !strings.Contains(log, "client TLS: bad TLS record: record 1 does not authenticate") {
		t.Errorf("the log lacks the reason:\n%s", log)
	}
}

// A member connection over TLS on a loop: requests sealed, replies opened, a
// NewSessionTicket after the hand-off ignored; a corrupted record from the member loses
// it (the session moves), with the reason.
func TestTLSLoopMember(t *testing.T) {
	lt := startLoopTLS(t, true)
	member := jute.NewFrameReader(lt.e.srv, 0)
	client := jute.NewFrameReader(lt.peer, 0)

	lt.peer.Write(tlsGetData(1))
	if f := readFrame(t, member); string(f) != string(tlsGetData(1)) {
		t.Fatalf("the member got % x", f)
	}
	lt.e.srv.Write(tlsGetDataReply(1, "one"))
	if f := readFrame(t, client); string(f) != string(tlsGetDataReply(1, "one")) {
		t.Fatalf("the client got % x", f)
	}

	peer, err := planTLS(lt.e.srv) // the member's keys, to seal in its name
	if err != nil {
		t.Fatal(err)
	}
	sr, raw := peer.rec, lt.e.srvW.Conn
	lt.peer.Write(tlsGetData(2))
	if f := readFrame(t, member); string(f) != string(tlsGetData(2)) {
		t.Fatalf("the member got % x", f)
	}
	ticket := append([]byte{hsNewSessionTicket, 0, 0, 200}, make([]byte, 200)...)
	raw.Write(sr.seal(sr.sealOne(nil, recHandshake, ticket), tlsGetDataReply(2, "two")))
	if f := readFrame(t, client); string(f) != string(tlsGetDataReply(2, "two")) {
		t.Fatalf("the client got % x", f)
	}

	bad := sr.seal(nil, tlsGetDataReply(3, "three"))
	bad[recordHeaderLen] ^= 1
	raw.Write(bad)
	lt.waitLoop(t, "the member lost", func() bool {
		return lt.c.closed || lt.c.r.moving() || lt.c.r.lost != ""
	})
	var why string
	lt.onLoop(t, func() { why = lt.c.r.lostWhy })
	if !strings.Contains(why, "member TLS: bad TLS record: record") {
		t.Errorf("lost the member for %q", why)
	}
}

// A client's close_notify ends its session as its end of stream.
func TestTLSLoopCloseNotify(t *testing.T) {
	lt := startLoopTLS(t, false)
	lt.e.cli.Close()
	lt.waitLoop(t, "the session ended", func() bool { return lt.c.closed })
	zktest.WaitFor(t, 10*time.Second, "the ending logged", func() bool {
		return strings.Contains(lt.logs.String(), `"side":"client","err":"EOF"`)
	})
}

// A TLS 1.2 client on a loop (AES-GCM): requests split over reads reach the member,
// replies come back sealed (crypto/tls opens them), and a ClientHello after the hand-off
// (a renegotiation) ends the session, logged with its reason.
func TestTLS12LoopClient(t *testing.T) {
	lt := startLoopTLSWith(t, false, tls12With(tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256))
	member := jute.NewFrameReader(lt.peer, 0)
	client := jute.NewFrameReader(lt.e.cli, 0)
	lt.e.cli.Write(tlsGetData(1))
	if f := readFrame(t, member); string(f) != string(tlsGetData(1)) {
		t.Fatalf("the member got % x", f)
	}
	lt.peer.Write(tlsGetDataReply(1, "one"))
	if f := readFrame(t, client); string(f) != string(tlsGetDataReply(1, "one")) {
		t.Fatalf("the client got % x", f)
	}

	peer, err := planTLS(lt.e.cli)
	if err != nil {
		t.Fatal(err)
	}
	pr, raw := peer.rec, lt.e.cliW.Conn
	rec := pr.seal(nil, tlsGetData(2))
	prev := 0
	for _, cut := range []int{3, recordHeaderLen + 5, recordHeaderLen + 12, len(rec)} {
		raw.Write(rec[prev:cut])
		kept := cut
		if cut == len(rec) {
			kept = 0
		}
		lt.waitLoop(t, "the loop read the piece", func() bool { return lt.c.ce.tls != nil && len(lt.c.ce.tls.part) == kept })
		prev = cut
	}
	if f := readFrame(t, member); string(f) != string(tlsGetData(2)) {
		t.Fatalf("the member got % x", f)
	}
	lt.peer.Write(tlsGetDataReply(2, "two"))
	if f := readFrame(t, client); string(f) != string(tlsGetDataReply(2, "two")) {
		t.Fatalf("the client got % x", f)
	}

	raw.Write(pr.sealOne12(nil, recHandshake, append([]byte{hsClientHello, 0, 0, 40, 3, 3}, make([]byte, 38)...)))
	lt.waitLoop(t, "the session ended", func() bool { return lt.c.closed })
	zktest.WaitFor(t, 10*time.Second, "the ending logged", func() bool {
		return strings.Contains(lt.logs.String(), "client TLS: TLS renegotiation, which zkgate does not do (handshake message type 1)")
	})
}

// A TLS 1.2 member connection on a loop (ChaCha20-Poly1305): requests sealed, replies
// opened; a HelloRequest from the member loses it (the session moves), with the reason.
func TestTLS12LoopMember(t *testing.T) {
	lt := startLoopTLSWith(t, true, tls12With(tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256))
	member := jute.NewFrameReader(lt.e.srv, 0)
	client := jute.NewFrameReader(lt.peer, 0)
	lt.peer.Write(tlsGetData(1))
	if f := readFrame(t, member); string(f) != string(tlsGetData(1)) {
		t.Fatalf("the member got % x", f)
	}
	lt.e.srv.Write(tlsGetDataReply(1, "one"))
	if f := readFrame(t, client); string(f) != string(tlsGetDataReply(1, "one")) {
		t.Fatalf("the client got % x", f)
	}
	peer, err := planTLS(lt.e.srv)
	if err != nil {
		t.Fatal(err)
	}
	peer.w.Conn.Write(peer.rec.sealOne12(nil, recHandshake, []byte{0, 0, 0, 0}))
	lt.waitLoop(t, "the member lost", func() bool {
		return lt.c.closed || lt.c.r.moving() || lt.c.r.lost != ""
	})
	var why string
	lt.onLoop(t, func() { why = lt.c.r.lostWhy })
	if !strings.Contains(why, "member TLS: TLS renegotiation") {
		t.Errorf("lost the member for %q", why)
	}
}

// A TLS 1.2 client whose sequence numbers run out (endAt lowered: TLS 1.2 has no key
// update) has its session ended, logged with the reason, instead of a wrapped number.
func TestTLS12LoopSpent(t *testing.T) {
	lt := startLoopTLSWith(t, false, tls12With(tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384))
	member := jute.NewFrameReader(lt.peer, 0)
	lt.e.cli.Write(tlsGetData(1))
	if f := readFrame(t, member); string(f) != string(tlsGetData(1)) {
		t.Fatalf("the member got % x", f)
	}
	lt.onLoop(t, func() { lt.c.ce.tls.endAt = lt.c.ce.tls.out.seq })
	lt.peer.Write(tlsGetDataReply(1, "one"))
	lt.waitLoop(t, "the session ended", func() bool { return lt.c.closed })
	zktest.WaitFor(t, 10*time.Second, "the ending logged", func() bool {
		return strings.Contains(lt.logs.String(), "client TLS: TLS 1.2 sequence numbers used up")
	})
}
