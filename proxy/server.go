package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/zkgate/zkgate/breaker"
	"github.com/zkgate/zkgate/health"
	"github.com/zkgate/zkgate/jute"
)

// Coalescing defaults (Config.Coalesce).
const (
	DefaultCoalesce      = 2 * time.Millisecond
	DefaultCoalesceShare = 0.125
)

// Config is one ensemble's data-path settings. Zero values take the defaults.
type Config struct {
	Name             string        // ensemble name, for logs; default "default"
	Policy           Policy        // default LeastConnections
	MaxFrame         int           // largest frame payload; default jute.DefaultMaxFrame
	HandshakeTimeout time.Duration // accept to ConnectResponse; default 10s, as ZooKeeper's own
	DialTimeout      time.Duration // per member connect attempt; default 2s
	MaxConnections   int           // per listener; 0 = unlimited
	MaxPerClient     int           // per client IP address; 0 = unlimited
	DrainTimeout     time.Duration // Shutdown waits this long for sessions to end; default 10s
	// Loops is the number of relay event loops; default GOMAXPROCS-1, at least 1.
	Loops int
	// Coalesce is the longest a relay loop waits before reading, so that more frames
	// travel per system call, once requests queue at the ensemble (8 or more in flight on
	// the loop). The wait is also at most CoalesceShare of the members' average reply
	// latency: it costs that much latency at most, where requests already wait far
	// longer. Default 2ms; negative turns coalescing off.
	Coalesce      time.Duration
	CoalesceShare float64 // default 0.125
}

func (c Config) withDefaults() Config {
	if c.Name == "" {
		c.Name = "default"
	}
	if c.Policy == "" {
		c.Policy = LeastConnections
	}
	if c.MaxFrame <= 0 {
		c.MaxFrame = jute.DefaultMaxFrame
	}
	if c.HandshakeTimeout <= 0 {
		c.HandshakeTimeout = 10 * time.Second
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = 2 * time.Second
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = 10 * time.Second
	}
	if c.Loops <= 0 {
		c.Loops = max(1, runtime.GOMAXPROCS(0)-1)
	}
	if c.Coalesce == 0 {
		c.Coalesce = DefaultCoalesce
	}
	if c.CoalesceShare <= 0 {
		c.CoalesceShare = DefaultCoalesceShare
	}
	return c
}

// ViewSource gives the current health view; *health.Monitor is one.
type ViewSource interface{ View() *health.View }

// Server serves one ensemble's clients.
type Server struct {
	cfg   Config
	views ViewSource
	obs   Observer
	brk   *breaker.Ensemble
	ej    *breaker.Ejector
	log   zerolog.Logger
	rlog  zerolog.Logger // sampled: refusals during a retry storm
	rr    atomic.Uint64
	maint sync.Once
	stop  chan struct{}
	kick  chan struct{} // the breaker opened: answer what sessions are owed now
	loops []*loop       // relay event loops, started with the first Serve
	lerr  error         // why the loops could not start
	lstop sync.Once
	// the loops' coalescing waits (Totals)
	coalesced, coalescedFor atomic.Int64

	mu        sync.Mutex // guards below
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	perMember map[string]int
	perClient map[string]int // open connections by client IP
	closing   bool

	wg      sync.WaitGroup // accept loops and connections
	retired Totals         // what ended sessions did; under mu
	started time.Time
}

// Option configures a Server.
type Option func(*Server)

// WithObserver sets the Observer that sees every request's outcome.
func WithObserver(o Observer) Option { return func(s *Server) { s.obs = o } }

// WithBreaker sets the ensemble breaker; the default is breaker.DefaultConfig().
func WithBreaker(b *breaker.Ensemble) Option { return func(s *Server) { s.brk = b } }

// WithEjector sets the member ejector; the default is breaker.DefaultEjectionConfig()
// over the members of the first health view.
func WithEjector(j *breaker.Ejector) Option { return func(s *Server) { s.ej = j } }

// NewServer returns a server for one ensemble whose health comes from views.
func NewServer(cfg Config, views ViewSource, log zerolog.Logger, opts ...Option) *Server {
	s := &Server{
		cfg: cfg.withDefaults(), views: views, obs: nopObserver{},
		log:       log.With().Str("ensemble", cfg.withDefaults().Name).Logger(),
		listeners: map[net.Listener]struct{}{}, conns: map[*conn]struct{}{}, perMember: map[string]int{}, perClient: map[string]int{},
		started: time.Now(), stop: make(chan struct{}), kick: make(chan struct{}, 1),
	}
	s.rlog = s.log.Sample(&zerolog.BurstSampler{Burst: 20, Period: time.Second})
	for _, o := range opts {
		o(s)
	}
	if s.brk == nil {
		s.brk = breaker.NewEnsemble(s.cfg.Name, breaker.DefaultConfig(), log)
	}
	if s.ej == nil {
		var addrs []string
		for _, m := range views.View().Members {
			addrs = append(addrs, m.Address)
		}
		s.ej = breaker.NewEjector(addrs, breaker.DefaultEjectionConfig(), s.log)
	}
	s.brk.Subscribe(func(t breaker.Transition) {
		if t.To == breaker.Open {
			select {
			case s.kick <- struct{}{}:
			default:
			}
		}
	})
	return s
}

