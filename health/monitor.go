package health

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
)

// Config tunes a Monitor. Zero values take the defaults.
type Config struct {
	Interval time.Duration // between probes of one member
	Timeout  time.Duration // for one probe (dial + reply)
	Rise     int           // consecutive better probes before a member's status improves
	Fall     int           // consecutive worse probes before it degrades
}

// DefaultConfig is health checking as shipped: a probe every 500 ms, a second to answer
// (a loaded member can take a few hundred ms to answer srvr), better at once, worse after
// two probes in a row. The config file's defaults are these.
func DefaultConfig() Config {
	return Config{Interval: 500 * time.Millisecond, Timeout: time.Second, Rise: 1, Fall: 2}
}

// withDefaults takes DefaultConfig's value for each setting left zero.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	c.Interval = cmp.Or(max(c.Interval, 0), d.Interval)
	c.Timeout = cmp.Or(max(c.Timeout, 0), d.Timeout)
	c.Rise = cmp.Or(max(c.Rise, 0), d.Rise)
	c.Fall = cmp.Or(max(c.Fall, 0), d.Fall)
	return c
}

// Clock is the time source; tests inject one to drive pollers without sleeping.
type Clock interface {
	Now() time.Time
	After(time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Prober asks one member's srvr; tests may replace it.
type Prober func(ctx context.Context, addr string, timeout time.Duration) (Srvr, error)

// ProbeSrvr is the default Prober: srvr over a fresh connection.
func ProbeSrvr(ctx context.Context, addr string, timeout time.Duration) (Srvr, error) {
	out, err := Ask(ctx, addr, "srvr", timeout)
	if err != nil {
		return Srvr{}, err
	}
	return ParseSrvr(out)
}

// Monitor keeps a View of an ensemble current with one poller goroutine per member.
type Monitor struct {
	cfg    Config
	log    zerolog.Logger
	clock  Clock
	probe  Prober
	addrs  []string
	view   atomic.Pointer[View]
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	ownLimit OwnLimitLog // probes zkgate could not make for want of a descriptor

	progress atomic.Pointer[func(addr string) time.Time]
	answered atomic.Pointer[func(addr string, at time.Time)]

	mu       sync.Mutex // guards below
	trackers []Tracker
	states   []MemberState
	subs     []func(View)
	started  bool
}

// Option changes a Monitor at construction.
type Option func(*Monitor)

// WithClock injects a clock.
func WithClock(c Clock) Option { return func(m *Monitor) { m.clock = c } }

// WithProber replaces the srvr probe.
func WithProber(p Prober) Option { return func(m *Monitor) { m.probe = p } }

// WithDialer probes members over connections from dial (TLS to a secureClientPort).
func WithDialer(dial Dialer) Option {
	return func(m *Monitor) {
		m.probe = func(ctx context.Context, addr string, timeout time.Duration) (Srvr, error) {
			out, err := AskWith(ctx, dial, addr, "srvr", timeout)
			if err != nil {
				return Srvr{}, err
			}
			return ParseSrvr(out)
		}
	}
}

// NewMonitor watches the members at addrs. Call Start, then Close.
func NewMonitor(addrs []string, cfg Config, log zerolog.Logger, opts ...Option) *Monitor {
	m := &Monitor{cfg: cfg.withDefaults(), log: log, clock: realClock{}, probe: ProbeSrvr, addrs: addrs}
	for _, o := range opts {
		o(m)
	}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	m.trackers = make([]Tracker, len(addrs))
	m.states = make([]MemberState, len(addrs))
	for i, a := range addrs {
		m.states[i] = MemberState{Address: a}
	}
	v := Summarize(append([]MemberState(nil), m.states...), m.clock.Now())
	m.view.Store(&v)
	return m
}

// SetProgress gives the monitor the data path's evidence: when a member last answered
// one of its sessions (zero for never). A probe that times out while the member kept
// answering sessions is a late answer from a busy member or a busy machine, not a dead
// member, and does not count toward its fall.
func (m *Monitor) SetProgress(fn func(addr string) time.Time) { m.progress.Store(&fn) }

// SetAnswered gives the monitor a function told of every probe a member answered: the
// data path's evidence that a member is alive counts its probe answers too (a member
// whose sessions are all idle still answers its probes).
func (m *Monitor) SetAnswered(fn func(addr string, at time.Time)) { m.answered.Store(&fn) }

// answeredSince reports whether the data path saw addr answer a session at or after t.
func (m *Monitor) answeredSince(addr string, t time.Time) (time.Time, bool) {
	fn := m.progress.Load()
	if fn == nil {
		return time.Time{}, false
	}
	at := (*fn)(addr)
	return at, !at.IsZero() && !at.Before(t)
}

// Subscribe registers fn to be called with the new View whenever a member's status or
// role, the leader or the quorum changes. Calls are serialized; fn must not block long.
func (m *Monitor) Subscribe(fn func(View)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.subs = append(m.subs, fn)
}

// View returns the latest View. It never blocks and is cheap: routing calls it per
// connection.
func (m *Monitor) View() *View { return m.view.Load() }

// Start launches the pollers. It probes every member once before returning, so the
// first View is real, not unknown.
func (m *Monitor) Start() {
	m.mu.Lock()
	if m.started {
		m.mu.Unlock()
		return
	}
	m.started = true
	m.mu.Unlock()
	var first sync.WaitGroup
	for i := range m.addrs {
		first.Add(1)
		m.wg.Add(1)
		go m.poll(i, &first)
	}
	first.Wait()
}

// Close stops the pollers and waits for them. It is idempotent.
func (m *Monitor) Close() {
	m.cancel()
	m.wg.Wait()
}

// poll is one member's poller goroutine.
func (m *Monitor) poll(i int, first *sync.WaitGroup) {
	defer m.wg.Done()
	timeout := m.cfg.Timeout
	for {
		start := m.clock.Now()
		srvr, err := m.probe(m.ctx, m.addrs[i], timeout)
		if m.ctx.Err() != nil {
			if first != nil {
				first.Done()
			}
			return
		}
		late := m.record(i, srvr, err, start, m.clock.Now().Sub(start))
		if first != nil {
			first.Done()
			first = nil
		}
		// A probe that got no answer in time asks again at once, with half as much time
		// again: a member that is merely slow (a loaded machine, a GC pause) answers it,
		// a hung one answers neither. With fall 2 a hung member is down as soon as with a
		// pause of interval between two probes of timeout.
		wait := m.cfg.Interval
		timeout = m.cfg.Timeout
		if late {
			wait, timeout = 0, m.cfg.Timeout*3/2
		}
		if wait > 0 {
			select {
			case <-m.ctx.Done():
				return
			case <-m.clock.After(wait):
			}
		}
	}
}

// record folds one probe into member i's state. It reports a probe that ran out of time
// (a late answer, or none).
func (m *Monitor) record(i int, srvr Srvr, err error, start time.Time, rtt time.Duration) (timedOut bool) {
	now := m.clock.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	prev := m.states[i]
	if IsOwnLimit(err) {
		// zkgate could not open a socket: the member was not asked, and its state stands.
		m.ownLimit.Note(m.log, "health probe", m.addrs[i], err, now)
		return false
	}
	observed := Classify(srvr, err)
	timedOut = IsTimeout(err)
	if timedOut && prev.Status > StatusDown {
		if at, ok := m.answeredSince(m.addrs[i], start); ok {
			// No answer to the probe in time, but the member answered sessions meanwhile:
			// busy, not dead. Its status stands.
			observed = prev.Status
			err = fmt.Errorf("late: %w (it answered a session %v after the probe began)", err, at.Sub(start).Round(time.Millisecond))
		}
	}
	t := Next(m.trackers[i], observed, now, m.cfg.Rise, m.cfg.Fall)
	m.trackers[i] = t
	s := MemberState{Address: m.addrs[i], Status: t.Status, Since: t.Since, Latency: rtt, Refused: prev.Refused, LastMode: prev.LastMode}
	if err == nil && srvr.Mode != "" {
		s.LastMode = srvr.Mode
	}
	if fn := m.answered.Load(); err == nil && fn != nil {
		(*fn)(m.addrs[i], now)
	}
	if err == nil {
		s.Mode, s.Zxid, s.AvgLatency = srvr.Mode, srvr.Zxid, srvr.LatencyAvg
		s.Connections, s.Outstanding, s.Version = srvr.Connections, srvr.Outstanding, srvr.Version
	} else {
		s.LastError = err.Error()
		if errors.Is(err, ErrNotWhitelisted) {
			s.Refused = []string{"srvr"}
		}
		if t.Status == StatusServing || t.Status == StatusReadOnly {
			// Fall not reached yet, or a late answer: keep the last good role and zxid.
			s.Mode, s.Zxid = prev.Mode, prev.Zxid
		}
	}
	s.Serving = t.Status == StatusServing
	m.states[i] = s
	old := m.view.Load()
	v := Summarize(append([]MemberState(nil), m.states...), now)
	m.view.Store(&v)
	if changed(old, &v) {
		ev := m.log.Info().Str("member", s.Address).Str("status", s.Status.String()).
			Str("mode", s.Mode).Str("leader", v.Leader).Bool("quorum", v.Quorum)
		if s.LastError != "" {
			ev = ev.Str("error", s.LastError)
		}
		ev.Msg("ensemble view changed")
		for _, fn := range m.subs {
			fn(v)
		}
	}
	// Asked again at once only where the answer may change the status.
	return timedOut && t.Status != StatusDown
}

// IsTimeout reports a probe that got no answer in time (as opposed to a refused or reset
// connection, which is an answer: nothing listens).
func IsTimeout(err error) bool {
	if err == nil {
		return false
	}
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) ||
		errors.As(err, &ne) && ne.Timeout()
}

func changed(a, b *View) bool {
	if a.Leader != b.Leader || a.Quorum != b.Quorum || len(a.Members) != len(b.Members) {
		return true
	}
	for i := range a.Members {
		if a.Members[i].Status != b.Members[i].Status || a.Members[i].Mode != b.Members[i].Mode {
			return true
		}
	}
	return false
}
