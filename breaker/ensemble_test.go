package breaker

import (
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/zkgate/zkgate/jute"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestClassify(t *testing.T) {
	slow := 500 * time.Millisecond
	for _, c := range []struct {
		code    jute.ErrCode
		latency time.Duration
		lost    bool
		want    Outcome
	}{
		{jute.ErrOK, time.Millisecond, false, Success},
		{jute.ErrNoNode, time.Millisecond, false, Success},
		{jute.ErrNodeExists, time.Millisecond, false, Success},
		{jute.ErrBadVersion, time.Millisecond, false, Success},
		{jute.ErrNoAuth, time.Millisecond, false, Success},
		{jute.ErrSessionExpired, time.Millisecond, false, Success},
		{jute.ErrConnectionLoss, time.Millisecond, false, Failed},
		{jute.ErrOperationTimeout, time.Millisecond, false, Failed},
		{jute.ErrSystemError, time.Millisecond, false, Failed},
		{jute.ErrThrottledOp, time.Millisecond, false, Failed},
		{jute.ErrOK, slow, false, Success},
		{jute.ErrOK, slow + 1, false, Slow},
		{jute.ErrNoNode, time.Second, false, Slow},
		{jute.ErrOK, 0, true, Failed},
	} {
		if got := Classify(c.code, c.latency, slow, c.lost); got != c.want {
			t.Errorf("Classify(%v, %v, lost=%v) = %v, want %v", c.code, c.latency, c.lost, got, c.want)
		}
	}
}

func testConfig() Config {
	c := DefaultConfig()
	c.OpenFor = 30 * time.Millisecond
	c.HalfOpenAdmission = 10
	return c
}

func newTestEnsemble(t *testing.T, cfg Config) (*Ensemble, *strings.Builder) {
	var logs strings.Builder
	return NewEnsemble("test", cfg, zerolog.New(&logs)), &logs
}

