//go:build linux

package main

import (
	"bufio"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Time to detection: from a fault's injection to zkgate's first reaction, read from its
// /metrics (any zkgate binary has them, so one build can be set against another), and to
// the first disconnect a workload client saw.

const (
	detectEvery = 50 * time.Millisecond
	detectFor   = 30 * time.Second
)

// detectorMetrics are the series whose change is a reaction to a fault.
var detectorMetrics = []string{
	"zkgate_session_moves_total",
	"zkgate_member_ejected",
	"zkgate_member_up",
	"zkgate_breaker_transitions_total",
}

// detection is what a scenario's detection figures are; durations count from injected.
type detection struct {
	injected time.Time // zero: the scenario injected no fault
	gates    int       // gates polled (0: direct)
	reacted  time.Duration
	how      []string // the reactions of the first poll that showed any; nil: none in detectFor
	noticed  time.Duration
	anyNote  bool // a client saw a disconnect after the injection
}

// detector polls the gates' detector metrics from a fault's injection until one changes.
// It is started once per scenario, by the fault (inject), and waited for by execute.
type detector struct {
	wg  sync.WaitGroup
	det detection // written by the poll goroutine until wg is done
}

// inject marks the fault's injection; each fault calls it just before it acts (a kill, a
// SIGSTOP, the first restart), and later calls do nothing. skip are gates the fault itself
// kills, whose counters restart from zero. It reads the other gates' metrics first, so the
// poll compares with the state just before the fault.
func (r *run) inject(ctx context.Context, skip ...*gate) {
	if !r.detect.det.injected.IsZero() {
		return
	}
	type watched struct {
		g    *gate
		base map[string]float64
	}
	var gates []watched
	for _, g := range r.gates {
		if slices.Contains(skip, g) {
			continue
		}
		base, err := g.series(detectorMetrics)
		if err != nil {
			r.log("  detection: zkgate %s metrics: %v", g.listen, err)
			continue
		}
		gates = append(gates, watched{g, base})
	}
	r.detect.det.injected, r.detect.det.gates = time.Now(), len(gates)
	if len(gates) == 0 {
		return
	}
	injected := r.detect.det.injected
	r.detect.wg.Go(func() {
		ctx, cancel := context.WithDeadline(ctx, injected.Add(detectFor))
		defer cancel()
		tick := time.NewTicker(detectEvery)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			var how []string
			for _, w := range gates {
				now, err := w.g.series(detectorMetrics)
				if err == nil {
					how = append(how, reactions(w.base, now)...)
				}
			}
			if len(how) > 0 {
				slices.Sort(how)
				r.detect.det.reacted, r.detect.det.how = time.Since(injected), slices.Compact(how)
				return
			}
		}
	})
}

// detection waits for the poll and adds the clients' first disconnect after the injection.
func (r *run) detection() detection {
	r.detect.wg.Wait()
	d := r.detect.det
	if d.injected.IsZero() {
		return d
	}
	for _, c := range r.clients {
		if at, ok := c.disconnectedSince(d.injected); ok && (!d.anyNote || at.Sub(d.injected) < d.noticed) {
			d.noticed, d.anyNote = at.Sub(d.injected), true
		}
	}
	return d
}

// reactions names what changed between two readings of the detector series: a session
// move or close (its outcome), a breaker transition (to which state), a member ejected, a
// member down.
func reactions(base, now map[string]float64) []string {
	var out []string
	for key, v := range now {
		name, labels, _ := strings.Cut(key, "{")
		was, seen := base[key]
		switch name {
		case "zkgate_session_moves_total":
			// The outcome tells a session moved from one closed at the loss (a write in
			// flight, under unsafe_in_flight close): both count as a reaction.
			if v > was {
				out = append(out, "session "+label(labels, "outcome"))
			}
		case "zkgate_breaker_transitions_total":
			if v > was {
				out = append(out, "breaker "+label(labels, "to"))
			}
		case "zkgate_member_ejected":
			if v == 1 && (!seen || was != 1) {
				out = append(out, "member ejected")
			}
		case "zkgate_member_up":
			if v == 0 && (!seen || was != 0) {
				out = append(out, "member down")
			}
		}
	}
	return out
}

// label is one label's value in a series' labels ("?" when absent).
func label(labels, name string) string {
	if _, after, ok := strings.Cut(labels, name+`="`); ok {
		v, _, _ := strings.Cut(after, `"`)
		return v
	}
	return "?"
}

// series reads the samples of the named metrics on /metrics, keyed by name and labels.
func (g *gate) series(names []string) (map[string]float64, error) {
	body, err := g.get("/metrics")
	if err != nil {
		return nil, err
	}
	return parseSeries(string(body), names)
}

func parseSeries(body string, names []string) (map[string]float64, error) {
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		sp := strings.LastIndexByte(line, ' ')
		if sp < 0 || strings.HasPrefix(line, "#") {
			continue
		}
		key := line[:sp]
		name, _, _ := strings.Cut(key, "{")
		if !slices.Contains(names, name) {
			continue
		}
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if err != nil {
			return nil, fmt.Errorf("metric line %q: %w", line, err)
		}
		out[key] = v
	}
	return out, sc.Err()
}

// reactedCell and noticedCell are the report's two detection columns.
func (d detection) reactedCell() string {
	switch {
	case d.injected.IsZero():
		return "no fault"
	case d.gates == 0:
		return "–"
	case d.how == nil:
		return fmt.Sprintf("none in %v", detectFor)
	}
	return fmt.Sprintf("%v (%s)", d.reacted.Round(10*time.Millisecond), strings.Join(d.how, ", "))
}

func (d detection) noticedCell() string {
	switch {
	case d.injected.IsZero():
		return "no fault"
	case !d.anyNote:
		return "none"
	}
	return d.noticed.Round(10 * time.Millisecond).String()
}
