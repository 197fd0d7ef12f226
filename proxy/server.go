package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/zkgate/zkgate/breaker"
	"github.com/zkgate/zkgate/health"
	"github.com/zkgate/zkgate/hotspot"
)

// ViewSource gives the current health view; *health.Monitor is one.
type ViewSource interface{ View() *health.View }

// Server serves one ensemble's clients.
type Server struct {
	// The settings, the health view's source and the ejector can be replaced while the
	// server runs (Reconfigure, SetViews, SetEjector: a configuration reload).
	cfg     atomic.Pointer[Config]
	views   atomic.Pointer[viewSource]
	ej      atomic.Pointer[breaker.Ejector]
	hot     atomic.Pointer[hotspot.Tracker] // nil when Config.Hotspots is off
	obs     Observer
	brk     *breaker.Ensemble
	log     zerolog.Logger
	rlog    zerolog.Logger // sampled: refusals during a retry storm
	rr      atomic.Uint64
	maint   sync.Once
	stop    chan struct{}
	ctx     context.Context // ends with Close: moves under way give up
	cancel  context.CancelFunc
	kick    chan struct{} // the breaker opened: answer what sessions are owed now
	dials   chan struct{} // move dials under way (moveDials)
	placing chan struct{} // new sessions' dials under way (placeDials)
	loops   []*loop       // relay event loops, started with the first Serve
	lerr    error         // why the loops could not start
	lobby   *lobby        // accepted connections until their first request is in (Linux)
	lstop   sync.Once
	// the loops' coalescing waits (Totals)
	coalesced, coalescedFor atomic.Int64
	// session moves done and refused (Totals)
	moves, movesClosed atomic.Int64
	// ownLimit logs member connects zkgate could not make for want of a descriptor
	ownLimit health.OwnLimitLog
	// stalledSessions: sessions waiting on their member past the slow-call threshold at
	// the last stall sweep (slow calls count against the ensemble only from two up)
	stalledSessions atomic.Int32
	// movedAt is when the last session move attached (unix ns): the members that took
	// moved sessions are busy re-establishing them for a while (settling)
	movedAt atomic.Int64
	// committedAt is when a reply last showed a zxid higher than any before (unix ns):
	// the ensemble was committing writes then
	topZxid, committedAt atomic.Int64
	// silentAt: member address -> when a move's attempt on it last got no answer in
	// time (noteSilent)
	silentAt        sync.Map
	readOnlyService atomic.Bool // ServesReadOnly as of the last view, for its log lines
	hotAt           time.Time   // the last sampleHot; maintain's

	// TLS sessions relayed by a loop, and by the goroutine driver although the loops
	// run (TLSSessions); the fallbacks' reasons logged so far
	tlsFast, tlsSlow atomic.Int64
	tlsReasons       sync.Map

	mu        sync.Mutex // guards below
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	perMember map[string]int
	perClient map[string]int // open connections by client IP
	// clientLimits are the client IPs' buckets (Config.Limits), shared by their sessions
	clientLimits map[string]*clientLimit
	closing      bool

	wg      sync.WaitGroup // accept loops, connections and moves
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
func WithEjector(j *breaker.Ejector) Option { return func(s *Server) { s.ej.Store(j) } }

// NewServer returns a server for one ensemble whose health comes from views.
func NewServer(cfg Config, views ViewSource, log zerolog.Logger, opts ...Option) *Server {
	s := &Server{
		obs:       nopObserver{},
		log:       log.With().Str("ensemble", cfg.withDefaults().Name).Logger(),
		listeners: map[net.Listener]struct{}{}, conns: map[*conn]struct{}{}, perMember: map[string]int{}, perClient: map[string]int{}, clientLimits: map[string]*clientLimit{},
		started: time.Now(), stop: make(chan struct{}), kick: make(chan struct{}, 1),
		dials: make(chan struct{}, moveDials), placing: make(chan struct{}, placeDials),
	}
	c := cfg.withDefaults()
	s.cfg.Store(&c)
	s.views.Store(&viewSource{views})
	s.hot.Store(newHotTracker(c.Hotspots))
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.rlog = s.log.Sample(&zerolog.BurstSampler{Burst: 20, Period: time.Second})
	for _, o := range opts {
		o(s)
	}
	if s.brk == nil {
		s.brk = breaker.NewEnsemble(s.conf().Name, breaker.DefaultConfig(), log)
	}
	if s.ejector() == nil {
		var addrs []string
		for _, m := range views.View().Members {
			addrs = append(addrs, m.Address)
		}
		s.ej.Store(breaker.NewEjector(addrs, breaker.DefaultEjectionConfig(), s.log))
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
func (s *Server) Ejector() *breaker.Ejector { return s.ejector() }

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
	s.maint.Do(s.start)
	defer s.wg.Done()
	if s.lerr != nil {
		ln.Close()
		return s.lerr
	}
	s.log.Info().Str("listen", ln.Addr().String()).Str("driver", s.conf().Driver).Msg("accepting clients")
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
			if errors.Is(err, net.ErrClosed) {
				return err // closed by its owner, not by zkgate: nothing more will come
			}
			// Out of descriptors or buffers, an aborted connection, a timeout: back off and
			// keep serving the sessions zkgate has.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.rlog.Warn().Err(err).Dur("retry_in", delay).Msg("accept failed")
			select {
			case <-time.After(delay):
			case <-s.stop:
			}
			continue
		}
		delay = 0
		s.track(c)
	}
}

