package proxy

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/zkgate/zkgate/jute"
)

// watchSetup gives the rig's session one standard watch of each kind (an exists on an
// existing node is a data watch, on a missing one an exist watch) and an auth packet.
func watchSetup(g *relayRig) {
	g.t.Helper()
	g.client(
		reqFrame(jute.XidAuth, jute.OpAuth, &jute.AuthPacket{Scheme: "digest", Auth: []byte("u:p")}),
		getData(1, "/data", true),
		reqFrame(2, jute.OpExists, &jute.ExistsRequest{Path: "/absent", Watch: true}),
		reqFrame(3, jute.OpGetChildren, &jute.GetChildrenRequest{Path: "/kids", Watch: true}),
		reqFrame(4, jute.OpExists, &jute.ExistsRequest{Path: "/there", Watch: true}),
		// the same auth again: kept once
		reqFrame(jute.XidAuth, jute.OpAuth, &jute.AuthPacket{Scheme: "digest", Auth: []byte("u:p")}),
	)
	g.toMember()
	g.member(jute.XidAuth, 0)
	g.member(jute.XidAuth, 0)
	g.member(1, 0, &jute.GetDataResponse{})
	g.member(2, jute.ErrNoNode)
	g.member(3, 0, &jute.GetChildrenResponse{})
	g.member(4, 0, &jute.ExistsResponse{})
	g.toClient()
}

// The move, step by step: pings answered by zkgate, reads in flight sent again, the
// replay (auth, then the watches with relativeZxid = lastZxid) owned by zkgate, then the
// requests the client sent meanwhile.
func TestRelayMove(t *testing.T) {
	g := newRig(t)
	watchSetup(g)
	lastZxid := g.r.sess.zxid()
	g.client(getData(6, "/x", false), reqFrame(jute.XidPing, jute.OpPing, nil))
	g.toMember()

	order, end := g.r.lose(&g.o, g.now, "test: member killed")
	if end != nil {
		t.Fatalf("lose: %+v", end)
	}
	if order.lost != "m1" || order.req.SessionID != 0x77 || order.req.LastZxidSeen != lastZxid ||
		!bytes.Equal(order.req.Passwd, g.r.sess.passwd) || order.req.TimeOut != 6000 {
		t.Fatalf("move order %+v", order)
	}
	if want := g.now.Add(2 * time.Second); !order.deadline.Equal(want) {
		t.Fatalf("deadline %v, want a third of the session timeout", order.deadline.Sub(g.now))
	}
	if got := xids(g.toClient()); !slices.Equal(got, []int32{jute.XidPing}) {
		t.Fatalf("ping in flight: client got %v", got)
	}
	// During the move: a ping is answered at once, a read is held.
	g.client(getData(7, "/y", false), reqFrame(jute.XidPing, jute.OpPing, nil))
	if got := xids(g.toClient()); !slices.Equal(got, []int32{jute.XidPing}) {
		t.Fatalf("ping during the move: client got %v", got)
	}
	if hs, _ := g.toMember(); len(hs) != 0 {
		t.Fatalf("sent to no member during the move: %v", reqXids(hs))
	}
	if end := g.r.attached(&g.o, "m2", &jute.ConnectResponse{TimeOut: 6000, SessionID: 0x77, Passwd: g.r.sess.passwd}, g.now.Add(50*time.Millisecond)); end != nil {
		t.Fatalf("attached: %+v", end)
	}
	hs, bodies := g.toMember()
	if got := reqXids(hs); !slices.Equal(got, []int32{jute.XidAuth, jute.XidSetWatches, 6, 7}) {
		t.Fatalf("to the new member: %v, want auth, setWatches, the read in flight, the held read", got)
	}
	if want := getData(6, "/x", false)[4+jute.RequestHeaderLen:]; !bytes.Equal(bodies[2], want) {
		t.Fatalf("the read in flight went out again as %q, want %q", bodies[2], want)
	}
	var sw jute.SetWatches // no persistent watches: the form every 3.x server knows
	if hs[1].Type != jute.OpSetWatches || jute.Decode(bodies[1], &sw) != nil {
		t.Fatalf("replay: %v", hs[1])
	}
	slices.Sort(sw.DataWatches)
	if sw.RelativeZxid != lastZxid || !slices.Equal(sw.DataWatches, []string{"/data", "/there"}) ||
		!slices.Equal(sw.ExistWatches, []string{"/absent"}) || !slices.Equal(sw.ChildWatches, []string{"/kids"}) {
		t.Fatalf("replayed watches %+v", sw)
	}
	// The member answers zkgate's packets, then the client's: only the latter reach it.
	g.member(jute.XidAuth, 0)
	g.member(jute.XidSetWatches, 0)
	g.member(6, 0, &jute.GetDataResponse{})
	g.member(7, 0, &jute.GetDataResponse{})
	if got := xids(g.toClient()); !slices.Equal(got, []int32{6, 7}) {
		t.Fatalf("client got %v, want only its own replies [6 7]", got)
	}
	if info := g.r.sess.Info(); info.Member != "m2" || info.Moves != 1 || info.InFlight != 0 {
		t.Fatalf("after the move: %+v", info)
	}
	if held := g.srv.brk.Held(); held != 0 {
		t.Fatalf("%d permits held", held)
	}
}

