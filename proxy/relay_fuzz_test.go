package proxy

import (
	"testing"

	"github.com/zkgate/zkgate/jute"
)

// FuzzRelay drives a relay with arbitrary interleavings of client requests, member
// replies and notifications, breaker flips and member loss (with moves that succeed,
// find the session expired, or fail), and checks what a client relies on:
//   - it gets exactly one answer per request, in order (never twice, never out of turn);
//   - nothing zkgate sent on its own behalf (a move's replay) reaches it;
//   - every breaker permit is released once the session ends;
//   - with the limits on, requests over them are answered in their turn like the rest.
func FuzzRelay(f *testing.F) {
	f.Add([]byte{0, 1, 0, 4, 4, 4})
	f.Add([]byte{0, 0, 3, 1, 2, 7, 0, 0, 2, 7, 2, 4, 4, 4, 4, 4})
	f.Add([]byte{3, 0, 0, 1, 5, 2, 6, 0, 0, 4, 7, 0, 7, 2, 4, 4, 6, 1, 0, 4})
	f.Add([]byte{0, 0, 0, 1, 7, 0, 7, 5, 2, 2, 4, 4, 4, 4, 4, 4})
	f.Add([]byte{5, 0, 0, 0, 0, 0, 1, 0, 4, 4, 4, 0, 0})
	f.Fuzz(func(t *testing.T, ops []byte) {
		g := newRig(t)
		if len(ops) > 0 && ops[0]%2 == 1 {
			// Limits on (the rig's clock stands still: a bucket does not refill), so that
			// requests answered with the reject code by a limit mix with the rest.
			g = limitRig(t, Limits{SessionRate: 1, SessionBurst: int(ops[0]/2%4) + 1, MaxInFlight: int(ops[0]/8%3) + 1})
			ops = ops[1:]
		}
		m := &fuzzModel{t: t, g: g}
		for i := 0; i+1 < len(ops) && m.end == nil; i += 2 {
			m.step(ops[i], ops[i+1])
			m.collect()
		}
		m.g.r.settle(false)
		if held := g.srv.brk.Held(); held != 0 {
			t.Fatalf("%d breaker permits never released", held)
		}
		if s := g.r.sess; s.keep != nil || s.keptWaiting != 0 {
			t.Fatalf("kept request bytes outlive the session (%d waiting)", s.keptWaiting)
		}
	})
}

type fuzzModel struct {
	t        *testing.T
	g        *relayRig
	end      *ending
	xid      int32
	expected []int32 // the client's requests (xid >= 0) without an answer yet, in order
	pings    int     // sent and not answered
	auths    int
	queue    []jute.RequestHeader // what the member has and has not answered, in order
}

func (m *fuzzModel) step(op, arg byte) {
	g := m.g
	switch op % 8 {
	case 0: // a read, with a watch or not
		m.xid++
		m.expected = append(m.expected, m.xid)
		m.ended(g.client(getData(m.xid, "/n", arg%2 == 0)))
	case 1: // a write
		m.xid++
		m.expected = append(m.expected, m.xid)
		m.ended(g.client(reqFrame(m.xid, jute.OpSetData, &jute.SetDataRequest{Path: "/n", Data: []byte{arg}, Version: -1})))
	case 2:
		m.pings++
		m.ended(g.client(reqFrame(jute.XidPing, jute.OpPing, nil)))
	case 3:
		m.auths++
		m.ended(g.client(reqFrame(jute.XidAuth, jute.OpAuth, &jute.AuthPacket{Scheme: "digest", Auth: []byte{'u', ':', arg % 4}})))
	case 4: // the member answers: auth first when it has one and arg says so, else in order
		if len(m.queue) == 0 || g.r.moving() {
			return
		}
		i := 0
		if arg%2 == 1 {
			for j, h := range m.queue {
				if h.Xid == jute.XidAuth {
					i = j
					break
				}
			}
		}
		h := m.queue[i]
		m.queue = append(m.queue[:i], m.queue[i+1:]...)
		code := jute.ErrOK
		if arg%5 == 4 && h.Xid >= 0 {
			code = jute.ErrNoNode
		}
		g.zxid++
		frame := jute.AppendFrame(nil, &jute.ReplyHeader{Xid: h.Xid, Zxid: g.zxid, Err: code})
		_, end := g.r.fromMember(&g.o, frame, g.now)
		m.ended(end)
	case 5:
		if g.r.moving() {
			return
		}
		g.notify(jute.EventType(1+arg%4), "/n")
	case 6: // breaker flips
		g.srv.brk.ObserveHealth(arg%2 == 0, "fuzz")
		g.r.answerOpen(&g.o)
	case 7: // member lost; while moving, the move ends one way or another
		if !g.r.moving() {
			m.queue = nil
			_, end := g.r.lose(&g.o, g.now, "fuzz")
			m.ended(end)
			return
		}
		switch arg % 4 {
		case 0:
			m.ended(g.r.attached(&g.o, "m2", &jute.ConnectResponse{}, g.now))
		case 1:
			m.ended(g.r.moveFailed(&g.o, errNoMoveTarget, g.now))
		default:
			m.ended(g.r.attached(&g.o, "m2", &jute.ConnectResponse{TimeOut: 6000, SessionID: 0x77, Passwd: g.r.sess.passwd}, g.now))
		}
	}
}

func (m *fuzzModel) ended(end *ending) {
	if end != nil && isProtocolError(end.err) {
		// The model's client and member speak the protocol: the relay lost track.
		m.t.Fatalf("the relay saw a protocol error: %v", end.err)
	}
	if end != nil {
		m.end = end
	}
}

// collect checks what the client got and hands what the member got to its queue.
func (m *fuzzModel) collect() {
	hs, _ := m.g.toMember()
	if len(hs) > 0 && m.g.r.moving() {
		m.t.Fatalf("requests went out while no member is attached: %v", reqXids(hs))
	}
	m.queue = append(m.queue, hs...)
	for _, h := range m.g.toClient() {
		switch {
		case h.Xid == jute.XidNotification:
		case h.Xid == jute.XidPing:
			if m.pings--; m.pings < 0 {
				m.t.Fatalf("a ping reply the client did not ask for")
			}
		case h.Xid == jute.XidAuth:
			if m.auths--; m.auths < 0 {
				m.t.Fatalf("an auth reply the client did not ask for (zkgate's replay leaked)")
			}
		case h.Xid < 0:
			m.t.Fatalf("reply xid %d: zkgate's own packet reached the client", h.Xid)
		case len(m.expected) == 0 || m.expected[0] != h.Xid:
			m.t.Fatalf("reply to xid %d, the client waits for %v first", h.Xid, m.expected)
		default:
			m.expected = m.expected[1:]
		}
	}
}