// start starts the relay loops (with the epoll driver) and the maintenance goroutine.
func (s *Server) start() {
	if s.conf().Driver == DriverEpoll {
		for range s.conf().Loops {
			l, err := newLoop(s)
			if err != nil {
				s.lerr = fmt.Errorf("proxy: starting relay loops: %w", err)
				break
			}
			s.loops = append(s.loops, l)
		}
	}
	if lb, err := newLobby(s); err != nil {
		s.log.Warn().Err(err).Msg("no handshake lobby: each connection gets its goroutine at accept")
	} else {
		s.lobby = lb
	}
	s.wg.Add(1)
	go s.maintain()
}

// track starts a connection's goroutine unless the server is closing or full.
func (s *Server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		c.Close()
		return false
	}
	if s.conf().MaxConnections > 0 && len(s.conns) >= s.conf().MaxConnections {
		c.Close()
		s.obs.Refused("limit")
		s.rlog.Warn().Str("client", c.RemoteAddr().String()).Int("max_connections", s.conf().MaxConnections).Msg("refused client: connection limit reached")
		return false
	}
	ip := clientIP(c)
	if s.conf().MaxPerClient > 0 && s.perClient[ip] >= s.conf().MaxPerClient {
		c.Close()
		s.obs.Refused("limit")
		s.rlog.Warn().Str("client", c.RemoteAddr().String()).Int("max_connections_per_client", s.conf().MaxPerClient).Msg("refused client: per-address connection limit reached")
		return false
	}
	s.perClient[ip]++
	cn := &conn{srv: s, client: c, addr: c.RemoteAddr().String(), ip: ip, accepted: time.Now()}
	s.conns[cn] = struct{}{}
	s.wg.Add(1)
	if !s.lobby.admit(cn) {
		go cn.serve()
	}
	return true
}

// drive gives a placed session to its driver: a relay loop, when there are loops and
// each TLS connection of the session can be taken from crypto/tls (planTLS), else the
// goroutine driver.
func (s *Server) drive(c *conn, server net.Conn, early []byte) {
	if len(s.loops) == 0 {
		s.adoptGoroutines(c, server, early)
		return
	}
	if !isTLS(c.client) && !isTLS(server) {
		s.adoptLoop(c, server, early, nil, nil)
		return
	}
	cp, cerr := planTLS(c.client)
	if cerr != nil {
		cerr = fmt.Errorf("client: %w", cerr)
	}
	mp, merr := planTLS(server)
	if merr != nil {
		merr = fmt.Errorf("member: %w", merr)
	}
	if err := errors.Join(cerr, merr); err != nil {
		s.tlsFallback(c, err)
		s.adoptGoroutines(c, server, early)
		return
	}
	s.tlsFast.Add(1)
	s.adoptLoop(c, server, early, cp, mp)
}

// goMove runs a move's dial on its own goroutine, which the server waits for, and
// hands the result to deliver.
func (s *Server) goMove(order *moveOrder, deliver func(moveResult)) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		deliver(s.redial(s.ctx, order))
	}()
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
	s.cancel()
	for _, cn := range s.connList(false) {
		cn.abort("zkgate shutting down")
	}
	s.wg.Wait()
	s.lstop.Do(func() {
		s.lobby.stop()
		for _, l := range s.loops {
			l.stop()
		}
	})
	return nil
}

// Shutdown stops accepting, lets sessions end on their own until ctx is done or the
// drain timeout passes, then closes the rest.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopAccepting()
	ctx, cancel := context.WithTimeout(ctx, s.conf().DrainTimeout)
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
