package proxy

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/zkgate/zkgate/jute"
)

// The FIFO hands the client its answers in the order it sent the requests, whoever
// answers: the member, or zkgate for rejected requests, and, while the breaker is open,
// for sent requests too (the member's late reply is then swallowed).
func TestSessionFIFO(t *testing.T) {
	sent := func(xid int32) inflight {
		return inflight{xid: xid, op: jute.OpGetData, start: time.Now(), permit: true}
	}
	rej := func(xid int32) inflight { return inflight{xid: xid, op: jute.OpGetData, rejected: true} }
	reply := func(xid int32) jute.ReplyHeader { return jute.ReplyHeader{Xid: xid, Zxid: int64(xid)} }

	// takeRejects is what the relay asks after each reply: the rejected requests now next in line.
	var s Session
	takeRejects := func() []int32 {
		var xids []int32
		for _, f := range s.answerOwed(nil, false) {
			xids = append(xids, f.xid)
		}
		return xids
	}
	s.push(sent(1))
	s.push(rej(2))
	s.push(sent(3))
	s.push(rej(4))
	// Rejected requests wait behind a sent one.
	if got := takeRejects(); len(got) != 0 {
		t.Fatalf("rejects answered ahead of xid 1: %v", got)
	}
	f, fwd, err := s.pop(reply(1), time.Now())
	if err != nil || !fwd || f.xid != 1 || !f.permit {
		t.Fatalf("pop 1: %+v %v %v", f, fwd, err)
	}
	if got := takeRejects(); !slices.Equal(got, []int32{2}) {
		t.Fatalf("after 1: %v, want [2]", got)
	}
	// The breaker opens: everything owed is answered now, in order.
	all := s.answerOwed(nil, true)
	if len(all) != 2 || all[0].xid != 3 || !all[0].permit || all[1].xid != 4 || all[1].permit {
		t.Fatalf("answerOwed(all): %+v", all)
	}
	// The member's late reply to 3 is swallowed, and its permit is not released twice.
	f, fwd, err = s.pop(reply(3), time.Now())
	if err != nil || fwd || f.permit {
		t.Fatalf("late reply: %+v forward=%v %v", f, fwd, err)
	}
	if len(s.fifo) != 0 || s.inFlight() != 0 {
		t.Fatalf("fifo left %+v", s.fifo)
	}
	if s.zxid() != 3 {
		t.Fatalf("lastZxid %d", s.zxid())
	}

	// Auth is answered ahead of the pipeline; anything else out of order is an error.
	s.push(sent(5))
	s.push(inflight{xid: jute.XidAuth, op: jute.OpAuth})
	if f, fwd, err := s.pop(jute.ReplyHeader{Xid: jute.XidAuth}, time.Now()); err != nil || !fwd || f.op != jute.OpAuth {
		t.Fatalf("auth out of order: %+v %v", f, err)
	}
	if _, _, err := s.pop(reply(6), time.Now()); !errors.Is(err, errXidMismatch) {
		t.Fatalf("xid 6 before 5: %v", err)
	}
	// Stalls are reported once, with the permit to release; drain gives the rest.
	s.fifo[0].start = time.Now().Add(-time.Second)
	s.lastReply = s.fifo[0].start // no reply on the session since
	if st, now := s.stalls(time.Now(), 500*time.Millisecond, nil); len(st) != 1 || !st[0].permit || !now {
		t.Fatalf("stalls: %+v", st)
	}
	if st, now := s.stalls(time.Now(), 500*time.Millisecond, nil); len(st) != 0 || !now {
		t.Fatalf("stall reported twice: %+v", st)
	}
	if d := s.drain(); len(d) != 1 || d[0].permit {
		t.Fatalf("drain: %+v", d)
	}
}