// What cannot move closes the client instead.
func TestRelayMoveRefused(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(g *relayRig)
		want  string
	}{
		{"write in flight, unsafe_in_flight auto, no readOnly byte (go-zookeeper)", func(g *relayRig) {
			g.client(reqFrame(1, jute.OpSetData, &jute.SetDataRequest{Path: "/a", Data: []byte("x"), Version: -1}))
		}, "a setData was in flight"},
		{"write in flight, unsafe_in_flight close", func(g *relayRig) {
			g.r.sess.hasReadOnly = true
			g.srv.Reconfigure(Config{UnsafeInFlight: UnsafeClose})
			g.client(reqFrame(1, jute.OpSetData, &jute.SetDataRequest{Path: "/a", Data: []byte("x"), Version: -1}))
		}, "a setData was in flight"},
		{"multi with a write in flight, unsafe_in_flight close", func(g *relayRig) {
			g.srv.Reconfigure(Config{UnsafeInFlight: UnsafeClose})
			g.client(reqFrame(1, jute.OpMulti, &jute.MultiRequest{End: jute.MultiEnd, Ops: []jute.MultiOp{
				{Header: jute.MultiHeader{Type: jute.OpCheck, Err: -1}, Body: &jute.CheckVersionRequest{Path: "/a", Version: -1}},
				{Header: jute.MultiHeader{Type: jute.OpDelete, Err: -1}, Body: &jute.DeleteRequest{Path: "/a", Version: -1}},
			}}))
		}, "a multi was in flight"},
		{"sasl used", func(g *relayRig) {
			g.client(reqFrame(1, jute.OpSASL, &jute.SASLToken{Token: []byte("t")}))
			g.member(1, 0, &jute.SASLToken{})
		}, "SASL"},
		{"closeSession sent", func(g *relayRig) {
			g.client(reqFrame(1, jute.OpCloseSession, nil))
			g.member(1, 0)
		}, "closed by its client"},
	} {
		g := newRig(t)
		tc.setup(g)
		_, end := g.r.lose(&g.o, g.now, "test")
		if end == nil || !strings.Contains(end.reason+errString(end.err), tc.want) {
			t.Errorf("%s: ending %+v, want one that says %q", tc.name, end, tc.want)
		}
		g.r.settle(false)
		if held := g.srv.brk.Held(); held != 0 {
			t.Errorf("%s: %d permits held", tc.name, held)
		}
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// A multi of checks only (a barrier before a read) changes nothing: in flight at the loss,
// it is sent again on the new member like a read, and the session moves.
func TestRelayMoveResendsCheckOnlyMulti(t *testing.T) {
	g := newRig(t)
	barrier := reqFrame(1, jute.OpMulti, &jute.MultiRequest{End: jute.MultiEnd, Ops: []jute.MultiOp{
		{Header: jute.MultiHeader{Type: jute.OpCheck, Err: -1}, Body: &jute.CheckVersionRequest{Path: "/a", Version: -1}},
	}})
	g.client(barrier)
	g.toMember()
	order, end := g.r.lose(&g.o, g.now, "test")
	if end != nil || order == nil {
		t.Fatalf("the session did not move: %+v", end)
	}
	if end := g.r.attached(&g.o, "m2", &jute.ConnectResponse{TimeOut: 4000, SessionID: 1}, g.now); end != nil {
		t.Fatalf("attached: %+v", end)
	}
	if !bytes.Contains(g.o.member, barrier) {
		t.Fatalf("the barrier was not sent again to the new member: % x", g.o.member)
	}
}

// An expired session, no member, a move past its deadline: the client is closed, so that
// its library reconnects and sees what it would see directly.
func TestRelayMoveFails(t *testing.T) {
	g := newRig(t)
	g.r.lose(&g.o, g.now, "test")
	if end := g.r.attached(&g.o, "m2", &jute.ConnectResponse{}, g.now); end == nil || !strings.Contains(end.reason, "expired") {
		t.Fatalf("expired: %+v", end)
	}
	g = newRig(t)
	g.r.lose(&g.o, g.now, "test")
	if end := g.r.overdue(&g.o, g.now.Add(time.Second)); end != nil {
		t.Fatalf("overdue before the deadline: %+v", end)
	}
	if end := g.r.overdue(&g.o, g.now.Add(3*time.Second)); end == nil || !strings.Contains(end.reason, "deadline") {
		t.Fatalf("past the deadline: %+v", end)
	}
	g = newRig(t)
	g.r.lose(&g.o, g.now, "test")
	if end := g.r.moveFailed(&g.o, errNoMoveTarget, g.now); end == nil || !strings.Contains(end.reason, "no member") {
		t.Fatalf("no member: %+v", end)
	}
}

// A session's watches go out in SetWatches batches of at most 128 KiB of paths, every
// path once, in the order data, exist, child, persistent, recursive.
func TestWatchBatches(t *testing.T) {
	var w jute.SetWatches2
	w.RelativeZxid = 42
	var all []string
	for i := range 10000 {
		p := "/watched/" + strings.Repeat("n", 80) + "/" + string(rune('a'+i%26)) + strings.Repeat("x", i%7) + itoa(i)
		switch i % 5 {
		case 0:
			w.DataWatches = append(w.DataWatches, p)
		case 1:
			w.ExistWatches = append(w.ExistWatches, p)
		case 2:
			w.ChildWatches = append(w.ChildWatches, p)
		case 3:
			w.PersistentWatches = append(w.PersistentWatches, p)
		case 4:
			w.PersistentRecursiveWatches = append(w.PersistentRecursiveWatches, p)
		}
	}
	for _, l := range [][]string{w.DataWatches, w.ExistWatches, w.ChildWatches, w.PersistentWatches, w.PersistentRecursiveWatches} {
		all = append(all, l...)
	}
	batches := watchBatches(w, maxWatchBatch)
	if len(batches) < 8 {
		t.Fatalf("%d batches for about 1 MB of paths", len(batches))
	}
	var got []string
	for _, b := range batches {
		size := 0
		for _, l := range [][]string{b.DataWatches, b.ExistWatches, b.ChildWatches, b.PersistentWatches, b.PersistentRecursiveWatches} {
			for _, p := range l {
				size += len(p)
			}
			got = append(got, l...)
		}
		if b.DataWatches == nil || b.ExistWatches == nil || b.ChildWatches == nil || b.PersistentWatches == nil || b.PersistentRecursiveWatches == nil {
			t.Fatalf("a null watch list (the server fails on it): %+v", b)
		}
		if size > maxWatchBatch || b.RelativeZxid != 42 {
			t.Fatalf("batch of %d path bytes, relativeZxid %d", size, b.RelativeZxid)
		}
	}
	if !slices.Equal(got, all) {
		t.Fatalf("batches hold %d paths, want the %d in order", len(got), len(all))
	}
}

func itoa(i int) string {
	return string([]byte{byte('0' + i/1000%10), byte('0' + i/100%10), byte('0' + i/10%10), byte('0' + i%10)})
}

// Auth packets are kept for a replay once each, within a bound; past it the packet is
// refused as a server refuses a bad one (AUTHFAILED, then close).
func TestAuthKeptBounded(t *testing.T) {
	g := newRig(t)
	big := bytes.Repeat([]byte("a"), 1000_000)
	frame := reqFrame(jute.XidAuth, jute.OpAuth, &jute.AuthPacket{Scheme: "digest", Auth: big})
	for range 300 {
		if end := g.client(frame); end != nil {
			t.Fatalf("the same packet again was refused: %+v", end)
		}
		g.o.member = g.o.member[:0]
	}
	if n := len(g.r.sess.auth); n != 1 {
		t.Fatalf("%d auth packets kept, want 1", n)
	}
	g.toMember()
	end := g.client(reqFrame(jute.XidAuth, jute.OpAuth, &jute.AuthPacket{Scheme: "digest", Auth: append(big, 'b')}))
	if end == nil || !strings.Contains(end.reason, errAuthBound.Error()) {
		t.Fatalf("a second 1 MB packet was kept: %+v", end)
	}
	if got := g.toClient(); len(got) != 1 || got[0].Xid != jute.XidAuth || got[0].Err != jute.ErrAuthFailed {
		t.Fatalf("refusal: %+v", got)
	}
	if hs, _ := g.toMember(); len(hs) != 0 {
		t.Fatalf("the refused packet went to the member")
	}
}

// A read waiting for a move is not a slow call: the sweep skips the session while it
// moves, and the read is timed again from when it goes to the new member. Counted slow, a
// member's death under many sessions opened the ensemble breaker for everyone.
func TestMoveIsNotSlowCalls(t *testing.T) {
	g := newRig(t)
	g.client(getData(1, "/a", false))
	g.toMember()
	if _, end := g.r.lose(&g.o, g.now, "test"); end != nil {
		t.Fatal(end)
	}
	slow := g.srv.brk.SlowCall()
	later := g.now.Add(4 * slow)
	if st, now := g.r.sess.stalls(later, slow, nil); len(st) != 0 || now {
		t.Fatalf("a read waiting for the move was reported slow: %+v", st)
	}
	if end := g.r.attached(&g.o, "m2", &jute.ConnectResponse{TimeOut: 4000, SessionID: 0x77, Passwd: g.r.sess.passwd}, later); end != nil {
		t.Fatal(end)
	}
	g.toMember()
	if st, _ := g.r.sess.stalls(later.Add(slow/2), slow, nil); len(st) != 0 {
		t.Fatalf("the resent read was reported slow: %+v", st)
	}
	g.now = later.Add(slow / 2)
	g.member(1, 0)
	if _, failures, _ := g.srv.brk.Stats(); failures != 0 {
		t.Fatalf("the breaker counted %d failures for a moved read", failures)
	}
}

// A drain holds new requests until the member has answered those in flight; the move
// then has nothing in flight it could not repeat, and the held requests go to the new
// member. A write in flight at the drain is answered by the old member, not lost.
func TestRelayDrain(t *testing.T) {
	g := newRig(t)
	g.client(getData(1, "/a", false), reqFrame(2, jute.OpSetData, &jute.SetDataRequest{Path: "/a", Data: []byte("v"), Version: -1}))
	g.toMember()
	g.r.drain(g.now.Add(5*time.Second), "test: member removed")
	if g.r.drained(g.now) {
		t.Fatal("drained with two requests in flight")
	}
	g.client(getData(3, "/b", false), reqFrame(jute.XidPing, jute.OpPing, nil))
	if hs, _ := g.toMember(); len(hs) != 0 {
		t.Fatalf("sent during the drain: %v", reqXids(hs))
	}
	if got := xids(g.toClient()); !slices.Equal(got, []int32{jute.XidPing}) {
		t.Fatalf("during the drain the client got %v, want the ping answered", got)
	}
	g.member(1, 0, &jute.GetDataResponse{})
	g.member(2, 0, &jute.SetDataResponse{})
	if got := xids(g.toClient()); !slices.Equal(got, []int32{1, 2}) {
		t.Fatalf("the old member's replies: %v", got)
	}
	if !g.r.drained(g.now) {
		t.Fatal("not drained with nothing in flight")
	}
	order, end := g.r.lose(&g.o, g.now, g.r.drainWhy)
	if end != nil || order == nil {
		t.Fatalf("the move after the drain: %+v %+v", order, end)
	}
	if end := g.r.attached(&g.o, "m2", &jute.ConnectResponse{TimeOut: 6000, SessionID: 0x77, Passwd: g.r.sess.passwd}, g.now); end != nil {
		t.Fatalf("attached: %+v", end)
	}
	if hs, _ := g.toMember(); !slices.Equal(reqXids(hs), []int32{3}) {
		t.Fatalf("to the new member: %v, want the held read", reqXids(hs))
	}

	// A member that never answers: past its time the drain gives up, and the move finds
	// the write in flight and answers it with CONNECTIONLOSS, as a lost member's would.
	g = newRig(t)
	g.r.sess.hasReadOnly = true
	g.client(reqFrame(1, jute.OpSetData, &jute.SetDataRequest{Path: "/a", Data: []byte("v"), Version: -1}))
	g.toMember()
	g.r.drain(g.now.Add(time.Second), "test")
	if g.r.drained(g.now) || !g.r.drained(g.now.Add(time.Second)) {
		t.Fatal("the drain's deadline")
	}
	if order, end := g.r.lose(&g.o, g.now, "test"); end != nil || order == nil {
		t.Fatalf("a write in flight past the drain: %+v %+v", order, end)
	}
	if hs := g.toClient(); len(hs) != 1 || hs[0].Xid != 1 || hs[0].Err != jute.ErrConnectionLoss {
		t.Fatalf("the write past the drain answered %+v, want CONNECTIONLOSS", hs)
	}
}

// A write in flight when the member is lost: it and everything behind it are answered
// with CONNECTIONLOSS in order (pings at once), the session moves with nothing to send
// again, and the requests the client sends meanwhile go to the new member.
func TestRelayMoveAnswersUnsafe(t *testing.T) {
	g := newRig(t)
	g.r.sess.hasReadOnly = true // a client that knows CONNECTIONLOSS (unsafe_in_flight auto)
	watchSetup(g)
	g.client(getData(6, "/x", false),
		reqFrame(7, jute.OpCreate, &jute.CreateRequest{Path: "/c", Data: []byte("v"), ACL: []jute.ACL{}}),
		reqFrame(jute.XidPing, jute.OpPing, nil),
		getData(8, "/y", false))
	g.toMember()
	order, end := g.r.lose(&g.o, g.now, "test: member killed")
	if end != nil || order == nil {
		t.Fatalf("lose: %+v %+v", order, end)
	}
	hs := g.toClient()
	if got := xids(hs); !slices.Equal(got, []int32{jute.XidPing, 6, 7, 8}) {
		t.Fatalf("client got %v, want the ping then 6, 7, 8", got)
	}
	for _, h := range hs[1:] {
		if h.Err != jute.ErrConnectionLoss {
			t.Fatalf("xid %d answered %v, want CONNECTIONLOSS", h.Xid, h.Err)
		}
	}
	if held := g.srv.brk.Held(); held != 0 {
		t.Fatalf("%d permits held", held)
	}
	g.client(getData(9, "/z", false))
	if end := g.r.attached(&g.o, "m2", &jute.ConnectResponse{TimeOut: 6000, SessionID: 0x77, Passwd: g.r.sess.passwd}, g.now); end != nil {
		t.Fatalf("attached: %+v", end)
	}
	if hs, _ := g.toMember(); !slices.Equal(reqXids(hs), []int32{jute.XidAuth, jute.XidSetWatches, 9}) {
		t.Fatalf("to the new member: %v, want the replay and the held read only", reqXids(hs))
	}
	g.member(jute.XidAuth, 0)
	g.member(jute.XidSetWatches, 0)
	g.member(9, 0, &jute.GetDataResponse{})
	if got := xids(g.toClient()); !slices.Equal(got, []int32{9}) {
		t.Fatalf("client got %v after the move", got)
	}
	if info := g.r.sess.Info(); info.Member != "m2" || info.InFlight != 0 || info.Watches != 4 {
		t.Fatalf("after the move: %+v", info)
	}
}

// Persistent watches get no catch-up from the server: a moved session keeps them only
// when the new member has nothing past what the old one had delivered; otherwise the
// client is closed (and resyncs as after any reconnect).
func TestRelayMovePersistentCatchUp(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mode   int32
		zxid   int64 // the new member's, in its reply to the replay
		closed bool
	}{
		{"persistent, nothing changed", jute.AddWatchPersistent, 11, false},
		{"persistent, changed meanwhile", jute.AddWatchPersistent, 12, true},
		{"recursive, a member behind", jute.AddWatchPersistentRecursive, 9, false},
		{"recursive, changed meanwhile", jute.AddWatchPersistentRecursive, 13, true},
	} {
		g := newRig(t)
		g.client(reqFrame(1, jute.OpAddWatch, &jute.AddWatchRequest{Path: "/p", Type: tc.mode}))
		g.toMember()
		g.member(1, 0) // the rig's reply carries zxid 11: delivered up to 11
		g.toClient()
		if _, end := g.r.lose(&g.o, g.now, "test"); end != nil {
			t.Fatalf("%s: lose: %+v", tc.name, end)
		}
		if end := g.r.attached(&g.o, "m2", &jute.ConnectResponse{TimeOut: 6000, SessionID: 0x77, Passwd: g.r.sess.passwd}, g.now); end != nil {
			t.Fatalf("%s: attached: %+v", tc.name, end)
		}
		hs, bodies := g.toMember()
		var sw jute.SetWatches2
		if len(hs) != 1 || hs[0].Type != jute.OpSetWatches2 || jute.Decode(bodies[0], &sw) != nil {
			t.Fatalf("%s: replay %v", tc.name, hs)
		}
		lists := [][]string{sw.PersistentWatches, sw.PersistentRecursiveWatches}
		if got := lists[tc.mode]; !slices.Equal(got, []string{"/p"}) {
			t.Fatalf("%s: replayed %+v", tc.name, sw)
		}
		frame := jute.AppendFrame(nil, &jute.ReplyHeader{Xid: jute.XidSetWatches, Zxid: tc.zxid})
		err := g.r.reply(&g.o, frame, g.now)
		if closed := errors.Is(err, errMissedEvents); closed != tc.closed {
			t.Errorf("%s: reply to the replay: %v, want closed=%v", tc.name, err, tc.closed)
		}
	}
}

