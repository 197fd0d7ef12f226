package admin

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/zkgate/zkgate/breaker"
	"github.com/zkgate/zkgate/health"
	"github.com/zkgate/zkgate/hotspot"
	"github.com/zkgate/zkgate/jute"
	"github.com/zkgate/zkgate/proxy"
)

// Status is /api/v1/status.
type Status struct {
	Version   string           `json:"version"`
	StartedAt time.Time        `json:"started_at"`
	Config    *ConfigStatus    `json:"config,omitempty"`
	Ensembles []EnsembleStatus `json:"ensembles"`
}

// EnsembleStatus is one ensemble in the status.
type EnsembleStatus struct {
	Name     string        `json:"name"`
	Listen   string        `json:"listen"`
	Ready    bool          `json:"ready"` // a new session can be placed now
	Quorum   bool          `json:"quorum"`
	Leader   string        `json:"leader"`
	Breaker  BreakerStatus `json:"breaker"`
	Sessions int           `json:"sessions"`
	Requests uint64        `json:"requests"`
	Replies  uint64        `json:"replies"`
	// SessionMoves counts sessions moved off a lost member; SessionMovesClosed, those
	// whose client was closed instead (it reconnected through zkgate).
	SessionMoves       uint64 `json:"session_moves"`
	SessionMovesClosed uint64 `json:"session_moves_closed"`
	// LimitedRequests counts requests over a client's limits (limits.client_rate, ...);
	// LimitedClients, by client IP, for the clients connected now, most first.
	LimitedRequests uint64                `json:"limited_requests"`
	LimitedClients  []proxy.ClientLimited `json:"limited_clients,omitempty"`
	Members         []MemberStatus        `json:"members"`
	// ReadOnlyService: no quorum, and read-only clients are served by a member in
	// read-only mode (the others are refused).
	ReadOnlyService bool `json:"read_only_service"`
	// Hotspots are the heaviest clients, sessions and path prefixes over the last
	// complete window (absent when hotspots are off).
	Hotspots *hotspot.Report `json:"hotspots,omitempty"`
}

// BreakerStatus is the ensemble breaker.
type BreakerStatus struct {
	State    string               `json:"state"` // closed, open, half-open
	Enabled  bool                 `json:"enabled"`
	Summary  string               `json:"summary"`
	Requests uint                 `json:"window_requests"`
	Failures uint                 `json:"window_failures"`
	History  []breaker.Transition `json:"history"`
	Settings BreakerSettings      `json:"settings"`
}

// BreakerSettings are the breaker's settings in use (a reload changes them).
type BreakerSettings struct {
	FailureRatio      float64 `json:"failure_ratio"`
	MinRequests       uint    `json:"min_requests"`
	Window            string  `json:"window"`
	SlowCall          string  `json:"slow_call"`
	OpenFor           string  `json:"open_for"`
	HalfOpenProbes    uint    `json:"half_open_probes"`
	HalfOpenAdmission float64 `json:"half_open_admission"`
	RejectCode        string  `json:"reject_code"`
}

// MemberStatus is one member.
type MemberStatus struct {
	Address       string    `json:"address"`
	Mode          string    `json:"mode"` // leader, follower, observer, standalone; "" when unknown
	Status        string    `json:"status"`
	Serving       bool      `json:"serving"`
	Ejected       bool      `json:"ejected"`
	EjectedUntil  time.Time `json:"ejected_until,omitzero"`
	EjectedReason string    `json:"ejected_reason,omitempty"`
	Zxid          string    `json:"zxid"`
	LatencyMs     float64   `json:"latency_ms"` // the last health probe's round trip
	Sessions      int       `json:"sessions"`
	Since         time.Time `json:"since"` // when health last changed its status
	LastError     string    `json:"last_error,omitempty"`
}

// Server serves the admin endpoints.
type Server struct {
	ensembles *Ensembles
	version   string
	started   time.Time
	gatherer  prometheus.Gatherer

	mu     sync.Mutex
	hist   map[string]*ring // per ensemble: the charts' points (Sample)
	config *ConfigStatus
	reload func() ReloadStatus
	every  time.Duration // Sample's interval
}

// NewServer returns the admin handler for the ensembles; metrics come from gatherer.
func NewServer(ensembles *Ensembles, version string, gatherer prometheus.Gatherer) *Server {
	return &Server{ensembles: ensembles, version: version, started: time.Now(), gatherer: gatherer,
		hist: map[string]*ring{}, every: SampleEvery}
}

// Handler routes /, /metrics, /healthz, /readyz and /api/v1/status.
func (a *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.gatherer, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", a.readyz)
	mux.HandleFunc("GET /api/v1/status", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(a.Status())
	})
	mux.HandleFunc("POST /-/reload", a.postReload)
	mux.HandleFunc("GET /{$}", a.page)
	return mux
}

