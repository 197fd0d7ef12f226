// Package admin is zkgate's operator surface over HTTP: Prometheus metrics, health and
// readiness, the status API and a status page. It reads the proxy, health and breaker
// state; it decides nothing.
package admin

import (
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/zkgate/zkgate/breaker"
	"github.com/zkgate/zkgate/health"
	"github.com/zkgate/zkgate/jute"
	"github.com/zkgate/zkgate/proxy"
)

// Metrics holds the metric families. Counters on the request path are resolved once per
// ensemble and opcode, so recording is an atomic add or a histogram observe, no map
// lookup or label hashing.
type Metrics struct {
	requests    *prometheus.CounterVec
	responses   *prometheus.CounterVec
	errors      *prometheus.CounterVec
	latency     *prometheus.HistogramVec
	events      *prometheus.CounterVec
	decode      *prometheus.CounterVec
	refused     *prometheus.CounterVec
	rejected    *prometheus.CounterVec
	limited     *prometheus.CounterVec
	lost        *prometheus.CounterVec
	stalled     *prometheus.CounterVec
	connFails   *prometheus.CounterVec
	transitions *prometheus.CounterVec
	moves       *prometheus.CounterVec
	moveTime    *prometheus.HistogramVec
}

// NewMetrics registers zkgate's metrics, build_info included, on reg.
func NewMetrics(reg prometheus.Registerer, version string) *Metrics {
	ens := []string{"ensemble"}
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "zkgate_requests_total",
			Help: "Requests clients sent, by ensemble and opcode."}, []string{"ensemble", "op"}),
		responses: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "zkgate_responses_total",
			Help: "Replies from members relayed to clients, by ensemble and opcode."}, []string{"ensemble", "op"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "zkgate_error_responses_total",
			Help: "Replies carrying a ZooKeeper error, by ensemble and error code name."}, []string{"ensemble", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "zkgate_request_duration_seconds",
			Help:    "Time from a request to its reply from the member, by ensemble and opcode.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}},
			[]string{"ensemble", "op"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "zkgate_watch_events_total",
			Help: "Watch notifications relayed to clients, by ensemble and event type."}, []string{"ensemble", "type"}),
		decode: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "zkgate_decode_errors_total",
			Help: "Connections closed because a frame could not be decoded."}, ens),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "zkgate_refused_connections_total",
			Help: "New clients turned away before reaching a member, by reason (breaker, no-member, limit, handshake)."},
			[]string{"ensemble", "reason"}),
		limited: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "zkgate_limited_requests_total",
			Help: "Requests over a client's limits (per client IP, per session, in flight), answered with the reject code."}, []string{"ensemble", "limit"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "zkgate_rejected_requests_total",
			Help: "Requests zkgate answered itself with the breaker's reject code, by opcode."}, []string{"ensemble", "op"}),
		lost: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "zkgate_lost_requests_total",
			Help: "Requests whose member connection died before the reply."}, []string{"ensemble", "member"}),
		stalled: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "zkgate_stalled_requests_total",
			Help: "Requests still without a reply after the slow-call threshold."}, []string{"ensemble", "member"}),
		connFails: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "zkgate_member_connect_failures_total",
			Help: "Member connects that failed or closed without a ConnectResponse."}, []string{"ensemble", "member"}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "zkgate_breaker_transitions_total",
			Help: "Ensemble breaker state changes."}, []string{"ensemble", "from", "to"}),
		moves: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "zkgate_session_moves_total",
			Help: "Sessions whose member was lost, by outcome: moved, or closed-<reason> when the client was closed instead."},
			[]string{"ensemble", "outcome"}),
		moveTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "zkgate_session_move_duration_seconds",
			Help:    "Time from losing a session's member to the session serving on another (outcome moved) or its client closed.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}}, []string{"ensemble", "outcome"}),
	}
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "zkgate_build_info",
		Help: "zkgate's version and the Go version it was built with; always 1."}, []string{"version", "goversion"})
	build.WithLabelValues(version, runtime.Version()).Set(1)
	reg.MustRegister(m.requests, m.responses, m.errors, m.latency, m.events, m.decode, m.refused, m.rejected, m.limited,
		m.lost, m.stalled, m.connFails, m.transitions, m.moves, m.moveTime, build)
	return m
}

// opSlots covers opcodes -16..111; anything else shares the last slot.
const opSlots = 129

func opSlot(op jute.OpCode) int {
	if op >= -16 && op < 112 {
		return int(op) + 16
	}
	return opSlots - 1
}

// lazy holds one pre-resolved series per slot, made on first use.
type lazy[T any] [opSlots]atomic.Pointer[T]