// Replies held back while the client does not read say nothing of the member, before a
// move or after it; once the client reads again, a request the new member leaves
// unanswered is a stall again. (The epoll driver used to keep the session held after a
// move: the new member's socket came readable, and its stalls were never reported.)
func TestRelayHoldAcrossMove(t *testing.T) {
	g := newRig(t)
	slow := 500 * time.Millisecond
	g.client(getData(1, "/a", false))
	g.toMember()
	if g.r.readMember(false, g.now) { // the client stops reading its replies
		t.Fatal("read the member while the client takes nothing")
	}
	if st, stalled := g.r.sess.stalls(g.now.Add(2*slow), slow, nil); len(st) != 0 || stalled {
		t.Fatalf("a request waiting on the client reported as a stall: %+v", st)
	}
	if _, end := g.r.lose(&g.o, g.now, "test"); end != nil {
		t.Fatal(end)
	}
	if end := g.r.attached(&g.o, "m2", &jute.ConnectResponse{TimeOut: 6000, SessionID: 0x77, Passwd: g.r.sess.passwd}, g.now); end != nil {
		t.Fatal(end)
	}
	g.toMember()
	g.member(1, 0, &jute.GetDataResponse{})
	g.toClient()
	later := g.now.Add(time.Second)
	if !g.r.readMember(true, later) { // it reads again, on the new member
		t.Fatal("member not read once the client takes its replies")
	}
	g.now = later.Add(time.Millisecond)
	g.client(getData(2, "/b", false))
	g.toMember()
	st, stalled := g.r.sess.stalls(g.now.Add(2*slow), slow, nil)
	if len(st) != 1 || st[0].xid != 2 || !stalled {
		t.Fatalf("stalls after the client reads again: %+v (stalled %v), want xid 2", st, stalled)
	}
	if st[0].service < slow {
		t.Fatalf("stall reported with service time %v", st[0].service)
	}
}

