package proxy

import (
	"cmp"

	"github.com/zkgate/zkgate/jute"
)

// Unknown outcomes: what a member loss does to requests in flight that cannot be sent
// again (Config.UnsafeInFlight).

// answersLoss: the session's unsafe requests in flight at a member loss are answered with
// CONNECTIONLOSS (Config.UnsafeInFlight), not by closing the client.
func (r *relay) answersLoss() bool {
	switch r.srv.conf().UnsafeInFlight {
	case UnsafeConnectionLoss:
		return true
	case UnsafeAuto:
		r.sess.mu.Lock()
		defer r.sess.mu.Unlock()
		return r.sess.hasReadOnly
	}
	return false
}

// answerLost answers every request the session is owed, in order, when its member is
// lost with a request in flight that cannot be repeated: the ones sent with
// CONNECTIONLOSS (their permits released as lost, and counted against the member), the
// refused ones with the reject code. It returns how many were sent.
func (r *relay) answerLost(o *out) int {
	entries := r.sess.answerOwed(o.owed[:0], true)
	r.sess.settleAnswered()
	zxid := r.sess.zxid()
	code := r.srv.brk.RejectCode()
	sent := 0
	for _, f := range entries {
		if f.rejected {
			o.client = appendReply(o.client, f.xid, zxid, cmp.Or(f.code, code))
			continue
		}
		o.client = appendReply(o.client, f.xid, zxid, jute.ErrConnectionLoss)
		sent++
	}
	r.srv.releasePermits(entries, true)
	if sent > 0 {
		r.srv.obs.Lost(r.member, sent)
		r.srv.ejector().Lost(r.member, sent)
	}
	clear(entries)
	o.owed = entries[:0]
	return sent
}

// settleAnswered marks the requests zkgate has answered as needing no member reply.
func (s *Session) settleAnswered() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.fifo {
		if e := &s.fifo[i]; e.waiting() && e.answered {
			s.replied(e)
		}
	}
	s.compact()
}