func (l *lazy[T]) get(slot int, make func() T) T {
	if p := l[slot].Load(); p != nil {
		return *p
	}
	v := make()
	l[slot].CompareAndSwap(nil, &v)
	return *l[slot].Load()
}

// Observer is the proxy.Observer of one ensemble.
type Observer struct {
	m        *Metrics
	ensemble string
	req      lazy[prometheus.Counter]
	resp     lazy[prometheus.Counter]
	lat      lazy[prometheus.Observer]
	rej      lazy[prometheus.Counter]
	errs     lazy[prometheus.Counter] // by -code
	decode   prometheus.Counter
}

var _ proxy.Observer = (*Observer)(nil)

// Observer returns the observer for ensemble, and watches its breaker transitions.
func (m *Metrics) Observer(ensemble string, brk *breaker.Ensemble) *Observer {
	if brk != nil {
		brk.Subscribe(func(t breaker.Transition) {
			m.transitions.WithLabelValues(ensemble, t.FromName, t.ToName).Inc()
		})
	}
	return &Observer{m: m, ensemble: ensemble, decode: m.decode.WithLabelValues(ensemble)}
}

func opName(op jute.OpCode) string {
	if op.Known() {
		return op.String()
	}
	return "other"
}

// Request implements proxy.Observer.
func (o *Observer) Request(op jute.OpCode) {
	o.req.get(opSlot(op), func() prometheus.Counter { return o.m.requests.WithLabelValues(o.ensemble, opName(op)) }).Inc()
}

// Reply implements proxy.Observer.
func (o *Observer) Reply(_ string, op jute.OpCode, code jute.ErrCode, latency time.Duration) {
	slot := opSlot(op)
	o.resp.get(slot, func() prometheus.Counter { return o.m.responses.WithLabelValues(o.ensemble, opName(op)) }).Inc()
	o.lat.get(slot, func() prometheus.Observer { return o.m.latency.WithLabelValues(o.ensemble, opName(op)) }).Observe(latency.Seconds())
	if code != 0 {
		o.errs.get(errSlot(code), func() prometheus.Counter { return o.m.errors.WithLabelValues(o.ensemble, errName(code)) }).Inc()
	}
}

func errSlot(code jute.ErrCode) int {
	if code < 0 && code > -opSlots+1 {
		return int(-code)
	}
	return opSlots - 1
}

func errName(code jute.ErrCode) string {
	if s := code.String(); s != "" && s[0] != 'e' { // known codes have upper-case names
		return s
	}
	return strconv.Itoa(int(code))
}

// Event implements proxy.Observer.
func (o *Observer) Event(t jute.EventType) {
	o.m.events.WithLabelValues(o.ensemble, t.String()).Inc()
}

// ProtocolError implements proxy.Observer.
func (o *Observer) ProtocolError() { o.decode.Inc() }

// Stalled implements proxy.Observer.
func (o *Observer) Stalled(member string, _ jute.OpCode, _ time.Duration) {
	o.m.stalled.WithLabelValues(o.ensemble, member).Inc()
}

// Rejected implements proxy.Observer.
func (o *Observer) Rejected(op jute.OpCode, _ jute.ErrCode) {
	o.rej.get(opSlot(op), func() prometheus.Counter { return o.m.rejected.WithLabelValues(o.ensemble, opName(op)) }).Inc()
}

// Lost implements proxy.Observer.
func (o *Observer) Lost(member string, n int) {
	o.m.lost.WithLabelValues(o.ensemble, member).Add(float64(n))
}

// ConnectFailed implements proxy.Observer.
func (o *Observer) ConnectFailed(member string, _ error) {
	o.m.connFails.WithLabelValues(o.ensemble, member).Inc()
}

// Moved implements proxy.Observer.
func (o *Observer) Moved(_, _ string, outcome string, d time.Duration) {
	o.m.moves.WithLabelValues(o.ensemble, outcome).Inc()
	o.m.moveTime.WithLabelValues(o.ensemble, outcome).Observe(d.Seconds())
}

// Limited implements proxy.Observer.
func (o *Observer) Limited(scope string) {
	o.m.limited.WithLabelValues(o.ensemble, scope).Inc()
}

// Refused implements proxy.Observer.
func (o *Observer) Refused(reason string) {
	o.m.refused.WithLabelValues(o.ensemble, reason).Inc()
}

// Ensemble is one ensemble as the admin server sees it.
type Ensemble struct {
	Name    string
	Listen  string
	Server  *proxy.Server
	Monitor *health.Monitor
}

