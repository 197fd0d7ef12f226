package breaker

import (
	"fmt"
	"math"
	"math/bits"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/zkgate/zkgate/jute"
)

// counters are one member's data-path statistics since the last Evaluate. The relay
// adds to them without a lock.
type counters struct {
	requests     atomic.Int64
	failures     atomic.Int64
	latencyNs    atomic.Int64
	samples      atomic.Int64
	sessions     atomic.Uint64 // a bit per session (by hash) that had a reply timed
	stalls       atomic.Int64  // requests stalled past slow_call (failures, counted apart)
	stallNs      atomic.Int64  // their ages when reported
	stallSess    atomic.Uint64 // a bit per session that had one
	connectFails atomic.Int64  // in a row
	lastAnswer   atomic.Int64  // unix ns of the member's last answer on any session
	steadySince  atomic.Int64  // unix ns since when its answers came with no gap past the silence threshold
}

// member is one member's ejection state; Ejector.mu guards it.
type member struct {
	addr string
	c    *counters

	windowStart                            time.Time
	requests, failures, latencyNs, samples int64
	sessions                               uint64 // counters.sessions folded over the window
	stalls, stallNs                        int64
	stallSess                              uint64
	stalled                                float64 // recent share of time with a request stalled on it (see StallSample)

	down       bool // health says so
	ejected    bool
	until      time.Time
	count      int // ejections in a row, for the growing ejection time
	lastReturn time.Time
	reason     string
	capLogged  bool
}

// Change is one ejection or return.
type Change struct {
	Member  string
	Ejected bool
	Reason  string
	Until   time.Time // end of the ejection time
}

// MemberStatus is a member's ejection state for the status API.
type MemberStatus struct {
	Address string    `json:"address"`
	Ejected bool      `json:"ejected"`
	Until   time.Time `json:"until,omitzero"`
	Reason  string    `json:"reason,omitempty"`
	Count   int       `json:"ejections"`
}

// Ejector takes single bad members out of rotation. Its decisions are functions of the
// recorded outcomes and the times passed to Evaluate and ObserveHealth.
type Ejector struct {
	cfg     EjectionConfig
	log     zerolog.Logger
	byAddr  map[string]*counters // fixed at construction: lock-free lookups on the hot path
	silence atomic.Int64         // ns without an answer that is a silence (the slow-call threshold; SetSilence)
	maxOut  int                  // a minority
	mu      sync.Mutex
	members []*member
	out     atomic.Pointer[map[string]bool]
}

// NewEjector returns an ejector for the given members. At most (n-1)/2 of them are out
// at once, counting members health reports down: the rest must stay a majority.
func NewEjector(addrs []string, cfg EjectionConfig, log zerolog.Logger) *Ejector {
	j := &Ejector{cfg: cfg, log: log, byAddr: map[string]*counters{}, maxOut: (len(addrs) - 1) / 2}
	for _, a := range addrs {
		c := &counters{}
		j.byAddr[a] = c
		j.members = append(j.members, &member{addr: a, c: c})
	}
	empty := map[string]bool{}
	j.out.Store(&empty)
	j.silence.Store(int64(DefaultConfig().SlowCall)) // until SetSilence says otherwise
	return j
}

// SetSilence sets how long a member may go without answering any session before its
// silence counts (the breaker's slow-call threshold; see Silent).
func (j *Ejector) SetSilence(d time.Duration) {
	if d > 0 {
		j.silence.Store(int64(d))
	}
}

// Config returns the settings.
func (j *Ejector) Config() EjectionConfig { return j.cfg }

// Excluded is the set of ejected members, for routing. It must not be modified.
func (j *Ejector) Excluded() map[string]bool { return *j.out.Load() }

// Reply records a reply from member on a session, with the member's service time (see
// DESIGN.md: from when the request became its session's oldest at the member).
func (j *Ejector) Reply(addr string, session int64, code jute.ErrCode, latency time.Duration) {
	c := j.byAddr[addr]
	if c == nil {
		return
	}
	c.requests.Add(1)
	if code.System() {
		c.failures.Add(1)
	}
	c.latencyNs.Add(int64(latency))
	c.samples.Add(1)
	if bit := sessionBit(session); c.sessions.Load()&bit == 0 {
		c.sessions.Or(bit)
	}
}

// sessionBit spreads sessions over 64 bits (Fibonacci hashing): the bits set estimate
// how many distinct sessions a figure stands on, well enough for a handful.
func sessionBit(id int64) uint64 { return 1 << (uint64(id) * 0x9E3779B97F4A7C15 >> 58) }