// readyz is 200 when every ensemble can place a session.
func (a *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	var notReady []string
	for _, e := range a.ensembles.List() {
		if !e.Server.CanServe() {
			notReady = append(notReady, e.Name)
		}
	}
	if len(notReady) > 0 {
		http.Error(w, fmt.Sprintf("cannot place a session on: %v", notReady), http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ready")
}

// Status collects the current state.
func (a *Server) Status() Status {
	st := Status{Version: a.version, StartedAt: a.started}
	a.mu.Lock()
	st.Config = a.config
	a.mu.Unlock()
	for _, e := range a.ensembles.List() {
		st.Ensembles = append(st.Ensembles, ensembleStatus(e))
	}
	return st
}

func ensembleStatus(e Ensemble) EnsembleStatus {
	v := e.Monitor.View()
	brk := e.Server.Breaker()
	req, fail, _ := brk.Stats()
	t := e.Server.Totals()
	es := EnsembleStatus{
		Name: e.Name, Listen: e.Listen, Ready: e.Server.CanServe(), Quorum: v.Quorum, Leader: v.Leader,
		Sessions: t.Sessions, Requests: t.Requests, Replies: t.Replies,
		SessionMoves: t.Moves, SessionMovesClosed: t.MovesClosed,
		LimitedRequests: t.Limited, LimitedClients: e.Server.LimitedClients(),
		Breaker: BreakerStatus{State: brk.State().String(), Enabled: brk.Config().Enabled, Summary: brk.Summary(),
			Requests: req, Failures: fail, History: brk.History(), Settings: breakerSettings(brk.Config())},
		ReadOnlyService: e.Server.ServesReadOnly(),
	}
	if rep, ok := e.Server.Hotspots(); ok {
		es.Hotspots = &rep
	}
	perMember := e.Server.SessionsPerMember()
	ej := map[string]breaker.MemberStatus{}
	for _, m := range e.Server.Ejector().Status() {
		ej[m.Address] = m
	}
	for _, m := range v.Members {
		ms := MemberStatus{Address: m.Address, Mode: m.Mode, Status: m.Status.String(), Serving: m.Status == health.StatusServing,
			Zxid: fmt.Sprintf("0x%x", m.Zxid), LatencyMs: float64(m.Latency.Microseconds()) / 1000,
			Sessions: perMember[m.Address], Since: m.Since, LastError: m.LastError}
		if s := ej[m.Address]; s.Ejected {
			ms.Ejected, ms.EjectedUntil, ms.EjectedReason = true, s.Until, s.Reason
		}
		es.Members = append(es.Members, ms)
	}
	return es
}

// rates reads the request counters and latency histograms back from the registry.
func (a *Server) rates() map[string]opRate {
	out := map[string]opRate{}
	families, err := a.gatherer.Gather()
	if err != nil {
		return out
	}
	for _, f := range families {
		if f.GetName() != "zkgate_request_duration_seconds" {
			continue
		}
		for _, m := range f.GetMetric() {
			ens := label(m, "ensemble")
			r := out[ens]
			h := m.GetHistogram()
			total := r.Requests + float64(h.GetSampleCount())
			if total > 0 {
				r.MeanMs = (r.MeanMs*r.Requests + h.GetSampleSum()*1000) / total
			}
			r.Requests = total
			out[ens] = r
		}
	}
	return out
}

// ConfigStatus is the active configuration: its hash and when it was loaded, and the
// last reload's outcome.
type ConfigStatus struct {
	Hash       string        `json:"hash"`
	LoadedAt   time.Time     `json:"loaded_at"`
	LastReload *ReloadStatus `json:"last_reload,omitempty"`
}

// ReloadStatus is one reload's outcome: ok (what changed, what needs a restart and was
// kept), or error (nothing changed).
type ReloadStatus struct {
	At           time.Time `json:"at"`
	Result       string    `json:"result"` // ok or error
	Error        string    `json:"error,omitempty"`
	Changed      []string  `json:"changed,omitempty"`
	NeedsRestart []string  `json:"needs_restart,omitempty"`
}

// SetConfig records the active configuration for the status.
func (a *Server) SetConfig(c ConfigStatus) {
	a.mu.Lock()
	a.config = &c
	a.mu.Unlock()
}

// OnReload makes POST /-/reload call f and answer with its outcome.
func (a *Server) OnReload(f func() ReloadStatus) {
	a.mu.Lock()
	a.reload = f
	a.mu.Unlock()
}

func (a *Server) postReload(w http.ResponseWriter, _ *http.Request) {
	a.mu.Lock()
	f := a.reload
	a.mu.Unlock()
	if f == nil {
		http.Error(w, "reload is not available", http.StatusNotImplemented)
		return
	}
	st := f()
	w.Header().Set("Content-Type", "application/json")
	if st.Result != "ok" {
		w.WriteHeader(http.StatusBadRequest)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(st)
}

func breakerSettings(c breaker.Config) BreakerSettings {
	return BreakerSettings{FailureRatio: c.FailureRatio, MinRequests: c.MinRequests, Window: c.Window.String(),
		SlowCall: c.SlowCall.String(), OpenFor: c.OpenFor.String(), HalfOpenProbes: c.HalfOpenProbes,
		HalfOpenAdmission: c.HalfOpenAdmission, RejectCode: jute.ErrCode(c.RejectCode).String()}
}
