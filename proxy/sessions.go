package proxy

import (
	"cmp"
	"net"
	"slices"
	"time"

	"github.com/zkgate/zkgate/breaker"
	"github.com/zkgate/zkgate/health"
)

// untrack removes a connection; an ended session's counts move to the totals under the
// same lock, so nothing is counted twice or lost.
func (s *Server) untrack(cn *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, cn)
	if s.perClient[cn.ip]--; s.perClient[cn.ip] <= 0 {
		delete(s.perClient, cn.ip)
	}
	if cn.member != "" {
		s.perMember[cn.member]--
	}
	if cn.r != nil {
		cn.r.endEpisode(time.Now(), true)
		s.dropSessionLimit(cn.ip, cn.r.lim)
	}
	if cn.sess != nil {
		i := cn.sess.Info()
		s.retired.Requests += i.Requests
		s.retired.Replies += i.Replies
		s.retired.BytesIn += i.BytesIn
		s.retired.BytesOut += i.BytesOut
		s.retired.Latency.merge(i.Latency)
		s.retired.Limited += i.Limited
	}
}

func clientIP(c net.Conn) string {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return a.IP.String()
	}
	host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
	return host
}

// SessionsPerMember copies the per-member session counts (routing uses them; so do the
// status page and metrics, without listing every session).
func (s *Server) SessionsPerMember() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := make(map[string]int, len(s.perMember))
	for k, v := range s.perMember {
		m[k] = v
	}
	return m
}

// attach records a placed session and makes its relay.
func (s *Server) attach(cn *conn, sess *Session) {
	s.mu.Lock()
	cn.member, cn.sess = sess.member, sess
	cn.r = newRelay(s, sess)
	cn.r.lim = s.newSessionLimit(cn.ip)
	s.perMember[sess.member]++
	s.mu.Unlock()
}

// rehome counts a moved session on its new member.
func (s *Server) rehome(cn *conn, member string) {
	s.mu.Lock()
	s.perMember[cn.member]--
	cn.member = member
	s.perMember[member]++
	s.mu.Unlock()
}

// connList lists the connections, or only those with a session.
func (s *Server) connList(sessionsOnly bool) []*conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*conn, 0, len(s.conns))
	for cn := range s.conns {
		if !sessionsOnly || cn.sess != nil {
			out = append(out, cn)
		}
	}
	return out
}

// Totals counts a server's traffic since it started.
type Totals struct {
	Requests, Replies, BytesIn, BytesOut uint64
	Latency                              latencyStats
	Connections                          int // open client connections, sessions or not
	Sessions                             int // established sessions
	Outstanding                          int // requests in flight to members
	// Coalesced counts the relay loops' waits to gather frames, CoalescedFor their length.
	Coalesced    uint64
	CoalescedFor time.Duration
	// Moves counts sessions moved to another member; MovesClosed, those whose client was
	// closed instead.
	Moves, MovesClosed uint64
	// Limited counts requests over a client's limits (Config.Limits).
	Limited uint64
}

// Totals sums the live sessions and the ended ones.
func (s *Server) Totals() Totals {
	s.mu.Lock()
	t := s.retired
	t.Connections = len(s.conns)
	t.Coalesced, t.CoalescedFor = uint64(s.coalesced.Load()), time.Duration(s.coalescedFor.Load())
	t.Moves, t.MovesClosed = uint64(s.moves.Load()), uint64(s.movesClosed.Load())
	live := make([]*Session, 0, len(s.conns))
	for cn := range s.conns {
		if cn.sess != nil {
			live = append(live, cn.sess)
		}
	}
	s.mu.Unlock()
	for _, sess := range live {
		i := sess.Info()
		t.Requests += i.Requests
		t.Replies += i.Replies
		t.BytesIn += i.BytesIn
		t.BytesOut += i.BytesOut
		t.Outstanding += i.InFlight
		t.Latency.merge(i.Latency)
		t.Limited += i.Limited
		t.Sessions++
	}
	return t
}

// Sessions returns a snapshot of every established session.
func (s *Server) Sessions() []SessionInfo {
	conns := s.connList(true)
	out := make([]SessionInfo, 0, len(conns))
	for _, cn := range conns {
		out = append(out, cn.sess.Info())
	}
	return out
}

// CanServe reports whether a new session could be placed now: the ensemble has a quorum,
// some member serves and is not ejected, and the breaker is not open. ruok and /readyz
// answer from it.
func (s *Server) CanServe() bool {
	v := s.view()
	return v.Quorum && s.brk.State() != breaker.Open &&
		len(Route(RouteInput{View: v, Policy: Any, Excluded: s.ejector().Excluded()})) > 0
}

// ServesReadOnly reports whether zkgate serves only read-only clients now: health sees
// no quorum, and a member runs in read-only mode (readonlymode.enabled) and is not
// ejected. A client that asked for read-only is placed there; the others are refused.
func (s *Server) ServesReadOnly() bool {
	v := s.view()
	if v.Quorum {
		return false
	}
	excluded := s.ejector().Excluded()
	for _, m := range v.Members {
		if m.Status == health.StatusReadOnly && !excluded[m.Address] {
			return true
		}
	}
	return false
}

// MoveOff moves every session on member to another member (it is ejected, down, not
// serving): their clients see no disconnect, unless a session cannot move (see move.go),
// whose client is closed and reconnects through zkgate. It returns how many sessions
// were on member.
func (s *Server) MoveOff(member, why string) int {
	victims := s.on(member)
	for _, cn := range victims {
		cn.lose(why)
	}
	return len(victims)
}

// DrainOff moves every session off member, which still serves (a reload removed it),
// without closing any: each session's new requests are held until the member has
// answered those in flight, then it moves with nothing in flight that it could not send
// again. Past within, or past a sixth of its own negotiated timeout if that is sooner
// (the move may then take another third: the session must not come near expiring), a
// session moves whatever is in flight, as in MoveOff. It returns how many sessions were
// on member.
func (s *Server) DrainOff(member, why string, within time.Duration) int {
	victims := s.on(member)
	now := time.Now()
	for _, cn := range victims {
		var timeout time.Duration
		if cn.sess != nil { // set with member, under s.mu, before on() listed it
			timeout = cn.sess.timeoutOf()
		}
		cn.drain(why, now.Add(drainBound(within, timeout)))
	}
	return len(victims)
}

// drainBound is how long a session with the given negotiated timeout may drain.
func drainBound(within, sessionTimeout time.Duration) time.Duration {
	if sessionTimeout > 0 {
		return min(within, sessionTimeout/6)
	}
	return within
}

// on lists the connections whose session is on member.
func (s *Server) on(member string) []*conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*conn
	for cn := range s.conns {
		if cn.member == member {
			out = append(out, cn)
		}
	}
	return out
}

// LimitedClients gives the requests over the limits by client IP, for the clients with a
// session now, most first.
func (s *Server) LimitedClients() []ClientLimited {
	byIP := map[string]uint64{}
	for _, cn := range s.connList(true) {
		if n := cn.sess.limited.Load(); n > 0 {
			byIP[cn.ip] += n
		}
	}
	out := make([]ClientLimited, 0, len(byIP))
	for ip, n := range byIP {
		out = append(out, ClientLimited{IP: ip, Limited: n})
	}
	slices.SortFunc(out, func(a, b ClientLimited) int { return cmp.Compare(b.Limited, a.Limited) })
	return out
}

// ClientLimited is one client IP's requests over its limits.
type ClientLimited struct {
	IP      string `json:"ip"`
	Limited uint64 `json:"limited_requests"`
}
