package proxy

import (
	"time"

	"github.com/zkgate/zkgate/jute"
)

// Stalls: a request is the member's to answer from when it becomes its session's oldest
// at the member (its service time), and waits on the client, not the member, while
// zkgate holds the member back for a client that does not read.

// stalls marks the sent requests waiting longer than slow that were not marked before,
// appending copies to buf (permit set where the caller must release it now, as slow). It
// also says whether the oldest request still waiting has waited past slow (stalledNow).
func (s *Session) stalls(now time.Time, slow time.Duration, buf []inflight) ([]inflight, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.moving {
		// Its reads wait for the move, not for a member: they go out again when it is
		// done, timed from then. Counted slow, a member's death under a thousand sessions
		// opened the ensemble breaker for everyone.
		return buf, false
	}
	stalled := s.stalledNow(now, slow)
	// The FIFO is in start order, so each sweep starts where the last one stopped.
	for i := min(s.scanned, len(s.fifo)); i < len(s.fifo); i++ {
		e := &s.fifo[i]
		if now.Sub(s.serviceStart(e)) <= slow {
			break // nor any behind it: service starts are in FIFO order
		}
		s.scanned = i + 1
		if e.rejected || e.replied || e.reported || e.xid < 0 { // pings, auth, setWatches hold no permit
			continue
		}
		if s.waitedOnClient(e.start) { // not on the member
			continue
		}
		e.reported = true
		e.service = now.Sub(s.serviceStart(e))
		buf = append(buf, e.handOut())
	}
	return buf, stalled
}

// stalledNow reports whether the session's oldest request still waiting on the member
// has waited past slow (and not because its client held the member back). Under s.mu.
func (s *Session) stalledNow(now time.Time, slow time.Duration) bool {
	for i := range s.fifo {
		if e := &s.fifo[i]; e.waiting() && e.xid >= 0 {
			return now.Sub(s.serviceStart(e)) > slow && !s.waitedOnClient(e.start)
		}
	}
	return false
}

// oldestLocal reports whether the session's oldest request waiting on the member is one
// the member answers on its own (a read), not one that waits on the leader's commit.
// The caller holds mu.
func (s *Session) oldestLocal() bool {
	for i := range s.fifo {
		if e := &s.fifo[i]; e.waiting() && e.xid >= 0 {
			return repeatable(e.op) && e.op != jute.OpSync
		}
	}
	return false
}

// stalledLocal is stalledNow for a read: the member itself keeps it waiting.
func (s *Session) stalledLocal(now time.Time, slow time.Duration) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.oldestLocal() && s.stalledNow(now, slow)
}

// serviceStart is when the member became responsible for e: the later of when it was
// sent and when the member last answered the session. A request behind others of its
// session waits on them, not on the member, while the member keeps answering; it is
// slow only when it waits past the threshold with no reply on the session in between.
// The caller holds mu.
func (s *Session) serviceStart(e *inflight) time.Time {
	if s.lastReply.After(e.start) {
		return s.lastReply
	}
	return e.start
}

// hold records that zkgate stopped (on) or resumed (off) reading the member because the
// client does not read its replies.
func (s *Session) hold(on bool, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.held == on {
		return
	}
	if s.held {
		s.heldEnd = now
	}
	s.held = on
}

// waitedOnClient reports a request started before zkgate last stopped holding the
// session's replies back, or while it still does: its wait says nothing of the member.
// The caller holds mu.
func (s *Session) waitedOnClient(start time.Time) bool {
	return s.held || start.Before(s.heldEnd)
}
