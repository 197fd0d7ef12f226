package breaker

import (
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/zkgate/zkgate/jute"
)

var members3 = []string{"m1", "m2", "m3"}

func testEjector(addrs []string) (*Ejector, *strings.Builder) {
	var logs strings.Builder
	return NewEjector(addrs, DefaultEjectionConfig(), zerolog.New(&logs)), &logs
}

// replies records n replies on member with one latency and code, from 8 sessions.
func replies(j *Ejector, member string, n int, code jute.ErrCode, latency time.Duration) {
	for i := range n {
		j.Reply(member, int64(i%8)<<32|0x1000, code, latency)
	}
}

func TestEjectionDecisions(t *testing.T) {
	t0 := time.Unix(1000, 0)
	ms := time.Millisecond
	for _, c := range []struct {
		name   string
		record func(j *Ejector)
		want   string // the ejected member, "" for none
		reason string
	}{
		{"healthy members stay", func(j *Ejector) {
			for _, m := range members3 {
				replies(j, m, 50, jute.ErrOK, 2*ms)
			}
		}, "", ""},
		{"consecutive connect failures", func(j *Ejector) {
			for range 3 {
				j.ConnectFailed("m2")
			}
		}, "m2", "3 consecutive connect failures"},
		{"a success between connect failures resets the count", func(j *Ejector) {
			j.ConnectFailed("m2")
			j.ConnectFailed("m2")
			j.Connected("m2")
			j.ConnectFailed("m2")
		}, "", ""},
		{"failure ratio", func(j *Ejector) {
			replies(j, "m3", 5, jute.ErrOK, ms)
			replies(j, "m3", 5, jute.ErrConnectionLoss, ms)
		}, "m3", "failure ratio 0.50 over 10 requests"},
		{"application errors are not failures", func(j *Ejector) {
			replies(j, "m3", 100, jute.ErrNoNode, ms)
		}, "", ""},
		{"lost requests are failures", func(j *Ejector) {
			replies(j, "m1", 4, jute.ErrOK, ms)
			j.Lost("m1", 6)
		}, "m1", "failure ratio 0.60"},
		{"latency far above the peers", func(j *Ejector) {
			replies(j, "m1", 20, jute.ErrOK, 2*ms)
			replies(j, "m2", 20, jute.ErrOK, 3*ms)
			replies(j, "m3", 20, jute.ErrOK, 300*ms)
		}, "m3", "more than 5.0× the peers' median"},
		{"GC pauses (150 ms) are a JVM's ordinary life, under the floor", func(j *Ejector) {
			replies(j, "m1", 20, jute.ErrOK, 10*ms)
			replies(j, "m2", 20, jute.ErrOK, 12*ms)
			replies(j, "m3", 12, jute.ErrOK, 167*ms)
		}, "", ""},
		{"stalled requests count as slow failures", func(j *Ejector) {
			replies(j, "m1", 20, jute.ErrOK, 2*ms)
			for i := range 10 {
				j.Stalled("m2", int64(i)<<40|1, 600*ms)
			}
		}, "m2", "failure ratio 1.00"},
		{"one session's stalls are its load (1 MB writes), not the member's fault", func(j *Ejector) {
			replies(j, "m1", 20, jute.ErrOK, 2*ms)
			replies(j, "m2", 13, jute.ErrOK, 2*ms)
			for range 37 {
				j.Stalled("m2", 0x77, 700*ms)
			}
		}, "", ""},
		{"a member stalled again and again (gray failure)", func(j *Ejector) {
			// 800 ms frozen of every second: a request waits past slow_call 3 ticks in 10,
			// for 15 s; it answers quickly in between, so its failure ratio stays low.
			replies(j, "m2", 200, jute.ErrOK, 2*ms)
			for i := range 150 {
				j.StallSample(map[string]bool{"m2": i%10 < 3}, 100*ms)
			}
		}, "m2", "stalled on it past the slow-call threshold"},
		{"one short stall is not ejected", func(j *Ejector) {
			for i := range 100 {
				j.StallSample(map[string]bool{"m2": i < 5}, 100*ms)
			}
		}, "", ""},
		{"stalls everywhere are not an outlier", func(j *Ejector) {
			for i := range 150 {
				j.StallSample(map[string]bool{"m1": i%10 < 4, "m2": i%10 < 3, "m3": i%10 < 3}, 100*ms)
			}
		}, "", ""},
		{"slow everywhere is not an outlier", func(j *Ejector) {
			for _, m := range members3 {
				replies(j, m, 20, jute.ErrOK, 300*ms)
			}
		}, "", ""},
		{"a member whose sessions stall together: slow on the figure that counts its stalls", func(j *Ejector) {
			// it answers its quick requests, and three sessions' requests stall past slow_call
			replies(j, "m1", 30, jute.ErrOK, 3*ms)
			replies(j, "m2", 30, jute.ErrOK, 3*ms)
			replies(j, "m3", 30, jute.ErrOK, 4*ms)
			for i := range 15 {
				j.Stalled("m3", int64(i%3)<<40|1, 900*ms)
			}
		}, "m3", "more than 5.0× the peers' median"},
		{"one session's slow replies are not an outlier", func(j *Ejector) {
			replies(j, "m1", 20, jute.ErrOK, 2*ms)
			replies(j, "m2", 20, jute.ErrOK, 3*ms)
			for range 700 {
				j.Reply("m3", 0x7700000001, jute.ErrOK, 300*ms)
			}
		}, "", ""},
		{"latency under the floor never ejects", func(j *Ejector) {
			replies(j, "m1", 20, jute.ErrOK, ms/10)
			replies(j, "m2", 20, jute.ErrOK, ms/10)
			replies(j, "m3", 20, jute.ErrOK, 50*ms)
		}, "", ""},
		{"too few requests to judge", func(j *Ejector) {
			replies(j, "m3", 9, jute.ErrConnectionLoss, ms)
		}, "", ""},
		{"unknown members are ignored", func(j *Ejector) {
			replies(j, "elsewhere", 100, jute.ErrConnectionLoss, ms)
			j.ConnectFailed("elsewhere")
		}, "", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			j, logs := testEjector(members3)
			c.record(j)
			changes := j.Evaluate(t0)
			if c.want == "" {
				if len(changes) != 0 {
					t.Fatalf("ejected %+v", changes)
				}
				return
			}
			if len(changes) != 1 || changes[0].Member != c.want || !changes[0].Ejected || !strings.Contains(changes[0].Reason, c.reason) {
				t.Fatalf("changes %+v, want %s ejected for %q", changes, c.want, c.reason)
			}
			if !j.Excluded()[c.want] || len(j.Excluded()) != 1 {
				t.Fatalf("excluded %v", j.Excluded())
			}
			if !strings.Contains(logs.String(), `"member":"`+c.want+`"`) || !strings.Contains(logs.String(), "member ejected") {
				t.Fatalf("no log line:\n%s", logs)
			}
		})
	}
}