// feed sends n requests with one outcome through the breaker as the relay would.
func feed(e *Ensemble, n int, code jute.ErrCode, latency time.Duration) (refused int) {
	for range n {
		held, ok := e.Acquire()
		if !ok {
			refused++
			continue
		}
		if held {
			e.Release(code, latency, false)
		}
	}
	return refused
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type step struct {
	n       int
	code    jute.ErrCode
	latency time.Duration
}

func TestEnsembleTrips(t *testing.T) {
	ms := time.Millisecond
	for _, c := range []struct {
		name  string
		steps []step
		want  State
	}{
		{"application errors at 100% never open it", []step{{500, jute.ErrNoNode, ms}, {500, jute.ErrNodeExists, ms}, {500, jute.ErrBadVersion, ms}}, Closed},
		{"system errors over the ratio open it", []step{{10, jute.ErrOK, ms}, {10, jute.ErrConnectionLoss, ms}}, Open},
		{"under min_requests nothing happens", []step{{19, jute.ErrConnectionLoss, ms}}, Closed},
		{"under the ratio nothing happens", []step{{60, jute.ErrOK, ms}, {40, jute.ErrSystemError, ms}}, Closed},
		{"slow calls count as failures", []step{{5, jute.ErrOK, ms}, {20, jute.ErrOK, 600 * ms}}, Open},
	} {
		t.Run(c.name, func(t *testing.T) {
			e, logs := newTestEnsemble(t, DefaultConfig())
			for _, s := range c.steps {
				feed(e, s.n, s.code, s.latency)
			}
			if got := e.State(); got != c.want {
				t.Fatalf("state %v, want %v; log:\n%s", got, c.want, logs)
			}
			if e.Held() != 0 {
				t.Fatalf("%d permits held", e.Held())
			}
			if c.want == Open {
				if h := e.History(); len(h) != 1 || h[0].To != Open || !strings.Contains(h[0].Reason, "failure ratio") {
					t.Fatalf("history %+v", h)
				}
				if !strings.Contains(logs.String(), `"from":"closed","to":"open"`) {
					t.Fatalf("no transition log line:\n%s", logs)
				}
				if _, ok := e.Acquire(); ok {
					t.Fatal("open breaker let a request through")
				}
				if e.AdmitSession(false) {
					t.Fatal("open breaker admitted a new session")
				}
				if !e.AdmitSession(true) {
					t.Fatal("open breaker with health refused a reconnecting session: it would expire")
				}
			}
		})
	}
}

func TestEnsembleHalfOpenCloses(t *testing.T) {
	e, logs := newTestEnsemble(t, testConfig())
	feed(e, 20, jute.ErrConnectionLoss, time.Millisecond)
	if e.State() != Open {
		t.Fatal("not open")
	}
	eventually(t, "half-open after open_for", func() bool { e.Refresh(); return e.State() == HalfOpen })
	// Half-open lets half_open_probes requests through at once, and refuses the rest.
	for i := range 5 {
		if held, ok := e.Acquire(); !ok || !held {
			t.Fatalf("probe %d refused", i)
		}
	}
	if _, ok := e.Acquire(); ok {
		t.Fatal("a sixth concurrent probe was let through")
	}
	for range 5 {
		e.Release(jute.ErrOK, time.Millisecond, false)
	}
	if e.State() != Closed || e.Held() != 0 {
		t.Fatalf("state %v with %d held after 5 good probes; log:\n%s", e.State(), e.Held(), logs)
	}
	var path []string
	for _, tr := range e.History() {
		path = append(path, tr.To.String())
	}
	if strings.Join(path, ",") != "open,half-open,closed" {
		t.Fatalf("transitions %v", path)
	}
}

// Every permit is released even when the requests end badly, and the half-open breaker
// keeps probing: it never sticks with its permits gone.
func TestEnsembleHalfOpenNeverSticks(t *testing.T) {
	e, _ := newTestEnsemble(t, testConfig())
	feed(e, 20, jute.ErrConnectionLoss, time.Millisecond)
	for round := range 3 {
		eventually(t, "half-open", func() bool { e.Refresh(); return e.State() == HalfOpen })
		for range 5 {
			if _, ok := e.Acquire(); !ok {
				t.Fatalf("round %d: probe refused", round)
			}
		}
		// The member connection dies under all of them.
		for range 5 {
			e.Release(0, time.Millisecond, true)
		}
		if e.State() != Open || e.Held() != 0 {
			t.Fatalf("round %d: state %v, %d held", round, e.State(), e.Held())
		}
	}
	eventually(t, "half-open", func() bool { e.Refresh(); return e.State() == HalfOpen })
	// Clients that went away: their requests are released as what they were (fast).
	for range 5 {
		e.Acquire()
	}
	for range 5 {
		e.Release(0, time.Millisecond, false)
	}
	if e.State() != Closed {
		t.Fatalf("state %v after the probes ended", e.State())
	}
}

func TestEnsembleHealth(t *testing.T) {
	e, logs := newTestEnsemble(t, testConfig())
	e.ObserveHealth(false, "no quorum: 1 of 3 voters serving")
	if e.State() != Open {
		t.Fatal("health loss did not open the breaker")
	}
	if h := e.History(); len(h) != 1 || h[0].Reason != "health: no quorum: 1 of 3 voters serving" {
		t.Fatalf("history %+v", h)
	}
	// Held open while health is bad, however long the open time.
	time.Sleep(2 * testConfig().OpenFor) // lets open_for pass; the assertion is that nothing changes
	e.Refresh()
	if e.State() != Open || e.AdmitSession(false) || e.AdmitSession(true) {
		t.Fatalf("state %v: health is still bad, yet a session was admitted", e.State())
	}
	if !strings.Contains(e.Summary(), "held open by health") {
		t.Fatalf("summary %q", e.Summary())
	}
	e.ObserveHealth(true, "quorum")
	if e.State() != HalfOpen {
		t.Fatalf("state %v after health came back and open_for passed; log:\n%s", e.State(), logs)
	}
	// Half-open admits new sessions at half_open_admission per second (10 here).
	admitted := 0
	start := time.Now()
	for range 200 {
		if e.AdmitSession(false) {
			admitted++
		}
	}
	if limit := 2 + int(time.Since(start).Seconds()*10); admitted > limit {
		t.Fatalf("admitted %d sessions in a burst, limit %d", admitted, limit)
	}
	if admitted == 0 {
		t.Fatal("half-open admitted no session")
	}

	// Opened by health, it half-opens as soon as health is back, without waiting out
	// open_for: an election's second must not become open_for of rejects.
	slow := testConfig()
	slow.OpenFor = time.Hour
	e, logs = newTestEnsemble(t, slow)
	e.ObserveHealth(false, "no leader")
	e.ObserveHealth(true, "quorum")
	if e.State() != HalfOpen {
		t.Fatalf("state %v right after health came back; log:\n%s", e.State(), logs)
	}
	if h := e.History(); len(h) != 2 || !strings.Contains(h[1].Reason, "health is back") {
		t.Fatalf("history %+v", h)
	}
	// Opened by the failure ratio, it stays open for open_for whatever health says.
	for range 2 * slow.MinRequests {
		if held, _ := e.Acquire(); held {
			e.Release(jute.ErrConnectionLoss, time.Millisecond, true)
		}
	}
	if e.State() != Open {
		t.Fatalf("state %v after failed half-open probes", e.State())
	}
	e.ObserveHealth(true, "quorum")
	e.Refresh()
	if e.State() != Open {
		t.Fatalf("state %v: a breaker opened by failures half-opened before open_for", e.State())
	}
}

func TestEnsembleDisabled(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Enabled = false
	e, _ := newTestEnsemble(t, cfg)
	e.ObserveHealth(false, "no quorum")
	if refused := feed(e, 100, jute.ErrConnectionLoss, time.Second); refused != 0 || e.State() != Closed || !e.AdmitSession(false) {
		t.Fatalf("disabled breaker refused %d, state %v", refused, e.State())
	}
}

func TestRejectCode(t *testing.T) {
	for in, want := range map[string]jute.ErrCode{"operation_timeout": -7, "throttled": -127, "-8": -8, " THROTTLED ": -127} {
		got, err := ParseRejectCode(in)
		if err != nil || jute.ErrCode(got) != want {
			t.Errorf("%q: %v, %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "0", "5", "nope"} {
		if _, err := ParseRejectCode(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func BenchmarkRecord(b *testing.B) {
	e := NewEnsemble("bench", DefaultConfig(), zerolog.Nop())
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if held, ok := e.Acquire(); ok && held {
				e.Release(jute.ErrOK, time.Millisecond, false)
			}
		}
	})
}

// A reload's new settings apply at once, in the state the breaker was in, and are not
// a transition.
func TestEnsembleReconfigure(t *testing.T) {
	ms := time.Millisecond
	e, logs := newTestEnsemble(t, DefaultConfig())
	feed(e, 5, jute.ErrConnectionLoss, ms)
	if e.State() != Closed {
		t.Fatal("5 failures under min_requests 20 opened it")
	}
	cfg := DefaultConfig()
	cfg.MinRequests = 4
	e.Reconfigure(cfg)
	if e.Config().MinRequests != 4 || e.State() != Closed || len(e.History()) != 0 {
		t.Fatalf("after reconfigure: %+v, %v, history %v", e.Config(), e.State(), e.History())
	}
	feed(e, 4, jute.ErrConnectionLoss, ms)
	if e.State() != Open {
		t.Fatalf("4 failures with min_requests 4: %v\n%s", e.State(), logs)
	}
	cfg.OpenFor = time.Hour
	e.Reconfigure(cfg)
	if e.State() != Open || len(e.History()) != 1 {
		t.Fatalf("reconfigured while open: %v, history %+v", e.State(), e.History())
	}
	if _, ok := e.Acquire(); ok {
		t.Fatal("reconfigured open breaker let a request through")
	}
	if !strings.Contains(logs.String(), "ensemble breaker reconfigured") {
		t.Fatalf("no log line for the reconfiguration:\n%s", logs)
	}
}
