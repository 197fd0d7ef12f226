package breaker

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/failsafe-go/failsafe-go/circuitbreaker"
	"github.com/failsafe-go/failsafe-go/ratelimiter"
	"github.com/rs/zerolog"
	"github.com/zkgate/zkgate/jute"
)

// State is an ensemble breaker's state.
type State int32

// States, as failsafe-go numbers them.
const (
	Closed   State = State(circuitbreaker.ClosedState)
	Open     State = State(circuitbreaker.OpenState)
	HalfOpen State = State(circuitbreaker.HalfOpenState)
)

// String is the state's name in logs, 4lw answers and the status API.
func (s State) String() string {
	switch s {
	case Closed:
		return "closed"
	case Open:
		return "open"
	case HalfOpen:
		return "half-open"
	}
	return fmt.Sprintf("state(%d)", int32(s))
}

// Transition is one state change.
type Transition struct {
	At       time.Time `json:"at"`
	Ensemble string    `json:"ensemble"`
	From     State     `json:"-"`
	To       State     `json:"-"`
	FromName string    `json:"from"`
	ToName   string    `json:"to"`
	Reason   string    `json:"reason"`
}

const historyLen = 32

// Ensemble is one ensemble's circuit breaker. Every method is safe for concurrent use.
//
// The relay asks Acquire before it forwards a request and calls Release exactly once for
// every request that Acquire let through with a permit, whatever happens to it: the
// reply, a stall past the slow-call threshold, the member connection dying, or the
// client leaving. A half-open breaker whose permits are not all released would stick.
type Ensemble struct {
	name string
	log  zerolog.Logger
	now  func() time.Time

	// The settings and what they build; Reconfigure replaces them together.
	parts      atomic.Pointer[parts]
	rebuilding atomic.Bool  // Reconfigure puts the new breaker in the old one's state: no transition
	rmu        sync.Mutex   // serializes Reconfigure
	state      atomic.Int32 // mirrors cb's state, for the lock-free fast path
	healthy    atomic.Bool  // health sees a quorum with a leader
	byHealth   atomic.Bool  // the breaker is open because health saw no quorum or no leader
	healthWhy  atomic.Pointer[string]
	reason     atomic.Pointer[string] // why the next transition happens, when zkgate forces it
	held       atomic.Int64           // permits taken and not yet released

	mu      sync.Mutex // guards below
	history []Transition
	subs    []func(Transition)
}

// Option configures an Ensemble.
type Option func(*Ensemble)

// WithClock sets the clock for transition times (tests).
func WithClock(now func() time.Time) Option { return func(e *Ensemble) { e.now = now } }

// NewEnsemble returns a closed breaker for the ensemble called name.
func NewEnsemble(name string, cfg Config, log zerolog.Logger, opts ...Option) *Ensemble {
	e := &Ensemble{name: name, log: log.With().Str("ensemble", name).Logger(), now: time.Now}
	for _, o := range opts {
		o(e)
	}
	e.healthy.Store(true)
	e.parts.Store(e.build(cfg))
	return e
}

// parts is what the settings build: failsafe-go's breaker and the half-open admission
// rate.
type parts struct {
	cfg   Config
	cb    circuitbreaker.CircuitBreaker[any]
	admit ratelimiter.RateLimiter[any]
}

func (e *Ensemble) build(cfg Config) *parts {
	return &parts{cfg: cfg,
		cb: circuitbreaker.NewBuilder[any]().
			WithFailureRateThreshold(cfg.FailureRatio, cfg.MinRequests, cfg.Window).
			WithDelay(cfg.OpenFor).
			WithSuccessThreshold(cfg.HalfOpenProbes).
			OnStateChanged(e.changed).
			Build(),
		admit: ratelimiter.NewSmoothWithMaxRate[any](time.Duration(float64(time.Second) / cfg.HalfOpenAdmission))}
}

func (e *Ensemble) conf() Config                           { return e.parts.Load().cfg }
func (e *Ensemble) cb() circuitbreaker.CircuitBreaker[any] { return e.parts.Load().cb }
func (e *Ensemble) admit() ratelimiter.RateLimiter[any]    { return e.parts.Load().admit }

