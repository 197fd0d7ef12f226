package proxy

import (
	"cmp"
	"crypto/tls"
	"runtime"
	"time"

	"github.com/zkgate/zkgate/jute"
)

// Defaults (DefaultConfig). The config file's defaults are these.
const (
	DefaultCoalesce         = 20 * time.Millisecond
	DefaultCoalesceShare    = 0.25
	DefaultHandshakeTimeout = 10 * time.Second // as ZooKeeper's own
	DefaultDialTimeout      = 2 * time.Second
	DefaultDrainTimeout     = 10 * time.Second
)

// DefaultConfig is one ensemble's data path as shipped.
func DefaultConfig() Config {
	return Config{Name: "default", Policy: LeastConnectionsWithLeader, MaxFrame: jute.DefaultMaxFrame,
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
	// travel per system call. The loop waits only while requests queue at the members
	// (2 or more in flight per busy session), sizes the wait by each session's observed
	// arrival rate (about 16 frames' time), and never waits when fewer than 3 frames
	// would come meanwhile (loop.window). The wait is also at most CoalesceShare of the
	// members' average reply latency: a share of what queued requests wait anyway. 0 (or negative) turns coalescing off; DefaultConfig has it on.
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
