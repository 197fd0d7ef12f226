package breaker

import (
	"fmt"
	"time"
)

// Stalls: requests that wait on a member past the slow-call threshold with no answer on
// their session, and members that answer nothing at all. What counts against a member
// here is what sessions show together, never one session's own load.

// Stalled records a request of session in flight on member for longer than the
// slow-call threshold with no reply on the session meanwhile, as a failure whose latency
// is at least age. Its reply, if it comes, is not recorded. Stalls count toward the
// failure ratio only once min_sessions distinct sessions had one: one session's slow
// requests (a pipeline of 1 MB writes, say) are that session's load, not the member's
// fault; a member that stops answering stalls every session on it (and health sees it).
func (j *Ejector) Stalled(addr string, session int64, age time.Duration) {
	if c := j.byAddr[addr]; c != nil {
		c.requests.Add(1)
		c.stalls.Add(1)
		c.stallNs.Add(int64(age))
		if bit := sessionBit(session); c.stallSess.Load()&bit == 0 {
			c.stallSess.Or(bit)
		}
	}
}

// Silent ejects member when it has answered no session at all for longer than slow
// while waiting sessions (two or more) wait on it, and a peer in rotation kept answering
// all along: a frozen member (SIGSTOP, a long stop-the-world pause, a dead disk) seen
// from the data path, a second or more before its health probes time out. Peers silent
// too (a starved machine, an election, every member frozen at once) are not one member's
// trouble, and nothing is ejected, even when a peer comes back a few milliseconds before
// it: a peer vouches only when its answers showed no silence longer than slow since
// before member went quiet, and none now.
func (j *Ejector) Silent(addr string, waiting int, slow time.Duration, now time.Time) []Change {
	if !j.cfg.Enabled {
		return nil
	}
	j.SetSilence(slow)
	j.mu.Lock()
	defer j.mu.Unlock()
	var m *member
	for _, p := range j.members {
		if p.addr == addr {
			m = p
		}
	}
	if m == nil || m.ejected || m.down || j.outCount() >= j.maxOut {
		return nil
	}
	last := m.c.lastAnswer.Load()
	silentFor := now.Sub(time.Unix(0, last))
	if last == 0 || silentFor <= slow {
		return nil
	}
	peerAnswers := false
	for _, p := range j.members {
		if p == m || p.ejected || p.down {
			continue
		}
		pl := p.c.lastAnswer.Load()
		if pl > last && p.c.steadySince.Load() <= last && now.Sub(time.Unix(0, pl)) <= slow {
			peerAnswers = true
		}
	}
	if !peerAnswers {
		return nil
	}
	why := fmt.Sprintf("answered none of its sessions for %v while %d waited on it past the slow-call threshold, and its peers answered theirs",
		silentFor.Round(time.Millisecond), waiting)
	return []Change{j.eject(m, now, why)}
}

// stallHorizon is the time StallSample's average reaches back over, about.
func (j *Ejector) stallHorizon() time.Duration { return max(j.cfg.Window/2, time.Second) }

// StallSample takes one sweep of the sessions: which members had a request waiting on
// them past the slow-call threshold, over the tick since the last sweep. Each member keeps
// an exponentially weighted share of recent time stalled.
//
// It catches the member that stalls again and again without dying, a gray failure that
// per-request statistics miss: a client blocked behind a frozen member sends nothing
// more, so one slow request is diluted by the many fast ones the member answers between
// its stalls (a member frozen 800 ms of every second showed a 3 % failure ratio and a mean
// latency of about 20 ms, and was never ejected; it is stalled about 30 % of the time).
func (j *Ejector) StallSample(stalled map[string]bool, tick time.Duration) {
	if !j.cfg.Enabled || j.cfg.StalledRatio == 0 {
		return
	}
	alpha := min(float64(tick)/float64(j.stallHorizon()), 1)
	j.mu.Lock()
	defer j.mu.Unlock()
	for _, m := range j.members {
		x := 0.0
		if stalled[m.addr] {
			x = 1
		}
		m.stalled += alpha * (x - m.stalled)
	}
}
