package proxy

import (
	"fmt"
	"time"

	"github.com/zkgate/zkgate/breaker"
	"github.com/zkgate/zkgate/health"
)

// ApplyView feeds a health view to the breaker and the ejector, and moves sessions off
// members that stopped serving. Subscribe it to the health monitor.
func (s *Server) ApplyView(v health.View) {
	ok, why := verdict(&v)
	s.brk.ObserveHealth(ok, why)
	if ro := s.ServesReadOnly(); s.readOnlyService.Swap(ro) != ro {
		if ro {
			s.log.Warn().Str("health", why).Msg("read-only service: no quorum, a member serves read-only; clients that asked for read-only are placed on it, the others are refused")
		} else {
			s.log.Info().Str("health", why).Msg("read-only service over")
		}
	}
	now := time.Now()
	for _, m := range v.Members {
		down := m.Status == health.StatusDown
		reason := m.LastError
		if reason == "" {
			reason = m.Status.String()
		}
		for _, c := range s.ejector().ObserveHealth(m.Address, down, reason, now) {
			s.applyEjection(c)
		}
		if m.Status == health.StatusDown || m.Status == health.StatusNotServing {
			if n := s.MoveOff(m.Address, "member "+m.Status.String()); n > 0 {
				s.log.Info().Str("member", m.Address).Str("status", m.Status.String()).Int("sessions", n).Msg("moving sessions off member")
			}
		}
	}
}

// LastAnswer is when member last answered one of the sessions on it (zero: never seen):
// health's evidence that a member whose probe is late is busy, not dead. The leader
// rarely carries sessions (routing avoids it), but every write committed anywhere went
// through it: for the leader the evidence is also the last time a reply showed the
// ensemble's zxid advance, within the epoch health saw it lead. A zxid of a later epoch
// was committed by a leader elected since: a hung leader whose last srvr answer still
// stands in the view gets no credit for its successor's commits (with it, its late probes
// were excused and moves waited on it until their deadline).
func (s *Server) LastAnswer(member string) time.Time {
	t := s.ejector().LastAnswer(member)
	if v := s.view(); v != nil && v.Leader == member {
		m, _ := v.Member(member)
		c, top := s.committedAt.Load(), s.topZxid.Load()
		if c != 0 && (t.IsZero() || c > t.UnixNano()) && (m.Zxid == 0 || health.Epoch(top) <= health.Epoch(m.Zxid)) {
			t = time.Unix(0, c)
		}
	}
	return t
}

// ProbeAnswered takes health's word that member answered a probe at: evidence that it
// is alive, as an answer on a session is (Ejector.Silent compares members by it).
func (s *Server) ProbeAnswered(member string, at time.Time) { s.ejector().Answered(member, at) }

// answeredOwn is LastAnswer without the leader's commit evidence: the member's own
// answers on its sessions.
func (s *Server) answeredOwn(member string) time.Time { return s.ejector().LastAnswer(member) }

// verdict is health's word for the ensemble breaker: without a quorum with a leader, or
// without a member serving, nothing can work.
func verdict(v *health.View) (bool, string) {
	serving, voters := 0, 0
	for _, m := range v.Members {
		if m.Mode != "observer" {
			voters++
		}
		if m.Status == health.StatusServing {
			serving++
		}
	}
	switch {
	case !v.Quorum && v.Leader == "":
		return false, fmt.Sprintf("no leader (%d of %d members serving)", serving, len(v.Members))
	case !v.Quorum:
		return false, fmt.Sprintf("no quorum (%d of %d voters serving)", serving, voters)
	case serving == 0:
		return false, "no member serving"
	case v.Leader == "":
		return true, fmt.Sprintf("quorum (the leader is not among the %d members configured; %d serving, synced with it)", len(v.Members), serving)
	}
	return true, fmt.Sprintf("quorum with leader %s, %d of %d members serving", v.Leader, serving, len(v.Members))
}

func (s *Server) applyEjection(c breaker.Change) {
	if !c.Ejected {
		return
	}
	if n := s.MoveOff(c.Member, "member ejected: "+c.Reason); n > 0 {
		s.log.Info().Str("member", c.Member).Int("sessions", n).Msg("moving sessions off ejected member")
	}
}