// Reconfigure replaces the settings (a configuration reload): a new failsafe-go breaker
// in the state the old one was in, its window starting empty. Open, it is open anew,
// for the new open_for; nothing is logged as a transition. Permits held keep counting.
func (e *Ensemble) Reconfigure(cfg Config) {
	e.rmu.Lock()
	defer e.rmu.Unlock()
	old := e.conf()
	if old == cfg {
		return
	}
	p := e.build(cfg)
	e.rebuilding.Store(true)
	switch State(e.state.Load()) {
	case Open:
		p.cb.Open()
	case HalfOpen:
		p.cb.HalfOpen()
	}
	e.rebuilding.Store(false)
	e.parts.Store(p)
	e.log.Info().Interface("from", old).Interface("to", cfg).Msg("ensemble breaker reconfigured")
}

// Config returns the settings.
func (e *Ensemble) Config() Config { return e.conf() }

// State is the current state.
func (e *Ensemble) State() State { return State(e.state.Load()) }

// SlowCall is the slow-call threshold: a request in flight longer than this is released
// as slow without waiting for its reply.
func (e *Ensemble) SlowCall() time.Duration { return e.conf().SlowCall }

// RejectCode is the error refused requests are answered with.
func (e *Ensemble) RejectCode() jute.ErrCode { return jute.ErrCode(e.conf().RejectCode) }

// Held is the number of permits taken and not yet released.
func (e *Ensemble) Held() int64 { return e.held.Load() }

// Acquire decides whether a request on a live session may go to the ensemble. held says
// a permit was taken, which must be given back with Release.
func (e *Ensemble) Acquire() (held, allowed bool) {
	if !e.conf().Enabled {
		return false, true
	}
	if !e.healthy.Load() {
		return false, false
	}
	if State(e.state.Load()) != Closed && !e.cb().TryAcquirePermit() {
		return false, false
	}
	e.held.Add(1)
	return true, true
}

// Release records the outcome of a request that holds a permit.
func (e *Ensemble) Release(code jute.ErrCode, latency time.Duration, lost bool) {
	e.held.Add(-1)
	o := Classify(code, latency, e.conf().SlowCall, lost)
	if o != Success && State(e.state.Load()) == HalfOpen {
		e.log.Debug().Str("outcome", o.String()).Stringer("code", code).Dur("latency", latency).Bool("lost", lost).Msg("half-open probe failed")
	}
	e.record(o)
}

func (e *Ensemble) record(o Outcome) {
	if o == Success {
		e.cb().RecordSuccess()
	} else {
		e.cb().RecordFailure()
	}
}

// ConnectFailed records a member connect that failed. It counts only while closed: in
// half-open, outcomes come from the probe requests that hold permits.
func (e *Ensemble) ConnectFailed() {
	if e.conf().Enabled && State(e.state.Load()) == Closed {
		e.cb().RecordFailure()
	}
}

// AdmitSession decides whether a client session may be placed. Nothing is placed while
// health sees no quorum. A reconnecting session (one with an id) is placed otherwise,
// whatever the state, so that the breaker never makes a session expire; its requests
// still meet the breaker. A new session is placed while closed, at the half-open
// admission rate while half-open, and never while open.
func (e *Ensemble) AdmitSession(reconnect bool) bool {
	if !e.conf().Enabled {
		return true
	}
	if !e.healthy.Load() {
		return false
	}
	e.Refresh()
	switch State(e.state.Load()) {
	case Closed:
		return true
	case HalfOpen:
		return reconnect || e.admit().TryAcquirePermit()
	}
	return reconnect
}

// Refusing reports whether new sessions would be turned away now (the breaker is not
// closed, or health sees no quorum).
func (e *Ensemble) Refusing() bool {
	return e.conf().Enabled && (!e.healthy.Load() || State(e.state.Load()) != Closed)
}

// ObserveHealth takes the health verdict: without a quorum and a leader nothing can
// work, so the breaker opens at once and stays open until health is back. Opened by
// health, it half-opens as soon as health is back: the cause is gone (an election
// typically takes a second, and holding the breaker open for the rest of open_for turned
// that second into open_for of rejects), and the half-open probes and admission rate
// still give the ensemble room. Opened by the failure ratio, it stays open for open_for.
func (e *Ensemble) ObserveHealth(ok bool, why string) {
	if !e.conf().Enabled {
		return
	}
	e.healthWhy.Store(&why)
	if e.healthy.Swap(ok) == ok {
		if ok {
			e.Refresh()
		}
		return
	}
	if !ok {
		if State(e.state.Load()) != Open {
			e.byHealth.Store(true)
		}
		e.force(Open, "health: "+why)
		return
	}
	if !e.byHealth.Load() {
		e.log.Info().Str("health", why).Dur("open_remaining", e.cb().RemainingDelay()).Msg("health is back; half-open once the open time is over")
	}
	e.Refresh()
}

