//go:build linux

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/zkgate/zkgate/internal/zktest"
	"github.com/zkgate/zkgate/jute"
)

// The healthy-but-heavy scenarios: load that a healthy ensemble carries (bursts, big
// values, big replies, a slow reader, GC pauses, snapshots, a busy machine). Each runs
// twice on a fresh ensemble of its own, straight at the members and then through one
// zkgate, with the same load. zkgate must trip nothing (no ejection, no breaker
// transition, no session move, no refused session) and fail no operation that did not
// fail directly.

// heavyScenario is one load. prepare runs straight at the members and is not measured;
// load is, against h.target().
type heavyScenario struct {
	name, desc string
	cheap      bool                     // one of the two that -short runs
	ensemble   func(cfg *zktest.Config) // changes to the ensemble, both sides alike
	prepare    func(ctx context.Context, h *heavyRun) error
	load       func(ctx context.Context, h *heavyRun) error
}

// heavyMaxBuffer is the members' jute.maxbuffer in every heavy scenario, on both sides,
// and zkgate's max_frame is the same plus jute.FrameSlack: the 100,000 children's names
// are a reply of about 2.8 MB.
const heavyMaxBuffer = 16 << 20

// heavyLoadLimit bounds one side's load: past it the load's sessions are closed and what
// was still waiting counts as failed.
const heavyLoadLimit = 3 * time.Minute

func heavyScenarios() []heavyScenario {
	return []heavyScenario{
		{name: "heavy-cold-burst", desc: "one session pipelines 10,000 async creates right after the ensemble starts (cold JVMs)",
			prepare: prepareRoot, load: loadColdBurst},
		{name: "heavy-many-bursts", desc: "64 sessions × 500 async creates, at once",
			prepare: prepareRoot, load: loadManyBursts},
		{name: "heavy-big-values", desc: "one session pipelines 50 setData of 1,000,000 bytes",
			prepare: prepareRoot, load: loadBigValues},
		{name: "heavy-wide-children", desc: "4 sessions × 5 getChildren of a znode with 100,000 children (replies of 2.8 MB), at once",
			prepare: prepareWide, load: loadWide},
		{name: "heavy-multi", desc: "one session pipelines 10 multis of 1,000 creates each", cheap: true,
			prepare: prepareRoot, load: loadMulti},
		{name: "heavy-slow-reader", desc: "a raw session pipelines 500 getData of a 64 KiB znode, reads nothing for 3 s, then reads", cheap: true,
			prepare: prepareSlowReader, load: loadSlowReader},
		{name: "heavy-gc-pause", desc: "SIGSTOP the follower with the most sessions for 150 ms once a second for 20 s, 16 sessions working",
			prepare: prepareSteady, load: loadGCPause},
		{name: "heavy-snapshots", desc: "snapCount=100 on every member, 5,000 znodes of 1 KiB, 16 sessions writing for 20 s",
			ensemble: func(cfg *zktest.Config) { cfg.Extra["snapCount"] = "100" },
			prepare:  prepareSnapshots, load: loadSnapshots},
		{name: "heavy-busy-machine", desc: "2 CPU hogs per core for 20 s, 16 sessions working",
			prepare: prepareSteady, load: loadBusyMachine},
	}
}

// heavyRun is one side of a heavy scenario: its ensemble, zkgate (nil when direct) and the
// operations its load did.
type heavyRun struct {
	sc    heavyScenario
	dir   string
	ens   *zktest.Ensemble
	gate  *gate
	admin *zk.Conn // straight to the members
	log   func(format string, args ...any)

	mu     sync.Mutex
	ops    int
	failed map[string]string // operation key → its error
	conns  []*zk.Conn
}

// side is what one side saw.
type side struct {
	ops    int
	failed map[string]string

	// zkgate's figures over the load and the settle time after it (zero when direct).
	ejections, transitions, moves, refused int
	slowCalls                              int      // requests past the slow-call threshold: not a trip, what the detectors saw
	reasons                                []string // why zkgate ejected, opened, moved or refused, from its log
}

// heavyResult is one heavy scenario, both sides.
type heavyResult struct {
	name, desc     string
	direct, gate   side
	beyond         int      // operations that failed through zkgate and not directly
	beyondExamples []string // a few of them
	problems       []string
}

func (res *heavyResult) ok() bool { return len(res.problems) == 0 }

func (res *heavyResult) fail(format string, args ...any) {
	res.problems = append(res.problems, fmt.Sprintf(format, args...))
}

// target is where the load's clients connect.
func (h *heavyRun) target() []string {
	if h.gate != nil {
		return []string{h.gate.listen}
	}
	return h.ens.Addrs()
}

// record counts one operation of the load; key names it the same way on both sides.
func (h *heavyRun) record(key string, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ops++
	if err != nil {
		h.failed[key] = err.Error()
	}
}