// Answered records that member answered a session at (any reply, pings included): the
// evidence that a member whose health probe is late is busy, not dead.
func (j *Ejector) Answered(addr string, at time.Time) {
	c := j.byAddr[addr]
	if c == nil {
		return
	}
	ns := at.UnixNano()
	for {
		old := c.lastAnswer.Load()
		if ns <= old {
			return
		}
		if c.lastAnswer.CompareAndSwap(old, ns) {
			if old == 0 || ns-old > j.silence.Load() {
				c.steadySince.Store(ns) // back from a silence of its own
			}
			return
		}
	}
}

// LastAnswer is when member last answered a session (zero: never, or not a member).
func (j *Ejector) LastAnswer(addr string) time.Time {
	if c := j.byAddr[addr]; c != nil {
		if ns := c.lastAnswer.Load(); ns != 0 {
			return time.Unix(0, ns)
		}
	}
	return time.Time{}
}

// Lost records n requests whose member connection died before their replies.
func (j *Ejector) Lost(addr string, n int) {
	if c := j.byAddr[addr]; c != nil {
		c.requests.Add(int64(n))
		c.failures.Add(int64(n))
	}
}

// ConnectFailed records a failed connect to member.
func (j *Ejector) ConnectFailed(addr string) {
	if c := j.byAddr[addr]; c != nil {
		c.connectFails.Add(1)
	}
}

// Connected records a successful connect to member.
func (j *Ejector) Connected(addr string) {
	if c := j.byAddr[addr]; c != nil && c.connectFails.Load() != 0 {
		c.connectFails.Store(0)
	}
}