// The ejection time doubles with each repeat up to max_time, and a member returns once
// it is over (and health agrees).
func TestEjectionTimeGrowsAndReturns(t *testing.T) {
	j, _ := testEjector(members3)
	cfg := DefaultEjectionConfig()
	now := time.Unix(1000, 0)
	var times []time.Duration
	for range 6 {
		for range 3 {
			j.ConnectFailed("m1")
		}
		ch := j.Evaluate(now)
		if len(ch) != 1 || !ch[0].Ejected {
			t.Fatalf("at %v: %+v", now, ch)
		}
		times = append(times, ch[0].Until.Sub(now))
		if ch := j.Evaluate(ch[0].Until.Add(-time.Millisecond)); len(ch) != 0 {
			t.Fatalf("returned early: %+v", ch)
		}
		now = ch[0].Until
		if ch := j.Evaluate(now); len(ch) != 1 || ch[0].Ejected || j.Excluded()["m1"] {
			t.Fatalf("did not return at the end of its time: %+v", ch)
		}
	}
	want := []time.Duration{5, 10, 20, 40, 60, 60}
	for i := range want {
		if times[i] != want[i]*time.Second {
			t.Fatalf("ejection times %v, want %v s", times, want)
		}
	}
	// After max_time in rotation the count resets.
	now = now.Add(cfg.MaxTime)
	j.Evaluate(now)
	for range 3 {
		j.ConnectFailed("m1")
	}
	if ch := j.Evaluate(now); len(ch) != 1 || ch[0].Until.Sub(now) != cfg.BaseTime {
		t.Fatalf("after a quiet spell: %+v", ch)
	}
}