// maintain runs the periodic work: requests stalled past the slow-call threshold are
// reported as slow without waiting for their replies (a hung member sends none), the
// breaker moves to half-open when due, and the ejector decides.
func (s *Server) maintain() {
	defer s.wg.Done()
	every := min(max(s.brk.SlowCall()/5, 20*time.Millisecond), 250*time.Millisecond)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-s.kick:
			s.sweepStalls(time.Now(), 0)
		case now := <-tick.C:
			s.sweepStalls(now, every)
			if now.Sub(s.hotAt) >= hotSample {
				s.hotAt = now
				s.sampleHot(now)
			}
			s.brk.Refresh()
			for _, c := range s.ejector().Evaluate(now) {
				s.applyEjection(c)
			}
		}
	}
}

// settling reports the time right after a session move (twice the slow-call threshold):
// the members that took the moved sessions answer slowly while they re-establish them
// (a thousand sessions off a killed member each revalidate with the leader), which is
// the move's own load, not a fault. The fault that caused the move was counted already.
func (s *Server) settling(now time.Time) bool {
	at := s.movedAt.Load()
	return at != 0 && now.UnixNano()-at < int64(2*s.brk.SlowCall())
}

// countsSlow reports whether a slow call now counts against the ensemble: sessions
// stall together (two or more at the last sweep) and no move is settling. While the
// breaker is not closed every slow call counts: its half-open probes are few, often on
// one session, and must tell a sick ensemble from a recovered one.
func (s *Server) countsSlow(now time.Time) bool {
	if s.brk.State() != breaker.Closed {
		return true
	}
	return s.stalledSessions.Load() >= stalledSessions && !s.settling(now)
}

// stalledSessions is how many sessions must wait past the slow-call threshold at once
// for a member to count as stalled, or for slow calls to count against the ensemble.
const stalledSessions = 2

// sweepStalls reports the requests newly stalled past the slow-call threshold, answers
// what an open breaker owes, and, on a periodic tick, tells the ejector which members kept
// a request waiting past the threshold.
func (s *Server) sweepStalls(now time.Time, tick time.Duration) {
	conns := s.connList(true)
	slow := s.brk.SlowCall()
	open := s.brk.State() == breaker.Open
	type stall struct {
		f      inflight
		member string
		id     int64
	}
	var stalls []stall
	var buf []inflight
	waitedOn := map[string]int{}    // sessions stalled now, by member
	waitedLocal := map[string]int{} // of those, on a read the member answers itself
	sessions := 0
	for _, cn := range conns {
		var stalledNow bool
		buf, stalledNow = cn.sess.stalls(now, slow, buf[:0])
		member := cn.sess.Member()
		if stalledNow {
			sessions++
			waitedOn[member]++
			if cn.sess.stalledLocal(now, slow) {
				waitedLocal[member]++
			}
		}
		for _, f := range buf {
			stalls = append(stalls, stall{f, member, cn.sess.id})
		}
		if open && cn.sess.owes() {
			cn.amu.Lock()
			d := cn.drv
			cn.amu.Unlock()
			if d != nil {
				d.answerOpen(cn)
			}
		}
	}
	s.stalledSessions.Store(int32(sessions))
	s.ejector().SetSilence(slow)
	settling := s.settling(now)
	for _, st := range stalls {
		age := st.f.service // how long the member has kept it without answering the session
		if st.f.permit {
			// The breaker judges the ensemble: a slow call is its business only while
			// sessions stall together. One session's slow requests (a pipeline of 1 MB
			// writes) are its own load; a hung leader or a hung member stalls them all.
			if !s.countsSlow(now) {
				age = 0
			}
			s.brk.Release(0, age, false)
		}
		if !settling {
			s.ejector().Stalled(st.member, st.id, st.f.service)
		}
		s.obs.Stalled(st.member, st.f.op, st.f.service)
	}
	if tick > 0 {
		// A member counts as stalled when two sessions or more wait on it at once: one
		// session's slow requests (its 1 MB writes) are its own load. A member frozen
		// stalls every busy session on it, and health sees one that stops for good.
		stalledOn := map[string]bool{}
		for m, n := range waitedOn {
			stalledOn[m] = n >= stalledSessions
			// Several sessions wait and the member answered none of them, nor any other,
			// for longer than slow_call: frozen, while its peers answer theirs.
			// A write waits on the leader's commit, and a slow leader must not make a
			// follower that carries writers look frozen: writes count only while the
			// ensemble committed something after the member's last answer.
			waiting := waitedLocal[m]
			if own := s.answeredOwn(m); own.IsZero() || s.committedAt.Load() > own.UnixNano() {
				waiting = n
			}
			if waiting >= stalledSessions && !settling {
				for _, c := range s.ejector().Silent(m, waiting, slow, now) {
					s.applyEjection(c)
				}
			}
		}
		s.ejector().StallSample(stalledOn, tick)
	}
}
