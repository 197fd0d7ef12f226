package breaker

import (
	"strings"
	"testing"
	"time"

	"github.com/zkgate/zkgate/jute"
)

// TestOutlier pins the rule every per-member ejection goes through: a member stands out
// only when its figure reaches the threshold and its peers' median stays under half of it.
func TestOutlier(t *testing.T) {
	for _, c := range []struct {
		own   float64
		peers []float64
		want  bool
	}{
		{0.6, []float64{0, 0.1}, true},
		{0.6, []float64{0.24, 0.26}, false}, // the median, 0.25, is not under half of 0.5
		{0.6, []float64{0.2, 0.26}, true},
		{0.6, []float64{0.3, 0.9}, false},
		{0.4, []float64{0, 0}, false},
		{1, nil, false},
		{0.5, []float64{0.1, 0.2, 0.9}, true},
	} {
		if got := outlier(c.own, append([]float64(nil), c.peers...), 0.5); got != c.want {
			t.Errorf("outlier(%v, %v, 0.5) = %v, want %v", c.own, c.peers, got, c.want)
		}
	}
}

// TestEjectionComparesWithPeers: a member is ejected for being worse than its peers, never
// for what every member shows (an overloaded or stalled ensemble, where ejecting one only
// moves its load onto the others).
func TestEjectionComparesWithPeers(t *testing.T) {
	t0 := time.Unix(1000, 0)
	ms := time.Millisecond
	// stalls records n stalls on member from 8 sessions, as the sweep reports requests
	// waiting past slow_call.
	stalls := func(j *Ejector, member string, n int) {
		for i := range n {
			j.Stalled(member, int64(i%8)<<40|1, 700*ms)
		}
	}
	for _, c := range []struct {
		name   string
		record func(j *Ejector)
		want   string // the ejected member, "" for none
		reason string
	}{
		{"all members slow (stalls together on each): none ejected", func(j *Ejector) {
			for _, m := range members3 {
				replies(j, m, 40, jute.ErrOK, 400*ms)
				stalls(j, m, 60)
			}
		}, "", ""},
		{"one member slow, peers fast: ejected", func(j *Ejector) {
			replies(j, "m1", 100, jute.ErrOK, 3*ms)
			replies(j, "m2", 100, jute.ErrOK, 4*ms)
			replies(j, "m3", 40, jute.ErrOK, 400*ms)
			stalls(j, "m3", 60)
		}, "m3", "failure ratio 0.60"},
		{"one member slow, peers slow too but under half the threshold: ejected", func(j *Ejector) {
			replies(j, "m1", 90, jute.ErrOK, 300*ms)
			stalls(j, "m1", 10)
			replies(j, "m2", 85, jute.ErrOK, 300*ms)
			stalls(j, "m2", 15)
			replies(j, "m3", 30, jute.ErrOK, 400*ms)
			stalls(j, "m3", 70)
		}, "m3", "failure ratio 0.70"},
		{"all members failing (system errors everywhere): none ejected", func(j *Ejector) {
			for _, m := range members3 {
				replies(j, m, 10, jute.ErrOK, ms)
				replies(j, m, 10, jute.ErrConnectionLoss, ms)
			}
		}, "", ""},
		{"one member failing, peers fine: ejected", func(j *Ejector) {
			replies(j, "m1", 20, jute.ErrOK, ms)
			replies(j, "m2", 20, jute.ErrOK, ms)
			replies(j, "m3", 10, jute.ErrOK, ms)
			replies(j, "m3", 10, jute.ErrConnectionLoss, ms)
		}, "m3", "failure ratio 0.50"},
		{"connect failures on every member: none ejected", func(j *Ejector) {
			for _, m := range members3 {
				for range 3 {
					j.ConnectFailed(m)
				}
			}
		}, "", ""},
		{"connect failures on one member: ejected", func(j *Ejector) {
			for range 3 {
				j.ConnectFailed("m1")
			}
			j.ConnectFailed("m2")
		}, "m1", "3 consecutive connect failures"},
		{"stalled share high everywhere: none ejected", func(j *Ejector) {
			for range 150 {
				j.StallSample(map[string]bool{"m1": true, "m2": true, "m3": true}, 100*ms)
			}
		}, "", ""},
		{"both followers stalled, the leader carries no session (routing avoids it): none ejected", func(j *Ejector) {
			for range 150 {
				j.StallSample(map[string]bool{"m1": true, "m2": true}, 100*ms)
			}
			replies(j, "m1", 40, jute.ErrOK, 400*ms)
			stalls(j, "m1", 60)
			replies(j, "m2", 45, jute.ErrOK, 400*ms)
			stalls(j, "m2", 55)
		}, "", ""},
		{"one follower stalled, the other fine, the leader idle: ejected", func(j *Ejector) {
			for range 150 {
				j.StallSample(map[string]bool{"m1": true}, 100*ms)
			}
			replies(j, "m2", 100, jute.ErrOK, 3*ms)
		}, "m1", "stalled on it past the slow-call threshold"},
		{"slow everywhere (latency): none ejected", func(j *Ejector) {
			for _, m := range members3 {
				replies(j, m, 50, jute.ErrOK, 900*ms)
			}
		}, "", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			j, _ := testEjector(members3)
			c.record(j)
			changes := j.Evaluate(t0)
			if c.want == "" {
				if len(changes) != 0 {
					t.Fatalf("ejected %+v", changes)
				}
				return
			}
			if len(changes) != 1 || changes[0].Member != c.want || !strings.Contains(changes[0].Reason, c.reason) {
				t.Fatalf("changes %+v, want %s ejected for %q", changes, c.want, c.reason)
			}
		})
	}
}
