package proxy

import (
	"bytes"
	"slices"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/zkgate/zkgate/breaker"
	"github.com/zkgate/zkgate/health"
	"github.com/zkgate/zkgate/jute"
)

// The relay is driven directly here: no socket, no ZooKeeper. A test plays the client
// (frames in, replies out) and the member (requests out, replies in).

type relayRig struct {
	t    *testing.T
	srv  *Server
	r    *relay
	o    out
	now  time.Time
	zxid int64
}

func newRig(t *testing.T) *relayRig {
	t.Helper()
	view := &health.View{Members: []health.MemberState{
		{Address: "m1", Status: health.StatusServing, Mode: "follower", Serving: true},
		{Address: "m2", Status: health.StatusServing, Mode: "leader", Serving: true}},
		Leader: "m2", Quorum: true, At: time.Now()}
	srv := NewServer(Config{}, staticView{view}, zerolog.Nop(),
		WithBreaker(breaker.NewEnsemble("t", breaker.DefaultConfig(), zerolog.Nop())))
	sess := &Session{Client: "c", member: "m1", id: 0x77, passwd: bytes.Repeat([]byte{9}, 16),
		timeout: 6 * time.Second, lastZxid: 5, started: time.Now()}
	return &relayRig{t: t, srv: srv, r: newRelay(srv, sess), now: time.Now(), zxid: 10}
}

func reqFrame(xid int32, op jute.OpCode, body jute.Record) []byte {
	h := &jute.RequestHeader{Xid: xid, Type: op}
	if body == nil {
		return jute.AppendFrame(nil, h)
	}
	return jute.AppendFrame(nil, h, body)
}

func getData(xid int32, path string, watch bool) []byte {
	return reqFrame(xid, jute.OpGetData, &jute.GetDataRequest{Path: path, Watch: watch})
}

// client feeds frames from the client; it fails the test on an ending unless wantEnd.
func (g *relayRig) client(frames ...[]byte) *ending {
	g.t.Helper()
	data := bytes.Join(frames, nil)
	used, end := g.r.fromClient(&g.o, data, g.now)
	if end == nil && used != len(data) {
		g.t.Fatalf("client: %d of %d bytes used", used, len(data))
	}
	return end
}

// member feeds one reply from the member.
func (g *relayRig) member(xid int32, code jute.ErrCode, body ...jute.Record) {
	g.t.Helper()
	g.zxid++
	recs := append([]jute.Record{&jute.ReplyHeader{Xid: xid, Zxid: g.zxid, Err: code}}, body...)
	frame := jute.AppendFrame(nil, recs...)
	if _, end := g.r.fromMember(&g.o, frame, g.now); end != nil {
		g.t.Fatalf("member reply xid %d: %+v", xid, end)
	}
}

func (g *relayRig) notify(typ jute.EventType, path string) {
	g.t.Helper()
	frame := jute.AppendFrame(nil, &jute.ReplyHeader{Xid: jute.XidNotification, Zxid: -1},
		&jute.WatcherEvent{Type: typ, State: 3, Path: path})
	if _, end := g.r.fromMember(&g.o, frame, g.now); end != nil {
		g.t.Fatalf("notification: %+v", end)
	}
}

// toClient takes the replies the client got since the last call.
func (g *relayRig) toClient() []jute.ReplyHeader {
	var out []jute.ReplyHeader
	for data := g.o.client; len(data) > 0; {
		frame, _, err := jute.NextFrame(data, 0)
		if err != nil || frame == nil {
			g.t.Fatalf("client output is not whole frames: %v", err)
		}
		h, _ := jute.ParseReplyHeader(frame[4:])
		out = append(out, h)
		data = data[len(frame):]
	}
	g.o.client = g.o.client[:0]
	return out
}