// dial opens n sessions to the target; each is closed with the run.
func (h *heavyRun) dial(ctx context.Context, n int) ([]*zk.Conn, error) {
	var out []*zk.Conn
	for i := 0; i < n; i++ {
		conn, _, err := zk.Connect(h.target(), sessionTimeout, zk.WithLogger(quiet{}))
		if err != nil {
			return nil, err
		}
		h.mu.Lock()
		h.conns = append(h.conns, conn)
		h.mu.Unlock()
		out = append(out, conn)
	}
	for i, conn := range out {
		if err := waitUntil(ctx, 30*time.Second, fmt.Sprintf("session %d of %d", i+1, n), func() bool {
			return conn.State() == zk.StateHasSession
		}); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// wait waits for the load's goroutines, at most until the load's limit; then it closes
// every session, which ends whatever they still wait for with an error.
func (h *heavyRun) wait(ctx context.Context, wg *sync.WaitGroup, deadline time.Time) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return
	case <-ctx.Done():
	case <-time.After(time.Until(deadline)):
	}
	h.log("  %s: the load is still waiting at its limit; closing its sessions", h.sc.name)
	h.closeConns()
	<-done
}

func (h *heavyRun) closeConns() {
	h.mu.Lock()
	conns := h.conns
	h.conns = nil
	h.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

// runHeavy runs one heavy scenario on both sides and compares them.
func runHeavy(ctx context.Context, sc heavyScenario, dir string, bin zkgateBin, logf func(string, ...any)) (*heavyResult, error) {
	res := &heavyResult{name: sc.name, desc: sc.desc}
	var err error
	logf("%s: direct: %s", sc.name, sc.desc)
	if res.direct, err = runHeavySide(ctx, sc, filepath.Join(dir, "direct"), zkgateBin{}, logf); err != nil {
		return nil, fmt.Errorf("%s direct: %w", sc.name, err)
	}
	logf("%s: through zkgate", sc.name)
	if res.gate, err = runHeavySide(ctx, sc, filepath.Join(dir, "zkgate"), bin, logf); err != nil {
		return nil, fmt.Errorf("%s through zkgate: %w", sc.name, err)
	}
	for key, e := range res.gate.failed {
		if _, also := res.direct.failed[key]; !also {
			res.beyond++
			if len(res.beyondExamples) < 3 {
				res.beyondExamples = append(res.beyondExamples, key+": "+e)
			}
		}
	}
	slices.Sort(res.beyondExamples)
	g := res.gate
	if g.ejections > 0 {
		res.fail("%d ejections", g.ejections)
	}
	if g.transitions > 0 {
		res.fail("%d breaker transitions", g.transitions)
	}
	if g.moves > 0 {
		res.fail("%d session moves", g.moves)
	}
	if g.refused > 0 {
		res.fail("%d refused sessions", g.refused)
	}
	if res.beyond > 0 {
		res.fail("%d operations failed through zkgate and not directly (%s)", res.beyond, strings.Join(res.beyondExamples, "; "))
	}
	if len(g.reasons) > 0 && !res.ok() {
		res.fail("zkgate's log: %s", strings.Join(g.reasons, "; "))
	}
	return res, nil
}

// runHeavySide starts a fresh ensemble (and zkgate in front when bin.path is set), prepares it
// straight at the members, runs the load against the target and reads zkgate's figures.
func runHeavySide(ctx context.Context, sc heavyScenario, dir string, bin zkgateBin, logf func(string, ...any)) (side, error) {
	if err := mkdir(dir); err != nil {
		return side{}, err
	}
	cfg := ensembleConfig(filepath.Join(dir, "ensemble"))
	cfg.JVMFlags = append(cfg.JVMFlags, "-Xmx1g", fmt.Sprintf("-Djute.maxbuffer=%d", heavyMaxBuffer))
	if sc.ensemble != nil {
		sc.ensemble(&cfg)
	}
	ens, err := zktest.New(cfg)
	if err != nil {
		return side{}, err
	}
	defer ens.Close()
	h := &heavyRun{sc: sc, dir: dir, ens: ens, log: logf, failed: map[string]string{}}
	defer h.closeConns()
	if bin.path != "" {
		conf, err := heavyGateConfig(dir, ens.Addrs())
		if err != nil {
			return side{}, err
		}
		if h.gate, err = startGate(ctx, bin, dir, 1, ens.Addrs(), append([]string{"--config", conf}, gateArgs...)...); err != nil {
			return side{}, err
		}
		defer h.gate.stop()
	}
	if h.admin, _, err = zk.Connect(ens.Addrs(), sessionTimeout, zk.WithLogger(quiet{})); err != nil {
		return side{}, err
	}
	defer h.admin.Close()
	if err := waitUntil(ctx, 30*time.Second, "the admin session", func() bool { return h.admin.State() == zk.StateHasSession }); err != nil {
		return side{}, err
	}
	if sc.prepare != nil {
		if err := sc.prepare(ctx, h); err != nil {
			return side{}, fmt.Errorf("prepare: %w", err)
		}
	}
	var before gateFigures
	if h.gate != nil {
		if before, err = h.gate.figures(0); err != nil {
			return side{}, err
		}
	}
	began := time.Now()
	if err := sc.load(ctx, h); err != nil {
		return side{}, fmt.Errorf("load: %w\n%s", err, ens.Logs(20))
	}
	h.closeConns()
	h.mu.Lock()
	s := side{ops: h.ops, failed: h.failed}
	h.mu.Unlock()
	logf("  %s: %d operations, %d failed, in %v", sc.name, s.ops, len(s.failed), time.Since(began).Round(100*time.Millisecond))
	if h.gate != nil {
		// Detectors act on windows and intervals: a trip that the load set off shows a
		// little after it.
		if err := sleepCtx(ctx, 3*time.Second); err != nil {
			return side{}, err
		}
		after, err := h.gate.figures(before.logSize)
		if err != nil {
			return side{}, err
		}
		s.ejections = after.ejections - before.ejections
		s.transitions = after.transitions - before.transitions
		s.moves = after.moves - before.moves
		s.refused = after.refused - before.refused
		s.slowCalls = after.slowCalls - before.slowCalls
		s.reasons = after.reasons
	}
	return s, nil
}

// heavyGateConfig writes zkgate's configuration file for the heavy scenarios: the
// defaults, but frames as large as the members' jute.maxbuffer allows. The flags
// startGate gives (listen, admin, members, name) override the file's.
func heavyGateConfig(dir string, members []string) (string, error) {
	path := filepath.Join(dir, "zkgate.yaml")
	text := fmt.Sprintf("ensembles:\n  - name: rel\n    members: [%s]\n    limits:\n      max_frame: %d\n",
		strings.Join(members, ", "), heavyMaxBuffer+jute.FrameSlack)
	return path, os.WriteFile(path, []byte(text), 0o644)
}

// pickHeavy selects heavy scenarios: "heavy" is all of them, "cheap" the two -short runs.
func pickHeavy(names string) []heavyScenario {
	var out []heavyScenario
	for _, s := range heavyScenarios() {
		for _, n := range strings.Split(names, ",") {
			if n == "all" || n == "heavy" || n == s.name || (n == "cheap" && s.cheap) {
				out = append(out, s)
				break
			}
		}
	}
	return out
}

func heavyNames() []string {
	var out []string
	for _, s := range heavyScenarios() {
		out = append(out, s.name)
	}
	return out
}

var errHeavyDirect = errors.New("heavy scenarios run both sides themselves; -direct does not apply to them")

// gateFigures are zkgate's trip counters at one moment, and what its log said since an
// offset.
type gateFigures struct {
	ejections, transitions, moves, refused, slowCalls int
	logSize                                           int
	reasons                                           []string
}

// figures reads the counters from /metrics (ejections from the log, which has one line
// each) and the reasons zkgate logged past offset from of its log.
func (g *gate) figures(from int) (gateFigures, error) {
	var f gateFigures
	for _, m := range []struct {
		name string
		to   *int
	}{
		{"zkgate_breaker_transitions_total", &f.transitions},
		{"zkgate_session_moves_total", &f.moves},
		{"zkgate_refused_connections_total", &f.refused},
		{"zkgate_stalled_requests_total", &f.slowCalls},
	} {
		v, err := g.metric(m.name)
		if err != nil {
			return f, err
		}
		*m.to = int(v)
	}
	b, err := os.ReadFile(g.log)
	if err != nil {
		return f, err
	}
	f.logSize = len(b)
	f.ejections = strings.Count(string(b), `"message":"member ejected"`)
	f.reasons = tripReasons(b[min(from, len(b)):], 4)
	return f, nil
}

// tripReasons picks, from zkgate's JSON log, the distinct events that say why it ejected,
// opened, moved or refused: warnings and errors, and the breaker's and the mover's own
// lines; at most n.
func tripReasons(log []byte, n int) []string {
	var out []string
	for _, line := range strings.Split(string(log), "\n") {
		var ev map[string]any
		if json.Unmarshal([]byte(line), &ev) != nil {
			continue
		}
		msg, _ := ev["message"].(string)
		level, _ := ev["level"].(string)
		if level != "warn" && level != "error" && !strings.HasPrefix(msg, "ensemble breaker") &&
			!strings.HasPrefix(msg, "moving sessions") {
			continue
		}
		why := msg
		for _, k := range []string{"member", "to", "reason", "health", "status", "error"} {
			if v, ok := ev[k]; ok && v != "" {
				why += fmt.Sprintf(" %s=%v", k, v)
			}
		}
		if !slices.Contains(out, why) {
			out = append(out, why)
		}
		if len(out) == n {
			break
		}
	}
	return out
}