// ObserveHealth takes health's word on one member: a member that is down is ejected at
// once (a dead member is out whatever the cap says); one that is back returns when its
// ejection time is over.
func (j *Ejector) ObserveHealth(addr string, down bool, why string, now time.Time) []Change {
	if !j.cfg.Enabled {
		return nil
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	for _, m := range j.members {
		if m.addr != addr {
			continue
		}
		m.down = down
		if down && !m.ejected {
			return []Change{j.eject(m, now, "health: "+why)}
		}
	}
	return nil
}

// Evaluate folds in the statistics recorded since the last call and decides ejections
// and returns as of now.
func (j *Ejector) Evaluate(now time.Time) []Change {
	if !j.cfg.Enabled {
		return nil
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	var changes []Change
	for _, m := range j.members {
		if m.windowStart.IsZero() || now.Sub(m.windowStart) >= j.cfg.Window {
			m.windowStart, m.requests, m.failures, m.latencyNs, m.samples, m.sessions = now, 0, 0, 0, 0, 0
			m.stalls, m.stallNs, m.stallSess = 0, 0, 0
		}
		m.sessions |= m.c.sessions.Swap(0)
		m.stalls += m.c.stalls.Swap(0)
		m.stallNs += m.c.stallNs.Swap(0)
		m.stallSess |= m.c.stallSess.Swap(0)
		m.requests += m.c.requests.Swap(0)
		m.failures += m.c.failures.Swap(0)
		m.latencyNs += m.c.latencyNs.Swap(0)
		m.samples += m.c.samples.Swap(0)
		if m.ejected && !m.down && !now.Before(m.until) {
			m.ejected, m.lastReturn, m.reason, m.stalled = false, now, "", 0
			m.c.connectFails.Store(0)
			changes = append(changes, Change{Member: m.addr, Reason: "ejection time over"})
			j.log.Info().Str("member", m.addr).Int("ejections", m.count).Msg("member returned to rotation")
		}
		if !m.ejected && m.count > 0 && now.Sub(m.lastReturn) >= j.cfg.MaxTime {
			m.count = 0 // well behaved for a while: the next ejection starts at base_time again
		}
	}
	if len(changes) > 0 {
		j.publish()
	}
	for _, m := range j.members {
		if m.ejected || m.down {
			continue
		}
		why := j.verdict(m)
		if why == "" {
			m.capLogged = false
			continue
		}
		if j.outCount() >= j.maxOut {
			if !m.capLogged {
				m.capLogged = true
				j.log.Warn().Str("member", m.addr).Str("reason", why).Int("max_ejected", j.maxOut).
					Msg("not ejecting member: the rest would no longer be a majority")
			}
			continue
		}
		changes = append(changes, j.eject(m, now, why))
	}
	return changes
}

// verdict says why m should be ejected, or "". Each rule judges m against its peers
// (see outlier and standsOut): a figure every member shares is the ensemble's, not m's.
func (j *Ejector) verdict(m *member) string {
	connectFails := func(p *member) float64 { return float64(p.c.connectFails.Load()) }
	if n := m.c.connectFails.Load(); j.standsOut(m, float64(n), float64(j.cfg.ConsecutiveConnectFailures), connectFails) {
		return fmt.Sprintf("%d consecutive connect failures", n)
	}
	stalled := func(p *member) float64 { return p.stalled }
	if j.cfg.StalledRatio > 0 && j.standsOut(m, m.stalled, j.cfg.StalledRatio, stalled) {
		return fmt.Sprintf("requests stalled on it past the slow-call threshold %.0f%% of the last %v (threshold %.0f%%)",
			100*m.stalled, j.stallHorizon(), 100*j.cfg.StalledRatio)
	}
	ratio := func(p *member) float64 { r, _ := j.failureRatio(p); return r }
	if r, requests := j.failureRatio(m); requests >= int64(j.cfg.MinRequests) && j.standsOut(m, r, j.cfg.FailureRatio, ratio) {
		return fmt.Sprintf("failure ratio %.2f over %d requests (threshold %.2f)", r, requests, j.cfg.FailureRatio)
	}
	stalledTogether := bits.OnesCount64(m.stallSess) >= j.cfg.MinSessions
	// Latency compares like with like: figures that stand on enough replies and enough
	// distinct sessions, so one session's burst cannot make its member an outlier.
	// Stalls stand in the figure (at their age when reported) once sessions stalled
	// together, as in the failure ratio.
	judged := func(p *member) bool {
		return p.samples >= int64(j.cfg.MinRequests) && bits.OnesCount64(p.sessions) >= j.cfg.MinSessions
	}
	if !judged(m) {
		return ""
	}
	latencyNs, samples := m.latencyNs, m.samples
	if stalledTogether {
		latencyNs, samples = latencyNs+m.stallNs, samples+m.stalls
	}
	mean := time.Duration(latencyNs / samples)
	var peers []time.Duration
	for _, p := range j.members {
		if p != m && !p.ejected && !p.down && judged(p) {
			peers = append(peers, time.Duration(p.latencyNs/p.samples))
		}
	}
	if len(peers) == 0 || mean < j.cfg.LatencyFloor {
		return ""
	}
	sort.Slice(peers, func(a, b int) bool { return peers[a] < peers[b] })
	median := peers[len(peers)/2]
	if len(peers)%2 == 0 {
		median = (peers[len(peers)/2-1] + peers[len(peers)/2]) / 2
	}
	if float64(mean) > j.cfg.LatencyFactor*float64(median) {
		return fmt.Sprintf("mean service time %v over %d requests of %d sessions is more than %.1f× the peers' median %v",
			mean.Round(time.Microsecond), samples, bits.OnesCount64(m.sessions), j.cfg.LatencyFactor, median.Round(time.Microsecond))
	}
	return ""
}

func (j *Ejector) outCount() int {
	n := 0
	for _, m := range j.members {
		if m.ejected || m.down {
			n++
		}
	}
	return n
}

// eject takes m out until base_time × 2^(repeats), capped at max_time.
func (j *Ejector) eject(m *member, now time.Time, why string) Change {
	d := time.Duration(float64(j.cfg.BaseTime) * math.Pow(2, float64(m.count)))
	if d > j.cfg.MaxTime || d <= 0 {
		d = j.cfg.MaxTime
	}
	m.count++
	m.ejected, m.until, m.reason, m.capLogged = true, now.Add(d), why, false
	m.windowStart, m.requests, m.failures, m.latencyNs, m.samples, m.sessions = now, 0, 0, 0, 0, 0
	m.stalls, m.stallNs, m.stallSess = 0, 0, 0
	j.publish()
	j.log.Warn().Str("member", m.addr).Str("reason", why).Dur("for", d).Int("ejections", m.count).Msg("member ejected")
	return Change{Member: m.addr, Ejected: true, Reason: why, Until: m.until}
}

func (j *Ejector) publish() {
	out := map[string]bool{}
	for _, m := range j.members {
		if m.ejected {
			out[m.addr] = true
		}
	}
	j.out.Store(&out)
}

// Status reports every member's ejection state.
func (j *Ejector) Status() []MemberStatus {
	j.mu.Lock()
	defer j.mu.Unlock()
	out := make([]MemberStatus, 0, len(j.members))
	for _, m := range j.members {
		s := MemberStatus{Address: m.addr, Ejected: m.ejected, Count: m.count}
		if m.ejected {
			s.Until, s.Reason = m.until, m.reason
		}
		out = append(out, s)
	}
	return out
}