// The service-time rule, reply by reply: a pipelined burst that the member keeps
// answering is not slow however deep its tail; a gap with no reply on the session is;
// a stall is reported from the last reply, not from the send.
func TestServiceTime(t *testing.T) {
	slow := 500 * time.Millisecond
	t0 := time.Now()
	ms := time.Millisecond
	for _, tc := range []struct {
		name    string
		sent    []time.Duration // offsets of the sends from t0 (xids 1, 2, ...)
		replies []time.Duration // offsets of the replies, in order
		want    []time.Duration // service time of each
	}{
		{"a lone request", []time.Duration{0}, []time.Duration{30 * ms}, []time.Duration{30 * ms}},
		{"a pipelined burst answered steadily",
			[]time.Duration{0, 0, 0, 0}, []time.Duration{200 * ms, 400 * ms, 600 * ms, 800 * ms},
			[]time.Duration{200 * ms, 200 * ms, 200 * ms, 200 * ms}},
		{"a request sent after the previous reply",
			[]time.Duration{0, 100 * ms}, []time.Duration{50 * ms, 130 * ms},
			[]time.Duration{50 * ms, 30 * ms}},
		{"a reply gap",
			[]time.Duration{0, 0}, []time.Duration{10 * ms, 900 * ms},
			[]time.Duration{10 * ms, 890 * ms}},
	} {
		s := &Session{}
		for i, at := range tc.sent {
			s.push(inflight{xid: int32(i + 1), op: jute.OpCreate, start: t0.Add(at)})
		}
		for i, at := range tc.replies {
			f, _, err := s.pop(jute.ReplyHeader{Xid: int32(i + 1), Zxid: int64(i + 1)}, t0.Add(at))
			if err != nil {
				t.Fatal(err)
			}
			if f.service != tc.want[i] {
				t.Errorf("%s: xid %d service %v, want %v", tc.name, f.xid, f.service, tc.want[i])
			}
		}
	}
	// Stalls: a burst of 3 whose first reply came at 100 ms, then nothing. At 550 ms the
	// oldest has waited 450 ms since that reply: not slow, though it was sent 550 ms ago.
	s := &Session{}
	for i := range 3 {
		s.push(inflight{xid: int32(i + 1), op: jute.OpCreate, start: t0})
	}
	s.pop(jute.ReplyHeader{Xid: 1, Zxid: 1}, t0.Add(100*ms))
	if st, stalled := s.stalls(t0.Add(550*ms), slow, nil); len(st) != 0 || stalled {
		t.Fatalf("a pipeline the member answered 450 ms ago reported stalled: %+v", st)
	}
	st, stalled := s.stalls(t0.Add(700*ms), slow, nil)
	if len(st) != 2 || !stalled || st[0].service != 600*ms {
		t.Fatalf("stalls at 700 ms: %+v, want both waiting requests with 600 ms since the last reply", st)
	}
}

