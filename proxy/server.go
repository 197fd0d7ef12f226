package proxy

import (
	"cmp"
	"context"
	"crypto/tls"
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
	"github.com/zkgate/zkgate/hotspot"
	"github.com/zkgate/zkgate/jute"
)

// Defaults (DefaultConfig). The config file's defaults are these.
const (
	DefaultCoalesce         = 2 * time.Millisecond
	DefaultCoalesceShare    = 0.125
	DefaultHandshakeTimeout = 10 * time.Second // as ZooKeeper's own
	DefaultDialTimeout      = 2 * time.Second
	DefaultDrainTimeout     = 10 * time.Second
)

// DefaultConfig is one ensemble's data path as shipped.
func DefaultConfig() Config {
	return Config{Name: "default", Policy: LeastConnections, MaxFrame: jute.DefaultMaxFrame,
		HandshakeTimeout: DefaultHandshakeTimeout, DialTimeout: DefaultDialTimeout, DrainTimeout: DefaultDrainTimeout,
		Coalesce: DefaultCoalesce, CoalesceShare: DefaultCoalesceShare, Hotspots: DefaultHotspots(),
		UnsafeInFlight: UnsafeAuto}
}

// Config.UnsafeInFlight settings.
const (
	UnsafeConnectionLoss = "connection_loss"
	UnsafeClose          = "close"
	// UnsafeAuto answers CONNECTIONLOSS to the clients whose ConnectRequest carries the
	// readOnly byte (the Java client and Curator, the C client, kazoo: each raises its
	// connection-loss error, which its retry loops retry) and closes the others
	// (go-zookeeper has no error for a CONNECTIONLOSS reply: it reads "unknown error: -4",
	// which nothing retries; node-zookeeper-client, untested that way).
	UnsafeAuto = "auto"
)

// Relay drivers (Config.Driver).
const (
	DriverEpoll      = "epoll"      // Linux: event loops, no goroutine per session
	DriverGoroutines = "goroutines" // a reader and a writer per socket; every OS
)

// Config is one ensemble's data-path settings. A zero value takes DefaultConfig's,
// except where 0 is a setting of its own (the limits: none; Coalesce: off).
type Config struct {
	Name             string        // ensemble name, for logs
	Policy           Policy        // routing
	MaxFrame         int           // largest frame payload
	HandshakeTimeout time.Duration // accept to ConnectResponse
	DialTimeout      time.Duration // per member connect attempt
	MaxConnections   int           // per listener; 0 = unlimited
	MaxPerClient     int           // per client IP address; 0 = unlimited
	DrainTimeout     time.Duration // Shutdown waits this long for sessions to end
	// MoveTimeout bounds a session's move to another member when its member is lost;
	// past it the client is closed (and reconnects through zkgate). Default a third of
	// the session's negotiated timeout.
	MoveTimeout time.Duration
	// UnsafeInFlight is what a move does when a request it cannot repeat (a write) is in
	// flight at the lost member: UnsafeConnectionLoss answers it and every request behind
	// it with CONNECTIONLOSS and moves the session; UnsafeClose closes the client, which
	// reconnects through zkgate; UnsafeAuto (the default) chooses by client.
	UnsafeInFlight string
	// Driver runs placed sessions: DriverEpoll (the default on Linux) or
	// DriverGoroutines (the default, and the only one, elsewhere).
	Driver string
	// Loops is the number of relay event loops; default GOMAXPROCS-1, at least 1.
	Loops int
	// Coalesce is the longest a relay loop waits before reading, so that more frames
	// travel per system call. The loop sizes the wait by the frames' observed arrival
	// rate (about 16 frames' time), never holds a lone request in flight, nor when fewer
	// than 3 frames would come meanwhile. The wait is also at most CoalesceShare of the
	// members' average reply latency: it costs that much latency at most, where requests
	// already wait far longer. 0 (or negative) turns coalescing off; DefaultConfig has it on.
	Coalesce      time.Duration
	CoalesceShare float64
	// Limits protect the ensemble from one client (see Limits); off when zero.
	Limits Limits
	// Hotspots finds the heaviest clients, sessions and paths; off in the zero value,
	// on in DefaultConfig.
	Hotspots Hotspots
	// MemberTLS, when set, is the TLS zkgate dials members with (their secureClientPort);
	// an empty ServerName is each member's host (certs.For).
	MemberTLS *tls.Config
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	c.Name = cmp.Or(c.Name, d.Name)
	c.Policy = cmp.Or(c.Policy, d.Policy)
	c.MaxFrame = cmp.Or(max(c.MaxFrame, 0), d.MaxFrame)
	c.HandshakeTimeout = cmp.Or(max(c.HandshakeTimeout, 0), d.HandshakeTimeout)
	c.DialTimeout = cmp.Or(max(c.DialTimeout, 0), d.DialTimeout)
	c.DrainTimeout = cmp.Or(max(c.DrainTimeout, 0), d.DrainTimeout)
	c.Coalesce = max(c.Coalesce, 0)
	c.CoalesceShare = cmp.Or(max(c.CoalesceShare, 0), d.CoalesceShare)
	c.UnsafeInFlight = cmp.Or(c.UnsafeInFlight, d.UnsafeInFlight)
	if c.Driver == "" || !epollBuilt {
		c.Driver = DriverGoroutines
		if epollBuilt {
			c.Driver = DriverEpoll
		}
	}
	if c.Hotspots.Enabled {
		h := d.Hotspots
		c.Hotspots.PathDepth = cmp.Or(max(c.Hotspots.PathDepth, 0), h.PathDepth)
		c.Hotspots.Capacity = cmp.Or(max(c.Hotspots.Capacity, 0), h.Capacity)
		c.Hotspots.Window = cmp.Or(max(c.Hotspots.Window, 0), h.Window)
	}
	if c.Loops <= 0 {
		c.Loops = max(1, runtime.GOMAXPROCS(0)-1)
	}
	return c
}

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
	// stalledSessions: sessions waiting on their member past the slow-call threshold at
	// the last stall sweep (slow calls count against the ensemble only from two up)
	stalledSessions atomic.Int32
	// movedAt is when the last session move attached (unix ns): the members that took
	// moved sessions are busy re-establishing them for a while (settling)
	movedAt atomic.Int64
	// committedAt is when a reply last showed a zxid higher than any before (unix ns):
	// the ensemble was committing writes then
	topZxid, committedAt atomic.Int64
	readOnlyService      atomic.Bool // ServesReadOnly as of the last view, for its log lines
	hotAt                time.Time   // the last sampleHot; maintain's

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

// drive gives a placed session to its driver.
func (s *Server) drive(c *conn, server net.Conn, early []byte) {
	if len(s.loops) > 0 && !isTLS(c.client) && !isTLS(server) {
		s.adoptLoop(c, server, early)
		return
	}
	s.adoptGoroutines(c, server, early)
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