// toMember takes the requests the member got since the last call, and their bodies.
func (g *relayRig) toMember() ([]jute.RequestHeader, [][]byte) {
	var hs []jute.RequestHeader
	var bodies [][]byte
	for data := g.o.member; len(data) > 0; {
		frame, _, err := jute.NextFrame(data, 0)
		if err != nil || frame == nil {
			g.t.Fatalf("member output is not whole frames: %v", err)
		}
		h, _ := jute.ParseRequestHeader(frame[4:])
		hs = append(hs, h)
		bodies = append(bodies, frame[4+jute.RequestHeaderLen:])
		data = data[len(frame):]
	}
	g.o.member = g.o.member[:0]
	return hs, bodies
}

func xids(hs []jute.ReplyHeader) []int32 {
	var out []int32
	for _, h := range hs {
		out = append(out, h.Xid)
	}
	return out
}

func reqXids(hs []jute.RequestHeader) []int32 {
	var out []int32
	for _, h := range hs {
		out = append(out, h.Xid)
	}
	return out
}

// Replies reach the client in request order, and while the breaker is open zkgate
// answers new requests with the reject code right behind the ones in flight.
func TestRelayFIFOAndRejects(t *testing.T) {
	g := newRig(t)
	g.client(getData(1, "/a", false), getData(2, "/b", false))
	if hs, _ := g.toMember(); !slices.Equal(reqXids(hs), []int32{1, 2}) {
		t.Fatalf("to member: %v", reqXids(hs))
	}
	g.member(1, 0)
	g.srv.brk.ObserveHealth(false, "test: no quorum")
	g.client(getData(3, "/c", false)) // rejected, but only after 2's answer
	if got := xids(g.toClient()); !slices.Equal(got, []int32{1, 2, 3}) {
		// open: what was in flight is answered at once, in order
		t.Fatalf("client got %v, want [1 2 3]", got)
	}
	g.member(2, 0) // the late reply is swallowed
	if got := g.toClient(); len(got) != 0 {
		t.Fatalf("late reply reached the client: %v", xids(got))
	}
	if held := g.srv.brk.Held(); held != 0 {
		t.Fatalf("%d permits held", held)
	}
}

// A rejected request waits behind a sent one when the breaker is half-open.
func TestRelayRejectWaitsItsTurn(t *testing.T) {
	g := newRig(t)
	g.client(getData(1, "/a", false))
	g.toMember()
	g.r.reject(&g.o, inflight{xid: 2, op: jute.OpGetData, start: g.now})
	if got := g.toClient(); len(got) != 0 {
		t.Fatalf("reject overtook xid 1: %v", xids(got))
	}
	g.member(1, 0)
	if got := xids(g.toClient()); !slices.Equal(got, []int32{1, 2}) {
		t.Fatalf("client got %v", got)
	}
}

// Pings, auth and notifications: auth is answered ahead of the pipeline, notifications
// are forwarded without touching the FIFO.
func TestRelaySpecialXids(t *testing.T) {
	g := newRig(t)
	g.client(getData(1, "/a", true), reqFrame(jute.XidPing, jute.OpPing, nil),
		reqFrame(jute.XidAuth, jute.OpAuth, &jute.AuthPacket{Scheme: "digest", Auth: []byte("u:p")}))
	g.toMember()
	g.member(jute.XidAuth, 0) // the server answers auth in its I/O thread
	g.notify(jute.EventNodeDataChanged, "/elsewhere")
	g.member(1, 0, &jute.GetDataResponse{})
	g.member(jute.XidPing, 0)
	if got := xids(g.toClient()); !slices.Equal(got, []int32{jute.XidAuth, jute.XidNotification, 1, jute.XidPing}) {
		t.Fatalf("client got %v", got)
	}
	if w := g.r.sess.Watches(); !slices.Equal(w.DataWatches, []string{"/a"}) {
		t.Fatalf("watches %+v", w)
	}
	g.notify(jute.EventNodeDataChanged, "/a")
	if w := g.r.sess.Watches(); len(w.DataWatches) != 0 {
		t.Fatalf("a fired data watch is still tracked: %+v", w)
	}
}