// Refresh moves an open breaker to half-open once health allows it and the open time is
// over (or health opened it). Acquire does this lazily too; Refresh makes the state
// visible without traffic.
func (e *Ensemble) Refresh() {
	if State(e.state.Load()) != Open || !e.healthy.Load() {
		return
	}
	switch {
	case e.byHealth.Load():
		e.force(HalfOpen, fmt.Sprintf("health is back (a quorum with a leader): probing with %d requests", e.conf().HalfOpenProbes))
	case e.cb().RemainingDelay() == 0:
		e.force(HalfOpen, fmt.Sprintf("open for %v and health has a quorum: probing with %d requests", e.conf().OpenFor, e.conf().HalfOpenProbes))
	}
}

func (e *Ensemble) force(to State, why string) {
	e.reason.Store(&why)
	switch to {
	case Open:
		if State(e.state.Load()) == Open {
			e.reason.Store(nil)
			return
		}
		e.cb().Open()
	case HalfOpen:
		e.cb().HalfOpen()
	}
}

// changed runs after failsafe-go changes state (outside its lock).
func (e *Ensemble) changed(ev circuitbreaker.StateChangedEvent) {
	if e.rebuilding.Load() {
		return // Reconfigure setting the new breaker's state: not a transition
	}
	from, to := State(ev.OldState), State(ev.NewState)
	e.state.Store(int32(e.cb().State())) // the state now, even if listeners run out of order
	if to != Open {
		e.byHealth.Store(false)
	}
	why := ""
	if p := e.reason.Swap(nil); p != nil {
		why = *p
	} else {
		// ev.Metrics() reads the old state's stats without failsafe-go's lock, racing with
		// requests recorded meanwhile; cb's own accessors lock. An open state carries the
		// stats of the state it came from.
		m := e.cb().Metrics()
		switch to {
		case Open:
			why = fmt.Sprintf("failure ratio %.2f over %d requests (threshold %.2f, min %d, window %v; slow calls over %v count)",
				m.FailureRate(), m.Executions(), e.conf().FailureRatio, e.conf().MinRequests, e.conf().Window, e.conf().SlowCall)
			if from == HalfOpen {
				why = fmt.Sprintf("half-open probe failed: %d of %d probes failed", m.Failures(), m.Executions())
			}
		case Closed:
			why = fmt.Sprintf("%d half-open probes succeeded", e.conf().HalfOpenProbes)
		case HalfOpen:
			why = fmt.Sprintf("open for %v: probing with %d requests", e.conf().OpenFor, e.conf().HalfOpenProbes)
		}
	}
	t := Transition{At: e.now(), Ensemble: e.name, From: from, To: to, FromName: from.String(), ToName: to.String(), Reason: why}
	lvl := zerolog.InfoLevel
	if to == Open {
		lvl = zerolog.WarnLevel
	}
	e.log.WithLevel(lvl).Str("from", from.String()).Str("to", to.String()).Str("reason", why).Msg("ensemble breaker " + to.String())
	e.mu.Lock()
	e.history = append(e.history, t)
	if len(e.history) > historyLen {
		e.history = append(e.history[:0], e.history[len(e.history)-historyLen:]...)
	}
	subs := e.subs
	e.mu.Unlock()
	for _, f := range subs {
		f(t)
	}
}

// History returns the most recent transitions, oldest first.
func (e *Ensemble) History() []Transition {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]Transition(nil), e.history...)
}

// Subscribe calls f after every transition (metrics).
func (e *Ensemble) Subscribe(f func(Transition)) {
	e.mu.Lock()
	e.subs = append(e.subs, f)
	e.mu.Unlock()
}

// Stats reports the current window: requests, failures and the failure rate.
func (e *Ensemble) Stats() (requests, failures uint, rate float64) {
	m := e.cb().Metrics()
	return m.Executions(), m.Failures(), m.FailureRate()
}

// Summary is one line on the breaker for srvr and logs.
func (e *Ensemble) Summary() string {
	if !e.conf().Enabled {
		return "disabled"
	}
	s := e.State()
	req, fail, _ := e.Stats()
	out := fmt.Sprintf("%s (%d failures in %d requests)", s, fail, req)
	if s == Open {
		out += fmt.Sprintf(", half-open in %v", e.cb().RemainingDelay().Round(time.Millisecond))
		if !e.healthy.Load() {
			if p := e.healthWhy.Load(); p != nil {
				out += ", held open by health: " + *p
			}
		}
	}
	return out
}
