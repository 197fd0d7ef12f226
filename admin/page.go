package admin

import (
	"fmt"
	"html/template"
	"math"
	"net/http"
	"slices"
	"sort"
	"time"

	"github.com/zkgate/zkgate/breaker"
	"github.com/zkgate/zkgate/hotspot"
)

// The status page: what is wrong and since when (a banner), then per ensemble the last
// 15 minutes as charts, the members, the hot spots and the breaker's transitions. It
// refreshes in place every 2 s (a fetch of itself; without script, a meta refresh).

type pageData struct {
	Status
	Now    time.Time
	Alerts []alert
	Views  []ensembleView
}

type alert struct {
	Bad   bool // red; otherwise amber
	Text  string
	Since time.Time // zero when unknown
}

type ensembleView struct {
	EnsembleStatus
	PerSec, MeanMs float64
	Charts         []template.HTML
	Timeline       template.HTML
	Hot            []hotTable
	Window         float64 // the hot spots' window, seconds
}

type hotTable struct {
	Title string
	Rows  []hotspot.Entry
	// the heaviest by errors and by bytes, when not already first by requests
	TopErrors, TopBytes *hotspot.Entry
}

func (a *Server) page(w http.ResponseWriter, _ *http.Request) {
	data := pageData{Status: a.Status(), Now: time.Now()}
	rates := a.rates()
	a.mu.Lock()
	for _, e := range data.Ensembles {
		var points []point
		if r := a.hist[e.Name]; r != nil {
			points = r.ordered()
		}
		v := ensembleView{EnsembleStatus: e, MeanMs: rates[e.Name].MeanMs}
		if n := len(points); n > 0 {
			v.PerSec = points[n-1].Requests
		}
		v.Charts, v.Timeline = charts(points, e.Breaker.History, data.Now)
		v.Hot, v.Window = hotTables(e.Hotspots)
		data.Views = append(data.Views, v)
		data.Alerts = append(data.Alerts, alerts(e, points, data.Now)...)
	}
	a.mu.Unlock()
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if err := pageTmpl.Execute(w, data); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
	}
}

// charts draws an ensemble's points: request rate, latency, errors and rejects, sessions
// per member, and the breaker's timeline.
func charts(points []point, hist []breaker.Transition, now time.Time) ([]template.HTML, template.HTML) {
	// The last 15 minutes, or the time since zkgate started when that is shorter.
	from := now.Add(-HistorySpan)
	if len(points) > 0 && points[0].At.After(from) {
		from = points[0].At
	}
	if now.Sub(from) < 10*time.Second {
		from = now.Add(-10 * time.Second)
	}
	var at []time.Time
	var states []breaker.State
	req, p50, p99, errs, rejs := []float64{}, []float64{}, []float64{}, []float64{}, []float64{}
	var members []string
	for _, p := range points {
		at = append(at, p.At)
		states = append(states, p.Breaker)
		if !p.haveRates {
			req, errs, rejs = append(req, math.NaN()), append(errs, math.NaN()), append(rejs, math.NaN())
		} else {
			req, errs, rejs = append(req, p.Requests), append(errs, p.Errors), append(rejs, p.Rejects)
		}
		p50, p99 = append(p50, p.P50), append(p99, p.P99)
		for m := range p.Sessions {
			if !slices.Contains(members, m) {
				members = append(members, m)
			}
		}
	}
	sort.Strings(members)
	var marks []mark
	for _, t := range hist {
		if t.At.After(from) {
			marks = append(marks, mark{at: t.At, color: stateColor(t.To)})
		}
	}
	var sessions []series
	for i, m := range members {
		y := make([]float64, len(points))
		for j, p := range points {
			y[j] = float64(p.Sessions[m])
		}
		sessions = append(sessions, series{name: m, color: memberColors[i%len(memberColors)], y: y})
	}
	return []template.HTML{
		lineChart("requests/s", at, from, now, []series{{name: "", color: colorRequests, y: req}}, marks),
		lineChart("latency ms", at, from, now, []series{{name: "p50", color: colorP50, unit: " ms", y: p50},
			{name: "p99", color: colorP99, unit: " ms", y: p99}}, marks),
		lineChart("errors/s", at, from, now, []series{{name: "errors", color: colorErrors, y: errs},
			{name: "rejects", color: colorRejs, y: rejs}}, marks),
		lineChart("sessions", at, from, now, sessions, marks),
	}, timeline(at, states, from, now, hist)
}