// Breaker is the ensemble breaker.
func (s *Server) Breaker() *breaker.Ensemble { return s.brk }

// Ejector is the member ejector.
func (s *Server) Ejector() *breaker.Ejector { return s.ej }

// ErrServerClosed is returned by Serve after Close or Shutdown.
var ErrServerClosed = errors.New("proxy: server closed")

// Serve accepts clients on ln until Close or Shutdown. It always returns an error.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	s.maint.Do(func() {
		for range s.cfg.Loops {
			l, err := newLoop(s)
			if err != nil {
				s.lerr = fmt.Errorf("proxy: starting relay loops: %w", err)
				break
			}
			s.loops = append(s.loops, l)
		}
		s.wg.Add(1)
		go s.maintain()
	})
	defer s.wg.Done()
	if s.lerr != nil {
		ln.Close()
		return s.lerr
	}
	s.log.Info().Str("listen", ln.Addr().String()).Msg("accepting clients")
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closing := s.closing
			s.mu.Unlock()
			if closing {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, errTooManyFiles) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.log.Warn().Err(err).Dur("retry_in", delay).Msg("accept failed")
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		if !s.track(c) {
			continue
		}
	}
}

// track starts a connection's goroutine unless the server is closing or full.
func (s *Server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		c.Close()
		return false
	}
	if s.cfg.MaxConnections > 0 && len(s.conns) >= s.cfg.MaxConnections {
		c.Close()
		s.obs.Refused("limit")
		s.rlog.Warn().Str("client", c.RemoteAddr().String()).Int("max_connections", s.cfg.MaxConnections).Msg("refused client: connection limit reached")
		return false
	}
	ip := clientIP(c)
	if s.cfg.MaxPerClient > 0 && s.perClient[ip] >= s.cfg.MaxPerClient {
		c.Close()
		s.obs.Refused("limit")
		s.rlog.Warn().Str("client", c.RemoteAddr().String()).Int("max_connections_per_client", s.cfg.MaxPerClient).Msg("refused client: per-address connection limit reached")
		return false
	}
	s.perClient[ip]++
	cn := &conn{srv: s, client: c, addr: c.RemoteAddr().String(), ip: ip}
	s.conns[cn] = struct{}{}
	s.wg.Add(1)
	go cn.serve()
	return true
}

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
	if cn.sess != nil {
		i := cn.sess.Info()
		s.retired.Requests += i.Requests
		s.retired.Replies += i.Replies
		s.retired.BytesIn += i.BytesIn
		s.retired.BytesOut += i.BytesOut
		s.retired.Latency.merge(i.Latency)
	}
}

func clientIP(c net.Conn) string {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return a.IP.String()
	}
	host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
	return host
}

// sessionsPerMember copies the per-member session counts for routing.
func (s *Server) sessionsPerMember() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := make(map[string]int, len(s.perMember))
	for k, v := range s.perMember {
		m[k] = v
	}
	return m
}

func (s *Server) attach(cn *conn, sess *Session) {
	s.mu.Lock()
	cn.member, cn.sess = sess.Member, sess
	s.perMember[sess.Member]++
	s.mu.Unlock()
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
}

// Totals sums the live sessions and the ended ones.
func (s *Server) Totals() Totals {
	s.mu.Lock()
	t := s.retired
	t.Connections = len(s.conns)
	t.Coalesced, t.CoalescedFor = uint64(s.coalesced.Load()), time.Duration(s.coalescedFor.Load())
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
		t.Sessions++
	}
	return t
}

// Sessions returns a snapshot of every established session.
func (s *Server) Sessions() []SessionInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]SessionInfo, 0, len(s.conns))
	for cn := range s.conns {
		if cn.sess != nil {
			out = append(out, cn.sess.Info())
		}
	}
	return out
}

// CanServe reports whether a new session could be placed now: the ensemble has a quorum,
// some member serves and is not ejected, and the breaker is not open. ruok and /readyz
// answer from it.
func (s *Server) CanServe() bool {
	v := s.views.View()
	return v.Quorum && s.brk.State() != breaker.Open &&
		len(Route(RouteInput{View: v, Policy: Any, Excluded: s.ej.Excluded()})) > 0
}

