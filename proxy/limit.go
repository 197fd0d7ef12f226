package proxy

import (
	"fmt"
	"time"

	"golang.org/x/time/rate"
)

// Limits protect the ensemble from one client (off by default): a token bucket per client
// IP and per session, and a cap on a session's requests in flight. A request over a limit
// is answered with the breaker's reject code in its place in the session's order, as the
// breaker answers; it never reaches the ensemble, so it cannot slow the ensemble down or
// open the breaker for everyone. Pings, auth, SetWatches and closeSession are never
// limited.
type Limits struct {
	ClientRate   float64 // requests per second per client IP; 0 = no limit
	ClientBurst  int     // bucket size; 0 = the rate, at least 1
	SessionRate  float64 // requests per second per session; 0 = no limit
	SessionBurst int     // bucket size; 0 = the rate, at least 1
	MaxInFlight  int     // requests in flight per session; 0 = no cap
}

func (l Limits) on() bool { return l.ClientRate > 0 || l.SessionRate > 0 || l.MaxInFlight > 0 }

func bucket(r float64, burst int) *rate.Limiter {
	if r <= 0 {
		return nil
	}
	if burst <= 0 {
		burst = max(1, int(r))
	}
	return rate.NewLimiter(rate.Limit(r), burst)
}

// clientLimit is one client IP's bucket, shared by its sessions (refs under Server.mu).
type clientLimit struct {
	bucket *rate.Limiter
	refs   int
}

// sessionLimit is a session's share of the limits, owned by its relay.
type sessionLimit struct {
	cfg    Limits
	bucket *rate.Limiter
	client *clientLimit
	// the episode under way: requests limited since the first, for one log line at
	// its start and one at its end
	since, last time.Time
	n           uint64
	why         string
}

// Limit scopes, the metric's label.
const (
	LimitClient   = "client"
	LimitSession  = "session"
	LimitInFlight = "in-flight"
)

// check says which limit a request meets, or "". inFlight counts the session's
// requests in flight, this one excluded.
func (l *sessionLimit) check(now time.Time, inFlight int) string {
	switch {
	case l.cfg.MaxInFlight > 0 && inFlight >= l.cfg.MaxInFlight:
		return LimitInFlight
	case l.bucket != nil && !l.bucket.AllowN(now, 1):
		return LimitSession
	case l.client != nil && !l.client.bucket.AllowN(now, 1):
		return LimitClient
	}
	return ""
}

// limitQuiet: an episode ends when its session has sent a request within its limits
// this long after the last one limited.
const limitQuiet = time.Second

// limited answers f with the reject code in its place, counts it, and logs the start of
// an episode.
func (r *relay) limited(o *out, f inflight, scope string, now time.Time) {
	l := r.lim
	r.sess.limited.Add(1)
	r.srv.obs.Limited(scope)
	if l.n == 0 {
		l.since, l.why = now, scope
		r.srv.rlog.Warn().Str("client", r.sess.Client).Str("session", fmt.Sprintf("0x%x", r.sess.id)).
			Str("limit", scope).Str("limits", l.cfg.String()).
			Msg("client over its limit: requests answered with the reject code until it slows down")
	}
	l.n++
	l.last = now
	f.rejected = true
	r.sess.push(f)
	r.answer(o, false, false)
}

// endEpisode logs the end of an episode once the session is back within its limits (or
// ends).
func (r *relay) endEpisode(now time.Time, force bool) {
	l := r.lim
	if l == nil || l.n == 0 || (!force && now.Sub(l.last) < limitQuiet) {
		return
	}
	r.srv.rlog.Info().Str("client", r.sess.Client).Str("session", fmt.Sprintf("0x%x", r.sess.id)).
		Str("limit", l.why).Uint64("rejected", l.n).Dur("for", l.last.Sub(l.since)).
		Msg("client back within its limits")
	l.n = 0
}

func (l Limits) String() string {
	return fmt.Sprintf("client %.0f/s burst %d, session %.0f/s burst %d, in flight %d",
		l.ClientRate, l.ClientBurst, l.SessionRate, l.SessionBurst, l.MaxInFlight)
}

// newSessionLimit makes a session's limits, sharing its client IP's bucket; nil when
// the limits are off. Called under s.mu.
func (s *Server) newSessionLimit(ip string) *sessionLimit {
	cfg := s.conf().Limits
	if !cfg.on() {
		return nil
	}
	l := &sessionLimit{cfg: cfg, bucket: bucket(cfg.SessionRate, cfg.SessionBurst)}
	if cfg.ClientRate > 0 {
		cl := s.clientLimits[ip]
		if cl == nil {
			cl = &clientLimit{bucket: bucket(cfg.ClientRate, cfg.ClientBurst)}
			s.clientLimits[ip] = cl
		}
		cl.refs++
		l.client = cl
	}
	return l
}

// dropSessionLimit lets go of a session's share of its client's bucket. Called under s.mu.
func (s *Server) dropSessionLimit(ip string, l *sessionLimit) {
	if l == nil || l.client == nil {
		return
	}
	if l.client.refs--; l.client.refs <= 0 {
		delete(s.clientLimits, ip)
	}
}