// A reconfig through zkgate is answered RECONFIGDISABLED in its place in the session's
// order and never reaches the ensemble; it is not a breaker failure.
func TestRelayRefusesReconfig(t *testing.T) {
	g := newRig(t)
	g.client(getData(1, "/a", false),
		reqFrame(2, jute.OpReconfig, &jute.GetDataRequest{Path: "server.4=127.0.0.1:2888:3888;2181"}),
		getData(3, "/b", false))
	hs, _ := g.toMember()
	if got := reqXids(hs); !slices.Equal(got, []int32{1, 3}) {
		t.Fatalf("to the member: %v, want the reads only", got)
	}
	g.member(1, 0, &jute.GetDataResponse{})
	g.member(3, 0, &jute.GetDataResponse{})
	replies := g.toClient()
	if got := xids(replies); !slices.Equal(got, []int32{1, 2, 3}) {
		t.Fatalf("client got %v, want its order", got)
	}
	if replies[1].Err != jute.ErrReconfigDisabled {
		t.Fatalf("reconfig answered %v, want RECONFIGDISABLED", replies[1].Err)
	}
	if held := g.srv.brk.Held(); held != 0 {
		t.Fatalf("%d permits held", held)
	}
}

// Right after a move the members that took the moved sessions answer slowly while they
// re-establish them (a thousand sessions off a killed member each revalidate with the
// leader): that is the move's own load, not a fault, and slow calls then count neither
// against the ensemble nor against the member. Past the settling time they count again,
// once sessions stall together.
func TestSettlingAfterMove(t *testing.T) {
	g := newRig(t)
	slow := g.srv.brk.SlowCall()
	now := time.Now()
	if g.srv.settling(now) {
		t.Fatal("settling before any move")
	}
	g.srv.stalledSessions.Store(5)
	if !g.srv.countsSlow(now) {
		t.Fatal("five sessions stalled, no move: slow calls must count")
	}
	g.srv.movedAt.Store(now.UnixNano())
	if !g.srv.settling(now.Add(slow)) || g.srv.countsSlow(now.Add(slow)) {
		t.Fatal("slow calls counted while a move settles")
	}
	if g.srv.settling(now.Add(3*slow)) || !g.srv.countsSlow(now.Add(3*slow)) {
		t.Fatal("still settling long after the move")
	}
	g.srv.stalledSessions.Store(1)
	if g.srv.countsSlow(now.Add(3 * slow)) {
		t.Fatal("one stalled session counted as the ensemble's trouble")
	}
}