// CloseMember closes the client connections of every session on member, so those
// clients reconnect through zkgate to another member (ejection, member down).
func (s *Server) CloseMember(member, reason string) int {
	s.mu.Lock()
	var victims []*conn
	for cn := range s.conns {
		if cn.member == member {
			victims = append(victims, cn)
		}
	}
	s.mu.Unlock()
	for _, cn := range victims {
		cn.abort(reason)
	}
	return len(victims)
}

// Close stops accepting and closes every connection at once, then waits for their
// goroutines. It is idempotent.
func (s *Server) Close() error {
	s.stopAccepting()
	s.mu.Lock()
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	s.mu.Unlock()
	s.mu.Lock()
	conns := make([]*conn, 0, len(s.conns))
	for cn := range s.conns {
		conns = append(conns, cn)
	}
	s.mu.Unlock()
	for _, cn := range conns {
		cn.abort("zkgate shutting down")
	}
	s.wg.Wait()
	s.lstop.Do(func() {
		for _, l := range s.loops {
			l.stop()
		}
	})
	return nil
}

// pickLoop chooses the relay loop with the fewest sessions for a new one.
func (s *Server) pickLoop() *loop {
	best := s.loops[0]
	for _, l := range s.loops[1:] {
		if l.sessions.Load() < best.sessions.Load() {
			best = l
		}
	}
	best.sessions.Add(1)
	return best
}

// Shutdown stops accepting, lets sessions end on their own until ctx is done or the
// drain timeout passes, then closes the rest.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopAccepting()
	ctx, cancel := context.WithTimeout(ctx, s.cfg.DrainTimeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		s.mu.Lock()
		n := len(s.conns)
		s.mu.Unlock()
		if n == 0 {
			break
		}
		select {
		case <-ctx.Done():
			s.log.Info().Int("sessions", n).Msg("drain time over: closing remaining sessions")
			return s.Close()
		case <-tick.C:
		}
	}
	return s.Close()
}

func (s *Server) stopAccepting() {
	s.mu.Lock()
	s.closing = true
	lns := s.listeners
	s.listeners = map[net.Listener]struct{}{}
	s.mu.Unlock()
	for ln := range lns {
		ln.Close()
	}
}

// ApplyView feeds a health view to the breaker and the ejector, and moves sessions off
// members that stopped serving: their client sockets are closed so the clients reconnect
// through zkgate and land on a serving member. Subscribe it to the health monitor.
func (s *Server) ApplyView(v health.View) {
	ok, why := verdict(&v)
	s.brk.ObserveHealth(ok, why)
	now := time.Now()
	for _, m := range v.Members {
		down := m.Status == health.StatusDown
		reason := m.LastError
		if reason == "" {
			reason = m.Status.String()
		}
		for _, c := range s.ej.ObserveHealth(m.Address, down, reason, now) {
			s.applyEjection(c)
		}
		if m.Status == health.StatusDown || m.Status == health.StatusNotServing {
			if n := s.CloseMember(m.Address, "member "+m.Status.String()); n > 0 {
				s.log.Info().Str("member", m.Address).Str("status", m.Status.String()).Int("sessions", n).Msg("moved sessions off member")
			}
		}
	}
}

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
	case v.Leader == "":
		return false, fmt.Sprintf("no leader (%d of %d members serving)", serving, len(v.Members))
	case !v.Quorum:
		return false, fmt.Sprintf("no quorum (%d of %d voters serving)", serving, voters)
	case serving == 0:
		return false, "no member serving"
	}
	return true, fmt.Sprintf("quorum with leader %s, %d of %d members serving", v.Leader, serving, len(v.Members))
}

func (s *Server) applyEjection(c breaker.Change) {
	if !c.Ejected {
		return
	}
	if n := s.CloseMember(c.Member, "member ejected: "+c.Reason); n > 0 {
		s.log.Info().Str("member", c.Member).Int("sessions", n).Msg("moved sessions off ejected member")
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
			s.sweepStalls(time.Now())
		case now := <-tick.C:
			s.sweepStalls(now)
			s.brk.Refresh()
			for _, c := range s.ej.Evaluate(now) {
				s.applyEjection(c)
			}
		}
	}
}

func (s *Server) sweepStalls(now time.Time) {
	s.mu.Lock()
	conns := make([]*conn, 0, len(s.conns))
	for cn := range s.conns {
		if cn.sess != nil {
			conns = append(conns, cn)
		}
	}
	s.mu.Unlock()
	slow := s.brk.SlowCall()
	open := s.brk.State() == breaker.Open
	var stalled []inflight
	for _, cn := range conns {
		stalled = cn.sess.stalls(now, slow, stalled[:0])
		for _, f := range stalled {
			age := now.Sub(f.start)
			if f.permit {
				s.brk.Release(0, age, false)
			}
			s.ej.Stalled(cn.member, age)
			s.obs.Stalled(cn.member, f.op, age)
		}
		if open {
			cn.answerOpen()
		}
	}
}