// alerts says what is wrong with an ensemble, and since when.
func alerts(e EnsembleStatus, points []point, now time.Time) []alert {
	var out []alert
	name := e.Name + ": "
	if e.Breaker.State != breaker.Closed.String() {
		a := alert{Bad: e.Breaker.State == breaker.Open.String(), Text: name + "breaker " + e.Breaker.State}
		if h := e.Breaker.History; len(h) > 0 {
			last := h[len(h)-1]
			a.Since, a.Text = last.At, a.Text+" — "+last.Reason
		}
		out = append(out, a)
	}
	if !e.Quorum {
		a := alert{Bad: true, Text: name + "no quorum with a leader"}
		for i := len(points) - 1; i >= 0 && !points[i].Quorum; i-- {
			a.Since = points[i].At // the first sample of this run without a quorum
		}
		if e.ReadOnlyService {
			a.Text += "; read-only clients are served by a member in read-only mode, the others refused"
		}
		out = append(out, a)
	}
	for _, m := range e.Members {
		switch {
		case !m.Serving:
			a := alert{Bad: m.Status == "down", Text: fmt.Sprintf("%smember %s %s", name, m.Address, m.Status), Since: m.Since}
			if m.LastError != "" {
				a.Text += " — " + m.LastError
			}
			if m.Ejected {
				a.Text += " (ejected)"
			}
			out = append(out, a)
		case m.Ejected:
			out = append(out, alert{Text: fmt.Sprintf("%smember %s ejected until %s — %s", name, m.Address, m.EjectedUntil.Format("15:04:05"), m.EjectedReason)})
		}
	}
	if n := len(points); n > 0 && points[n-1].Rejects > 0 {
		a := alert{Text: fmt.Sprintf("%s%s requests/s answered by zkgate with the reject code (breaker or client limits)", name, short(points[n-1].Rejects))}
		for i := n - 1; i >= 0 && points[i].Rejects > 0; i-- {
			a.Since = points[i].At
		}
		out = append(out, a)
	}
	return out
}

func hotTables(r *hotspot.Report) ([]hotTable, float64) {
	if r == nil {
		return nil, 0
	}
	const rows = 5
	var out []hotTable
	for _, d := range []struct {
		title string
		l     hotspot.Lists
	}{{"clients", r.Clients}, {"sessions", r.Sessions}, {"path prefixes", r.Paths}} {
		t := hotTable{Title: d.title, Rows: d.l.ByRequests[:min(rows, len(d.l.ByRequests))]}
		first := ""
		if len(t.Rows) > 0 {
			first = t.Rows[0].Key
		}
		if len(d.l.ByErrors) > 0 && d.l.ByErrors[0].Key != first {
			t.TopErrors = &d.l.ByErrors[0]
		}
		if len(d.l.ByBytes) > 0 && d.l.ByBytes[0].Key != first {
			t.TopBytes = &d.l.ByBytes[0]
		}
		out = append(out, t)
	}
	return out, r.Seconds
}

// ago is a short "for how long": 45s, 12m05s, 3h02m.
func ago(now, t time.Time) string {
	d := now.Sub(t).Round(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	}
	return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
}

func bytesRate(v float64) string {
	switch {
	case v >= 1<<20:
		return fmt.Sprintf("%.1f MB/s", v/(1<<20))
	case v >= 1<<10:
		return fmt.Sprintf("%.1f KB/s", v/(1<<10))
	}
	return fmt.Sprintf("%.0f B/s", v)
}