// Health's evidence for a late probe: a member's own answers on its sessions, and for the
// leader, which rarely carries sessions, also the last commit any reply showed.
func TestLastAnswerEvidence(t *testing.T) {
	g := newRig(t) // m2 leads
	if !g.srv.LastAnswer("m1").IsZero() || !g.srv.LastAnswer("m2").IsZero() {
		t.Fatal("evidence before any answer")
	}
	g.client(getData(1, "/a", false))
	g.toMember()
	g.member(1, 0, &jute.GetDataResponse{}) // m1 answers, and the reply shows zxid 11
	if got := g.srv.LastAnswer("m1"); !got.Equal(g.now) {
		t.Fatalf("m1's evidence %v, want its answer at %v", got, g.now)
	}
	if got := g.srv.LastAnswer("m2"); !got.Equal(g.now) {
		t.Fatalf("the leader's evidence %v, want the commit seen at %v", got, g.now)
	}
	if !g.srv.answeredOwn("m2").IsZero() {
		t.Fatal("the leader answered no session of its own")
	}

	// m2 hangs in epoch 1 and its last srvr answer still stands in the view; the others
	// elect a leader, whose commits start epoch 2. They are no evidence for m2.
	v := g.srv.view()
	v.Members[1].Zxid = 1<<32 | 20
	g.zxid = 1<<32 | 30
	g.client(getData(2, "/a", false))
	g.toMember()
	g.member(2, 0, &jute.GetDataResponse{}) // a commit of m2's own epoch
	if got := g.srv.LastAnswer("m2"); !got.Equal(g.now) {
		t.Fatalf("the leader's evidence %v, want its own epoch's commit at %v", got, g.now)
	}
	credited := g.now
	g.now = g.now.Add(3 * time.Second)
	g.zxid = 2 << 32
	g.client(getData(3, "/a", false))
	g.toMember()
	g.member(3, 0, &jute.GetDataResponse{}) // epoch 2: another leader's commit
	if got := g.srv.LastAnswer("m1"); !got.Equal(g.now) {
		t.Fatalf("m1's evidence %v, want its answer at %v", got, g.now)
	}
	if got := g.srv.LastAnswer("m2"); !got.IsZero() {
		t.Fatalf("the hung leader credited with its successor's commit: %v (its own epoch's was at %v)", got, credited)
	}
}
