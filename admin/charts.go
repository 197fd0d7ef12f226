package admin

import (
	"fmt"
	"html/template"
	"math"
	"strings"
	"time"

	"github.com/zkgate/zkgate/breaker"
)

// The charts are inline SVG drawn here: no script library, no external asset.

const (
	chartW, chartH         = 600, 128
	plotL, plotR           = 52, 592
	plotT, plotB           = 24, 108
	colorClosed            = "#2e9d4f"
	colorHalfOpen          = "#e0a100"
	colorOpen              = "#d62728"
	colorRequests          = "#1f77b4"
	colorP50, colorP99     = "#1f77b4", "#ff7f0e"
	colorErrors, colorRejs = "#d62728", "#9467bd"
)

var memberColors = []string{"#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f"}

func stateColor(s breaker.State) string {
	switch s {
	case breaker.Open:
		return colorOpen
	case breaker.HalfOpen:
		return colorHalfOpen
	}
	return colorClosed
}

// series is one line of a chart, a value per point (NaN: no value).
type series struct {
	name, color, unit string
	y                 []float64
}

// mark is a moment drawn across a chart: a breaker transition.
type mark struct {
	at    time.Time
	color string
}

// axis maps times and values to the plot box.
type axis struct {
	from, to time.Time
	top      float64
}

func (a axis) x(t time.Time) float64 {
	span := a.to.Sub(a.from).Seconds()
	return plotL + (plotR-plotL)*math.Min(math.Max(t.Sub(a.from).Seconds()/span, 0), 1)
}

func (a axis) y(v float64) float64 { return plotB - (plotB-plotT)*math.Min(v/a.top, 1) }