var pageTmpl = template.Must(template.New("page").Funcs(template.FuncMap{
	"since": func(t time.Time) string { return ago(time.Now(), t) },
	"ago":   ago,
	"short": short,
	"bytes": bytesRate,
	"recent": func(h []breaker.Transition) []breaker.Transition {
		h = append([]breaker.Transition(nil), h...)
		sort.Slice(h, func(i, j int) bool { return h[i].At.After(h[j].At) })
		return h[:min(len(h), 6)]
	},
}).Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>zkgate</title>
<noscript><meta http-equiv="refresh" content="5"></noscript>
<style>
body{font:14px/1.35 system-ui,sans-serif;margin:12px 16px;color:#222;background:#fafafa}
h1{font-size:18px;margin:0;display:inline} h2{font-size:16px;margin:10px 0 4px}
.top{display:flex;gap:12px;align-items:baseline}
.banner{margin:8px 0;padding:8px 12px;border-radius:4px;font-size:15px}
.banner.ok{background:#e3f4e8;border:1px solid #2e9d4f} .banner.bad{background:#fde8e8;border:1px solid #d62728}
.banner div{margin:2px 0} .banner .b{color:#b00020;font-weight:600} .banner .w{color:#8a4b00;font-weight:600}
.grid{display:grid;grid-template-columns:repeat(2,600px);gap:2px 16px}
svg.chart{background:#fff;border:1px solid #e3e3e3} svg .t{font:600 13px system-ui,sans-serif;fill:#222}
svg .l{font:12px system-ui,sans-serif;fill:#333} svg .a{font:11px system-ui,sans-serif;fill:#777} svg .g{stroke:#eee}
table{border-collapse:collapse;margin:4px 0 8px;background:#fff;font-size:13px}
td,th{border:1px solid #ddd;padding:2px 8px;text-align:left} th{background:#f0f0f0} td.n{text-align:right}
.ok{color:#0a7a2f;font-weight:600} .bad{color:#b00020;font-weight:600} .warn{color:#a05a00;font-weight:600}
.muted{color:#777} .hot{display:flex;gap:12px;flex-wrap:wrap}
</style></head><body data-refreshes="0">
<div id="live">
<div class="top"><h1>zkgate {{.Version}}</h1><span class="muted">up {{since .StartedAt}} · {{.Now.Format "15:04:05 MST"}} · <a href="/api/v1/status">status JSON</a> · <a href="/metrics">metrics</a></span></div>
{{if .Alerts}}<div class="banner bad" id="alerts">{{range .Alerts}}<div><span class="{{if .Bad}}b{{else}}w{{end}}">{{.Text}}</span>{{if not .Since.IsZero}} <span class="muted">since {{.Since.Format "15:04:05"}} ({{ago $.Now .Since}})</span>{{end}}</div>{{end}}</div>
{{else}}<div class="banner ok" id="alerts"><span class="ok">All well</span>: every ensemble has a quorum, its breaker closed and every member serving.</div>{{end}}
{{range .Views}}
<h2>{{.Name}} <span class="muted">on {{.Listen}}</span>
 {{if .Ready}}<span class="ok">ready</span>{{else}}<span class="bad">not ready</span>{{end}}
 <span class="muted">· breaker</span> <span class="{{if eq .Breaker.State "closed"}}ok{{else if eq .Breaker.State "open"}}bad{{else}}warn{{end}}">{{.Breaker.State}}</span>
 <span class="muted">· {{.Sessions}} sessions · {{short .PerSec}} req/s · mean reply {{printf "%.2f" .MeanMs}} ms · {{.SessionMoves}} moved{{if .SessionMovesClosed}}, {{.SessionMovesClosed}} closed instead{{end}}{{if .LimitedRequests}} · {{.LimitedRequests}} over client limits{{end}}</span></h2>
<div class="grid">{{range .Charts}}{{.}}{{end}}{{.Timeline}}</div>
<table><tr><th>member</th><th>role</th><th>health</th><th>ejected</th><th>sessions</th><th>zxid</th><th>probe ms</th></tr>
{{range .Members}}<tr><td>{{.Address}}</td><td>{{if .Mode}}{{.Mode}}{{else}}<span class="muted">unknown</span>{{end}}</td>
<td class="{{if .Serving}}ok{{else}}bad{{end}}">{{.Status}}{{if not .Serving}} <span class="muted">since {{.Since.Format "15:04:05"}}{{if .LastError}} · {{.LastError}}{{end}}</span>{{end}}</td>
<td>{{if .Ejected}}<span class="bad">until {{.EjectedUntil.Format "15:04:05"}}</span> {{.EjectedReason}}{{else}}no{{end}}</td>
<td class="n">{{.Sessions}}</td><td>{{.Zxid}}</td><td class="n">{{printf "%.2f" .LatencyMs}}</td></tr>
{{end}}</table>
{{if .Hot}}<div class="muted">hot spots over the last {{printf "%.0f" .Window}} s</div><div class="hot">{{range .Hot}}
<table class="hotspots"><tr><th>{{.Title}}</th><th>req/s</th><th>err/s</th><th>bytes</th><th>since</th></tr>
{{range .Rows}}<tr><td>{{.Key}}</td><td class="n">{{short .RequestsPerSec}}</td><td class="n">{{short .ErrorsPerSec}}</td><td class="n">{{bytes .BytesPerSec}}</td><td>{{.Since.Format "15:04:05"}}</td></tr>
{{else}}<tr><td colspan="5" class="muted">no traffic</td></tr>{{end}}
{{with .TopErrors}}<tr><td colspan="5">most errors: {{.Key}} ({{short .ErrorsPerSec}}/s)</td></tr>{{end}}
{{with .TopBytes}}<tr><td colspan="5">most bytes: {{.Key}} ({{bytes .BytesPerSec}})</td></tr>{{end}}
</table>{{end}}</div>{{end}}
{{with recent .Breaker.History}}<table><tr><th>when</th><th>breaker</th><th>why</th></tr>
{{range .}}<tr><td>{{.At.Format "15:04:05.000"}}</td><td>{{.FromName}} → {{.ToName}}</td><td>{{.Reason}}</td></tr>{{end}}
</table>{{end}}
{{end}}
</div>
<script>
setInterval(async () => {
  try {
    const r = await fetch(location.href, {cache: "no-store"});
    const doc = new DOMParser().parseFromString(await r.text(), "text/html");
    document.getElementById("live").replaceWith(doc.getElementById("live"));
    document.body.dataset.refreshes = +document.body.dataset.refreshes + 1;
  } catch (e) {}
}, 2000);
</script>
</body></html>`))

type opRate struct {
	Requests float64 // replies timed, total
	MeanMs   float64 // mean reply latency since start
}
