package proxy

import (
	"cmp"
	"fmt"
	"time"

	"github.com/zkgate/zkgate/breaker"
	"github.com/zkgate/zkgate/jute"
)

// answer appends the reject code for the requests the session owes an answer (see
// Session.answerOwed: all of them with sentToo, else the rejected ones next in line) to
// o.client, in FIFO order, and releases their permits (as lost when the member
// connection died). It returns how many it answered.
func (r *relay) answer(o *out, sentToo, memberLost bool) int {
	entries := r.sess.answerOwed(o.owed[:0], sentToo)
	if len(entries) == 0 {
		return 0
	}
	code := r.srv.brk.RejectCode()
	zxid := r.sess.zxid()
	for _, f := range entries {
		o.client = appendReply(o.client, f.xid, zxid, cmp.Or(f.code, code))
		if !f.rejected { // a sent request answered early; rejected ones were counted when refused
			r.srv.obs.Rejected(f.op, code)
		}
	}
	r.srv.releasePermits(entries, memberLost)
	n := len(entries)
	clear(entries)
	o.owed = entries[:0]
	return n
}

// reject answers a request zkgate will not send, in FIFO order: after the replies to the
// requests already in flight, or, while the breaker is open, at once together with them.
func (r *relay) reject(o *out, f inflight) {
	f.rejected = true
	r.srv.obs.Rejected(f.op, r.srv.brk.RejectCode())
	r.sess.push(f)
	r.answer(o, r.srv.brk.State() == breaker.Open, false)
}

// refuseReconfig answers a reconfig with RECONFIGDISABLED, in FIFO order, without
// sending it. zkgate's members come from its own configuration: an ensemble changed
// behind its back would leave it routing to members that are gone and blind to new
// ones. The operator runs reconfig against a member, then changes zkgate's
// configuration and reloads it (SIGHUP), which moves sessions off removed members.
func (r *relay) refuseReconfig(o *out, f inflight) {
	f.rejected, f.code = true, jute.ErrReconfigDisabled
	r.srv.rlog.Warn().Str("client", r.sess.Client).Str("session", fmt.Sprintf("0x%x", r.sess.id)).
		Msg("reconfig refused (RECONFIGDISABLED): zkgate's members come from its configuration; run reconfig against a member, then update zkgate's configuration and reload it")
	r.sess.push(f)
	r.answer(o, false, false)
}

// answerOpen answers everything the session is owed at once while the breaker is open,
// so refused requests are not held behind requests a hung member will not answer.
func (r *relay) answerOpen(o *out) {
	if r.srv.brk.State() == breaker.Open && r.sess.owes() {
		r.answer(o, true, false)
	}
}

// releasePermits gives back the permits of requests that get no member reply counted:
// their outcome is lost, or what their service time says (slow by now, or not) where
// slow calls count (Server.countsSlow).
func (s *Server) releasePermits(entries []inflight, lost bool) {
	now := time.Now()
	counts := s.countsSlow(now)
	for _, f := range entries {
		if f.permit {
			age := f.service
			if !counts {
				age = min(age, s.brk.SlowCall())
			}
			s.brk.Release(0, age, lost)
		}
	}
}

// settle releases what the session's FIFO still holds when it ends: the permits of sent
// requests without a reply (as lost when the member connection broke), counted against
// member. It returns how many there were.
func (r *relay) settle(memberBroke bool) int {
	entries := r.sess.drain()
	r.srv.releasePermits(entries, memberBroke)
	if memberBroke && len(entries) > 0 {
		r.srv.obs.Lost(r.member, len(entries))
		r.srv.ejector().Lost(r.member, len(entries))
	}
	return len(entries)
}

// closeAnswering is how a session ends when its member is lost and it cannot move:
// while the breaker is not closed, what was in flight is answered with the reject code,
// in order, before the client sees the connection close.
func (r *relay) closeAnswering(o *out) int {
	if r.srv.brk.State() == breaker.Closed {
		return 0
	}
	return r.answer(o, true, true)
}

// appendRequest appends a request frame built from a header and a body as encoded.
func appendRequest(dst []byte, xid int32, op jute.OpCode, body []byte) []byte {
	dst = jute.AppendInt(dst, int32(jute.RequestHeaderLen+len(body)))
	h := jute.RequestHeader{Xid: xid, Type: op}
	return append(h.Append(dst), body...)
}