// niceCeil rounds v up to 1, 2 or 5 times a power of ten (at least 1).
func niceCeil(v float64) float64 {
	if v <= 1 || math.IsNaN(v) {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

// short formats a figure for a label: 950, 1.2k, 3.4M, 0.25.
func short(v float64) string {
	switch a := math.Abs(v); {
	case math.IsNaN(v):
		return "–"
	case a >= 1e6:
		return fmt.Sprintf("%.1fM", v/1e6)
	case a >= 1e4:
		return fmt.Sprintf("%.0fk", v/1e3)
	case a >= 1e3:
		return fmt.Sprintf("%.1fk", v/1e3)
	case a >= 10 || a == 0:
		return fmt.Sprintf("%.0f", v)
	case a >= 1:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

// frame opens an SVG with its title and time axis.
func frame(b *strings.Builder, title string, ax axis, h int) {
	fmt.Fprintf(b, `<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" role="img" aria-label="%s">`,
		chartW, h, chartW, h, template.HTMLEscapeString(title))
	fmt.Fprintf(b, `<text x="4" y="14" class="t">%s</text>`, template.HTMLEscapeString(title))
	span := ax.to.Sub(ax.from)
	step := 5 * time.Minute
	for _, s := range []time.Duration{5 * time.Second, 10 * time.Second, 15 * time.Second, 30 * time.Second,
		time.Minute, 2 * time.Minute, 5 * time.Minute} {
		if span/s <= 5 {
			step = s
			break
		}
	}
	for ago := time.Duration(0); ago <= span; ago += step {
		x := ax.x(ax.to.Add(-ago))
		label := "now"
		switch {
		case ago >= time.Minute:
			label = fmt.Sprintf("−%dm", int(ago.Minutes()))
		case ago > 0:
			label = fmt.Sprintf("−%ds", int(ago.Seconds()))
		}
		fmt.Fprintf(b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" class="g"/><text x="%.1f" y="%d" class="a" text-anchor="middle">%s</text>`,
			x, plotT, x, h-20, x, h-6, label)
	}
}

// lineChart draws series over [from, to], with the breaker's transitions as marks.
func lineChart(title string, at []time.Time, from, to time.Time, lines []series, marks []mark) template.HTML {
	top := 0.0
	for _, l := range lines {
		for _, v := range l.y {
			if !math.IsNaN(v) {
				top = math.Max(top, v)
			}
		}
	}
	ax := axis{from: from, to: to, top: niceCeil(top)}
	var b strings.Builder
	frame(&b, title, ax, chartH)
	for _, v := range []float64{0, ax.top / 2, ax.top} {
		y := ax.y(v)
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" class="g"/><text x="%d" y="%.1f" class="a" text-anchor="end">%s</text>`,
			plotL, y, plotR, y, plotL-4, y+4, short(v))
	}
	for _, m := range marks {
		x := ax.x(m.at)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="%s" stroke-dasharray="3 3"/>`, x, plotT, x, plotB, m.color)
	}
	lx := 4.0 + 7.5*float64(len(title)) + 14
	for _, l := range lines {
		var pts []string
		flush := func() {
			if len(pts) > 1 {
				fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.8" points="%s"/>`, l.color, strings.Join(pts, " "))
			} else if len(pts) == 1 {
				xy := strings.Split(pts[0], ",")
				fmt.Fprintf(&b, `<circle cx="%s" cy="%s" r="2" fill="%s"/>`, xy[0], xy[1], l.color)
			}
			pts = pts[:0]
		}
		last := math.NaN()
		for i, v := range l.y {
			if math.IsNaN(v) {
				flush()
				continue
			}
			last = v
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", ax.x(at[i]), ax.y(v)))
		}
		flush()
		legend := strings.TrimSpace(fmt.Sprintf("%s %s%s", l.name, short(last), l.unit))
		fmt.Fprintf(&b, `<rect x="%.0f" y="5" width="10" height="10" fill="%s"/><text x="%.0f" y="14" class="l">%s</text>`,
			lx, l.color, lx+13, template.HTMLEscapeString(legend))
		lx += 13 + 6.5*float64(len(legend)) + 12
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// timeline draws the breaker's state over [from, to] as a band, its transitions marked
// and the latest ones labelled.
func timeline(at []time.Time, states []breaker.State, from, to time.Time, hist []breaker.Transition) template.HTML {
	const h = 76
	ax := axis{from: from, to: to, top: 1}
	var b strings.Builder
	frame(&b, "breaker", ax, h)
	const y0, y1 = 22, 44
	for i := 0; i < len(states); {
		j := i + 1
		for j < len(states) && states[j] == states[i] {
			j++ // one rectangle per run of a state
		}
		end := to
		if j < len(at) {
			end = at[j]
		}
		x0, x1 := ax.x(at[i]), ax.x(end)
		fmt.Fprintf(&b, `<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="%s"/>`, x0, y0, math.Max(x1-x0, 1), y1-y0, stateColor(states[i]))
		i = j
	}
	var shown []breaker.Transition
	for _, t := range hist {
		if !t.At.Before(from) {
			shown = append(shown, t)
		}
	}
	for i, t := range shown {
		x := ax.x(t.At)
		c := stateColor(t.To)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#222" stroke-width="1.5"/><path d="M%.1f %d l-4 -6 h8 z" fill="%s"/>`,
			x, y0-2, x, y1+2, x, y0-2, c)
		if i >= len(shown)-3 { // the latest three, labelled
			fmt.Fprintf(&b, `<text x="%.1f" y="%d" class="l" text-anchor="%s">%s %s</text>`, x, y1+12,
				anchor(x), t.ToName, t.At.Format("15:04:05"))
		}
	}
	lx := 80.0
	for _, s := range []breaker.State{breaker.Closed, breaker.HalfOpen, breaker.Open} {
		fmt.Fprintf(&b, `<rect x="%.0f" y="5" width="10" height="10" fill="%s"/><text x="%.0f" y="14" class="l">%s</text>`, lx, stateColor(s), lx+13, s)
		lx += 13 + 6.5*float64(len(s.String())) + 12
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

func anchor(x float64) string {
	switch {
	case x > plotR-60:
		return "end"
	case x < plotL+60:
		return "start"
	}
	return "middle"
}
