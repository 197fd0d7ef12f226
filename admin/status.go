package admin

import (
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/zkgate/zkgate/breaker"
	"github.com/zkgate/zkgate/health"
	"github.com/zkgate/zkgate/proxy"
)

// Status is /api/v1/status.
type Status struct {
	Version   string           `json:"version"`
	StartedAt time.Time        `json:"started_at"`
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
}

// BreakerStatus is the ensemble breaker.
type BreakerStatus struct {
	State    string               `json:"state"` // closed, open, half-open
	Enabled  bool                 `json:"enabled"`
	Summary  string               `json:"summary"`
	Requests uint                 `json:"window_requests"`
	Failures uint                 `json:"window_failures"`
	History  []breaker.Transition `json:"history"`
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
	LastError     string    `json:"last_error,omitempty"`
}

// Server serves the admin endpoints.
type Server struct {
	ensembles []Ensemble
	version   string
	started   time.Time
	gatherer  prometheus.Gatherer

	mu   sync.Mutex
	last map[string]sample // per ensemble, at the previous page view: the request rate
}

type sample struct {
	at       time.Time
	requests uint64
}

// NewServer returns the admin handler for the ensembles; metrics come from gatherer.
func NewServer(ensembles []Ensemble, version string, gatherer prometheus.Gatherer) *Server {
	return &Server{ensembles: ensembles, version: version, started: time.Now(), gatherer: gatherer, last: map[string]sample{}}
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
	mux.HandleFunc("GET /{$}", a.page)
	return mux
}

// readyz is 200 when every ensemble can place a session.
func (a *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	var notReady []string
	for _, e := range a.ensembles {
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
	for _, e := range a.ensembles {
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
			Requests: req, Failures: fail, History: brk.History()},
	}
	perMember := map[string]int{}
	for _, s := range e.Server.Sessions() {
		perMember[s.Member]++
	}
	ej := map[string]breaker.MemberStatus{}
	for _, m := range e.Server.Ejector().Status() {
		ej[m.Address] = m
	}
	for _, m := range v.Members {
		ms := MemberStatus{Address: m.Address, Mode: m.Mode, Status: m.Status.String(), Serving: m.Status == health.StatusServing,
			Zxid: fmt.Sprintf("0x%x", m.Zxid), LatencyMs: float64(m.Latency.Microseconds()) / 1000,
			Sessions: perMember[m.Address], LastError: m.LastError}
		if s := ej[m.Address]; s.Ejected {
			ms.Ejected, ms.EjectedUntil, ms.EjectedReason = true, s.Until, s.Reason
		}
		es.Members = append(es.Members, ms)
	}
	return es
}

// pageData adds request rate and latency, from the metrics, to the status.
type pageData struct {
	Status
	Now   time.Time
	Rates map[string]opRate // by ensemble
}

type opRate struct {
	Requests float64 // replies timed, total
	MeanMs   float64 // mean reply latency since start
	PerSec   float64 // requests per second since the previous page view (or since start)
}

func (a *Server) page(w http.ResponseWriter, _ *http.Request) {
	data := pageData{Status: a.Status(), Now: time.Now(), Rates: a.rates()}
	a.mu.Lock()
	for _, e := range data.Ensembles {
		prev, ok := a.last[e.Name]
		if !ok {
			prev = sample{at: a.started}
		}
		r := data.Rates[e.Name]
		if d := data.Now.Sub(prev.at).Seconds(); d > 0 && e.Requests >= prev.requests {
			r.PerSec = float64(e.Requests-prev.requests) / d
		}
		data.Rates[e.Name] = r
		a.last[e.Name] = sample{at: data.Now, requests: e.Requests}
	}
	a.mu.Unlock()
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := pageTmpl.Execute(w, data); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
	}
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
			ens := ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "ensemble" {
					ens = l.GetValue()
				}
			}
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

var pageTmpl = template.Must(template.New("page").Funcs(template.FuncMap{
	"since": func(t time.Time) string { return time.Since(t).Round(time.Second).String() },
	"recent": func(h []breaker.Transition) []breaker.Transition {
		h = append([]breaker.Transition(nil), h...)
		sort.Slice(h, func(i, j int) bool { return h[i].At.After(h[j].At) })
		if len(h) > 8 {
			h = h[:8]
		}
		return h
	},
}).Parse(`<!doctype html>
<html><head><meta charset="utf-8"><meta http-equiv="refresh" content="2">
<title>zkgate</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}
h1{font-size:20px;margin:0 0 .2em} h2{font-size:17px;margin:1.2em 0 .3em}
table{border-collapse:collapse;margin:.3em 0 .8em;background:#fff}
td,th{border:1px solid #ddd;padding:3px 9px;text-align:left} th{background:#f0f0f0}
.ok{color:#0a7a2f;font-weight:600} .bad{color:#b00020;font-weight:600} .warn{color:#a05a00;font-weight:600}
.muted{color:#777}
</style></head><body>
<h1>zkgate {{.Version}}</h1>
<div class="muted">up {{since .StartedAt}} · refreshed {{.Now.Format "15:04:05"}} · <a href="/api/v1/status">status JSON</a> · <a href="/metrics">metrics</a></div>
{{range .Ensembles}}{{$rate := index $.Rates .Name}}
<h2>{{.Name}} <span class="muted">on {{.Listen}}</span>
 {{if .Ready}}<span class="ok">ready</span>{{else}}<span class="bad">not ready</span>{{end}}</h2>
<div>breaker <span class="{{if eq .Breaker.State "closed"}}ok{{else if eq .Breaker.State "open"}}bad{{else}}warn{{end}}">{{.Breaker.State}}</span>
 — {{.Breaker.Summary}} · quorum {{if .Quorum}}<span class="ok">yes</span>{{else}}<span class="bad">no</span>{{end}}
 · {{.Sessions}} sessions · {{printf "%.1f" $rate.PerSec}} requests/s ({{.Requests}} in all), mean reply {{printf "%.2f" $rate.MeanMs}} ms · {{.SessionMoves}} sessions moved off lost members{{if .SessionMovesClosed}}, {{.SessionMovesClosed}} closed instead{{end}}{{if .LimitedRequests}} · {{.LimitedRequests}} requests over client limits{{range $i, $c := .LimitedClients}}{{if lt $i 3}} ({{$c.IP}}: {{$c.Limited}}){{end}}{{end}}{{end}}</div>
<table><tr><th>member</th><th>role</th><th>health</th><th>ejected</th><th>sessions</th><th>zxid</th><th>probe ms</th></tr>
{{range .Members}}<tr><td>{{.Address}}</td><td>{{if .Mode}}{{.Mode}}{{else}}<span class="muted">unknown</span>{{end}}</td>
<td class="{{if .Serving}}ok{{else}}bad{{end}}">{{.Status}}{{if .LastError}} <span class="muted">{{.LastError}}</span>{{end}}</td>
<td>{{if .Ejected}}<span class="bad">until {{.EjectedUntil.Format "15:04:05"}}</span> {{.EjectedReason}}{{else}}no{{end}}</td>
<td>{{.Sessions}}</td><td>{{.Zxid}}</td><td>{{printf "%.2f" .LatencyMs}}</td></tr>
{{end}}</table>
{{with recent .Breaker.History}}<table><tr><th>when</th><th>breaker</th><th>why</th></tr>
{{range .}}<tr><td>{{.At.Format "15:04:05.000"}}</td><td>{{.FromName}} → {{.ToName}}</td><td>{{.Reason}}</td></tr>{{end}}
</table>{{else}}<div class="muted">no breaker transitions yet</div>{{end}}
{{end}}
</body></html>`))