func TestEjectionHealthAndCap(t *testing.T) {
	j, logs := testEjector([]string{"m1", "m2", "m3", "m4", "m5"})
	now := time.Unix(1000, 0)
	// Health down ejects at once.
	if ch := j.ObserveHealth("m1", true, "srvr timed out", now); len(ch) != 1 || ch[0].Reason != "health: srvr timed out" {
		t.Fatalf("health down: %+v", ch)
	}
	// A second bad member can go (2 of 5 out leaves a majority)...
	for range 3 {
		j.ConnectFailed("m2")
	}
	if ch := j.Evaluate(now); len(ch) != 1 || ch[0].Member != "m2" {
		t.Fatalf("second ejection: %+v", ch)
	}
	// ...a third cannot.
	for range 3 {
		j.ConnectFailed("m3")
	}
	if ch := j.Evaluate(now); len(ch) != 0 {
		t.Fatalf("ejected a majority: %+v", ch)
	}
	if !strings.Contains(logs.String(), "not ejecting member") {
		t.Fatalf("cap not logged:\n%s", logs)
	}
	// A member health still reports down does not return when its time is over.
	later := now.Add(time.Minute)
	for _, c := range j.Evaluate(later) {
		if c.Member == "m1" {
			t.Fatalf("m1 returned while down: %+v", c)
		}
	}
	j.ObserveHealth("m1", false, "", later)
	if ch := j.Evaluate(later); len(ch) != 1 || ch[0].Member != "m1" || ch[0].Ejected {
		t.Fatalf("m1 back: %+v", ch)
	}
}

func BenchmarkEjectorReply(b *testing.B) {
	j, _ := testEjector(members3)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			j.Reply("m2", 0x77, jute.ErrOK, time.Millisecond)
		}
	})
}

// A member that answers none of its sessions while they wait, when its peers answer
// theirs, is frozen: it is ejected from the data path's evidence, before health's probes
// time out. Silence everywhere (a starved machine, an election) ejects nothing, nor does
// a silence shorter than the slow-call threshold.
func TestEjectSilentMember(t *testing.T) {
	t0 := time.Unix(1000, 0)
	ms := time.Millisecond
	for _, c := range []struct {
		name    string
		m1      time.Duration   // when m1 (the one waited on) last answered, from t0
		m2      []time.Duration // when its peer m2 answered, from t0
		at      time.Duration
		ejected bool
	}{
		{"frozen, peers answer", 0, []time.Duration{-200 * ms, 0, 200 * ms, 400 * ms, 700 * ms}, 800 * ms, true},
		{"silent everywhere", 0, []time.Duration{0}, 800 * ms, false},
		{"peers answered before it went silent", 100 * ms, []time.Duration{50 * ms}, 900 * ms, false},
		{"silent for less than slow_call", 400 * ms, []time.Duration{300 * ms, 700 * ms}, 800 * ms, false},
		// Every member frozen at once (a stalled machine): the peer resumes a few ms first.
		{"every member silent, a peer back first", 0, []time.Duration{-200 * ms, 0, 1500 * ms}, 1510 * ms, false},
		{"the peer answered during its silence but is silent now too", 0, []time.Duration{-200 * ms, 0, 200 * ms, 400 * ms}, 1000 * ms, false},
	} {
		j, _ := testEjector(members3)
		j.Answered("m1", t0.Add(-300*ms))
		j.Answered("m1", t0.Add(c.m1))
		for _, at := range c.m2 {
			j.Answered("m2", t0.Add(at))
		}
		changes := j.Silent("m1", 3, 500*ms, t0.Add(c.at))
		if got := len(changes) == 1 && changes[0].Ejected; got != c.ejected {
			t.Errorf("%s: %+v, want ejected %v", c.name, changes, c.ejected)
		}
		if c.ejected && !strings.Contains(changes[0].Reason, "answered none of its sessions for 800ms while 3 waited") {
			t.Errorf("%s: reason %q", c.name, changes[0].Reason)
		}
	}
}