// Ensembles is the set of ensembles served now; a configuration reload replaces it.
type Ensembles struct {
	mu   sync.Mutex
	list []Ensemble
}

// NewEnsembles returns a set holding list.
func NewEnsembles(list []Ensemble) *Ensembles { return &Ensembles{list: list} }

// List returns the ensembles, in the configuration's order.
func (s *Ensembles) List() []Ensemble {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Ensemble(nil), s.list...)
}

// Set replaces the ensembles.
func (s *Ensembles) Set(list []Ensemble) {
	s.mu.Lock()
	s.list = append([]Ensemble(nil), list...)
	s.mu.Unlock()
}

// stateCollector reads gauges from the live state at scrape time: nothing on the
// request path.
type stateCollector struct {
	ensembles *Ensembles
	descs     map[string]*prometheus.Desc
}

// NewStateCollector returns the collector of connections, sessions, bytes, member and
// breaker state for the ensembles.
func NewStateCollector(ensembles *Ensembles) prometheus.Collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, append([]string{"ensemble"}, labels...), nil)
	}
	return &stateCollector{ensembles: ensembles, descs: map[string]*prometheus.Desc{
		"connections":  d("zkgate_client_connections", "Open client connections."),
		"sessions":     d("zkgate_sessions", "Established sessions, by member.", "member"),
		"outstanding":  d("zkgate_outstanding_requests", "Requests in flight to members."),
		"in":           d("zkgate_received_bytes_total", "Bytes received from clients (frames relayed to members)."),
		"out":          d("zkgate_sent_bytes_total", "Bytes sent to clients (frames relayed from members)."),
		"coalesced":    d("zkgate_relay_coalesce_waits_total", "Waits of the relay loops to gather frames under load (relay.coalesce)."),
		"coalescedFor": d("zkgate_relay_coalesce_seconds_total", "Time the relay loops waited to gather frames under load."),
		"up":           d("zkgate_member_up", "1 when the member answers its health probe.", "member"),
		"serving":      d("zkgate_member_serving", "1 when the member serves clients.", "member"),
		"role":         d("zkgate_member_role", "1 for the member's current role (leader, follower, observer, standalone, unknown).", "member", "role"),
		"ejected":      d("zkgate_member_ejected", "1 while the member is ejected.", "member"),
		"breaker":      d("zkgate_breaker_state", "1 for the ensemble breaker's current state.", "state"),
		"quorum":       d("zkgate_ensemble_quorum", "1 when health sees a quorum with a leader."),
	}}
}

// Describe implements prometheus.Collector.
func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(name string, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(c.descs[name], prometheus.GaugeValue, v, labels...)
	}
	b := func(ok bool) float64 {
		if ok {
			return 1
		}
		return 0
	}
	for _, e := range c.ensembles.List() {
		t := e.Server.Totals()
		gauge("connections", float64(t.Connections), e.Name)
		gauge("outstanding", float64(t.Outstanding), e.Name)
		ch <- prometheus.MustNewConstMetric(c.descs["in"], prometheus.CounterValue, float64(t.BytesIn), e.Name)
		ch <- prometheus.MustNewConstMetric(c.descs["out"], prometheus.CounterValue, float64(t.BytesOut), e.Name)
		ch <- prometheus.MustNewConstMetric(c.descs["coalesced"], prometheus.CounterValue, float64(t.Coalesced), e.Name)
		ch <- prometheus.MustNewConstMetric(c.descs["coalescedFor"], prometheus.CounterValue, t.CoalescedFor.Seconds(), e.Name)
		perMember := e.Server.SessionsPerMember()
		ejected := e.Server.Ejector().Excluded()
		v := e.Monitor.View()
		for _, m := range v.Members {
			gauge("sessions", float64(perMember[m.Address]), e.Name, m.Address)
			gauge("up", b(m.Status != health.StatusDown && m.Status != health.StatusUnknown), e.Name, m.Address)
			gauge("serving", b(m.Status == health.StatusServing), e.Name, m.Address)
			gauge("ejected", b(ejected[m.Address]), e.Name, m.Address)
			role := m.Mode
			if role == "" {
				role = "unknown"
			}
			for _, r := range []string{"leader", "follower", "observer", "standalone", "unknown"} {
				gauge("role", b(r == role), e.Name, m.Address, r)
			}
		}
		gauge("quorum", b(v.Quorum), e.Name)
		state := e.Server.Breaker().State()
		for _, s := range []breaker.State{breaker.Closed, breaker.Open, breaker.HalfOpen} {
			gauge("breaker", b(s == state), e.Name, s.String())
		}
	}
}
