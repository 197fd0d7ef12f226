package proxy_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/zkgate/zkgate/breaker"
	"github.com/zkgate/zkgate/health"
	"github.com/zkgate/zkgate/internal/zktest"
	"github.com/zkgate/zkgate/jute"
	"github.com/zkgate/zkgate/proxy"
)

// Session fidelity (issue 23), end to end: what a user of a real client library checks
// through zkgate, beside what the same client sees straight at the members.

// stateLog counts the session states a go-zookeeper client reported, through its event
// callback (its event channel drops events when nobody reads it).
type stateLog struct {
	mu     sync.Mutex
	states []zk.State
}

func (s *stateLog) add(e zk.Event) {
	if e.Type != zk.EventSession {
		return
	}
	s.mu.Lock()
	s.states = append(s.states, e.State)
	s.mu.Unlock()
}

// since counts the states in want seen after the first from states.
func (s *stateLog) since(from int, want ...zk.State) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, st := range s.states[min(from, len(s.states)):] {
		for _, w := range want {
			if st == w {
				n++
			}
		}
	}
	return n
}

func (s *stateLog) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.states)
}

// writeCounter counts the frames a go-zookeeper client wrote (it writes each request
// with one Write), over all its connections, so that a test can act once its requests
// are on the wire.
type writeCounter struct {
	mu      sync.Mutex
	writes  int
	target  int
	reached chan struct{}
}

func (w *writeCounter) dialer(network, addr string, timeout time.Duration) (net.Conn, error) {
	c, err := net.DialTimeout(network, addr, timeout)
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, w: w}, nil
}

// after returns a channel closed once k more frames have been written.
func (w *writeCounter) after(k int) <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.target, w.reached = w.writes+k, make(chan struct{})
	return w.reached
}

type countingConn struct {
	net.Conn
	w *writeCounter
}

func (c *countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	w := c.w
	w.mu.Lock()
	w.writes++
	if w.reached != nil && w.writes >= w.target {
		close(w.reached)
		w.reached = nil
	}
	w.mu.Unlock()
	return n, err
}

// dialCounted opens a go-zookeeper session on servers and waits for it; states counts
// its session events from then on (log.len() at return is the mark).
// dial, when not nil, makes its connections.
func dialCounted(t *testing.T, servers []string, dial zk.Dialer) (*zk.Conn, *stateLog, int) {
	t.Helper()
	log := &stateLog{}
	if dial == nil {
		dial = net.DialTimeout
	}
	c, _, err := zk.Connect(servers, 4*time.Second, zk.WithLogger(quietLogger{t}), zk.WithEventCallback(log.add), zk.WithDialer(dial))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	zktest.WaitFor(t, 15*time.Second, "a go-zookeeper session", func() bool { return c.State() == zk.StateHasSession })
	return c, log, log.len()
}

var openACL = zk.WorldACL(zk.PermAll)

// 1. go-zookeeper sends AddAuth with an ordinary xid, and the server answers it ahead of
// the creates still in its pipeline. One session calls AddAuth while 64 creates are in
// flight, 50 rounds: through zkgate as straight at a member, no disconnect and no failed
// operation.
func TestFidelityAddAuthWithRequestsInFlight(t *testing.T) {
	ens := zktest.Require(t, shared)
	g := startGate(t, ens, proxy.Config{})
	direct := ens.Followers()[0].ClientAddr
	type result struct{ disconnects, failed, ops int }
	run := func(t *testing.T, addr string) result {
		wc := &writeCounter{}
		c, states, mark := dialCounted(t, []string{addr}, wc.dialer)
		root := fmt.Sprintf("/fid-auth-%d", time.Now().UnixNano())
		if _, err := c.Create(root, nil, 0, openACL); err != nil {
			t.Fatal(err)
		}
		const rounds, inFlight = 50, 64
		var failed atomic.Int64
		var firstErr atomic.Value
		fail := func(err error) {
			failed.Add(1)
			firstErr.CompareAndSwap(nil, err.Error())
		}
		start := time.Now()
		for range rounds {
			var done sync.WaitGroup
			done.Add(inFlight)
			// AddAuth goes out in the middle of the burst: half the creates are on the
			// wire, in the member's pipeline, when the auth packet overtakes them.
			sent := wc.after(inFlight / 2)
			for range inFlight {
				go func() {
					defer done.Done()
					if _, err := c.Create(root+"/n-", nil, zk.FlagSequence, openACL); err != nil {
						fail(err)
					}
				}()
			}
			select {
			case <-sent:
			case <-time.After(10 * time.Second):
				t.Fatalf("%d creates not written within 10s", inFlight/2)
			}
			if err := c.AddAuth("digest", []byte("fidelity:secret")); err != nil {
				fail(err)
			}
			done.Wait()
		}
		took := time.Since(start)
		res := result{disconnects: states.since(mark, zk.StateDisconnected, zk.StateExpired), failed: int(failed.Load()),
			ops: rounds * (inFlight + 1)}
		if f := firstErr.Load(); f != nil {
			t.Logf("first failure: %v", f)
		}
		children, _, err := c.Children(root)
		if err != nil {
			t.Errorf("children of %s: %v", root, err)
		} else if res.failed == 0 && len(children) != rounds*inFlight {
			t.Errorf("%d nodes created, want %d", len(children), rounds*inFlight)
		}
		t.Logf("%s: %d rounds of AddAuth + %d creates in %v: %d disconnects, %d of %d operations failed",
			addr, rounds, inFlight, took.Round(time.Millisecond), res.disconnects, res.failed, res.ops)
		return res
	}
	var via, straight result
	t.Run("direct", func(t *testing.T) { straight = run(t, direct) })
	t.Run("zkgate", func(t *testing.T) { via = run(t, g.addr) })
	t.Logf("direct: %d disconnects, %d failed; through zkgate: %d disconnects, %d failed",
		straight.disconnects, straight.failed, via.disconnects, via.failed)
	if via.disconnects != 0 || via.failed != 0 {
		t.Errorf("through zkgate: %d disconnects and %d failed operations (direct: %d and %d)",
			via.disconnects, via.failed, straight.disconnects, straight.failed)
	}
	if strings.Contains(g.logs.String(), "does not match the request in flight") {
		t.Errorf("zkgate refused a reply as out of order:\n%s", grepLines(g.logs.String(), "does not match"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// fidelityGate is zkgate for the fault tests: a lost member is ejected, and back half a
// second after it serves again.
func fidelityGate(t *testing.T, ens *zktest.Ensemble, cfg proxy.Config, opts ...gateOption) *gate {
	if cfg.Policy == "" {
		cfg.Policy = proxy.LeastConnections // faultUnder faults a follower: sessions go there
	}
	opts = append([]gateOption{withEjection(func(c *breaker.EjectionConfig) {
		c.BaseTime, c.MaxTime = 500*time.Millisecond, 500*time.Millisecond
	})}, opts...)
	return startGate(t, ens, cfg, opts...)
}

// faultUnder kills (or pauses) the member zkgate has session sid on, a follower, and
// brings it back when the test ends, waiting until zkgate routes to it again. It returns
// the member.
func faultUnder(t *testing.T, ens *zktest.Ensemble, g *gate, sid int64, pause bool) *zktest.Member {
	t.Helper()
	victim := memberAt(t, ens, sessionMember(g, sid))
	if leader, err := ens.Leader(); err != nil || victim == leader {
		t.Fatalf("the session is on the leader %s (%v): the test wants a follower", victim.ClientAddr, err)
	}
	if pause {
		if err := victim.Pause(); err != nil {
			t.Fatal(err)
		}
	} else {
		victim.Kill()
	}
	t.Cleanup(func() { restore(t, ens, g, victim, pause) })
	return victim
}

func restore(t *testing.T, ens *zktest.Ensemble, g *gate, victim *zktest.Member, paused bool) {
	var err error
	if paused {
		err = victim.Resume()
	} else {
		err = victim.Start()
	}
	if err != nil {
		t.Error(err)
	}
	if err := ens.WaitReady(zktest.Ctx(t, 60*time.Second)); err != nil {
		t.Error(err)
	}
	if g != nil {
		zktest.WaitFor(t, 20*time.Second, "zkgate sees every member serving", func() bool {
			return len(proxy.Route(proxy.RouteInput{View: g.mon.View(), Policy: proxy.Any, Excluded: g.srv.Ejector().Excluded()})) == 3
		})
	}
}

func waitMoved(t *testing.T, g *gate, sid int64, from string) {
	t.Helper()
	zktest.WaitFor(t, 20*time.Second, "the session on another member", func() bool {
		m := sessionMember(g, sid)
		return m != "" && m != from
	})
}

func kazooPython(t *testing.T) string {
	t.Helper()
	python := os.Getenv("ZKGATE_PYTHON")
	if python == "" {
		python = "/usr/bin/python3"
	}
	requireTool(t, exec.Command(python, "-c", "import kazoo"))
	return python
}

func startFidelityScript(t *testing.T, args ...string) (*scripted, int64) {
	t.Helper()
	python := kazooPython(t)
	s := startScript(t, exec.Command(python, append([]string{filepath.Join("..", "testdata", "clients", "kazoo_fidelity.py")}, args...)...))
	sid, err := strconv.ParseUint(strings.TrimPrefix(s.expect(t, "SID", 10*time.Second), "0x"), 16, 64)
	if err != nil {
		t.Fatal(err)
	}
	return s, int64(sid)
}

// suspensions are the kazoo connection states that tell its user the session was cut off.
func suspensions(states string) []string {
	var out []string
	for _, s := range strings.Fields(states) {
		if s == "SUSPENDED" || s == "LOST" {
			out = append(out, s)
		}
	}
	return out
}

// 2. kazoo's exists(path, watch) on a node that exists is a data watch, as are get's; a
// child watch is get_children's. kill -9 of the member under the session: the session
// moves, no watcher fires (no CREATED for the existing node), and each fires exactly once,
// with the event of the change made after the move.
func TestFidelityKazooWatchesAcrossMove(t *testing.T) {
	ens := zktest.Start(t, zktest.Config{Members: 3})
	g := fidelityGate(t, ens, proxy.Config{})
	leader, err := ens.Leader()
	if err != nil {
		t.Fatal(err)
	}
	ctl, _ := connect(t, leader.ClientAddr)
	root := fmt.Sprintf("/fid-kazoo-watch-%d", time.Now().UnixNano())
	for _, p := range []string{root, root + "/e", root + "/d", root + "/c"} {
		if _, err := ctl.Create(p, []byte("a"), 0, openACL); err != nil {
			t.Fatal(err)
		}
	}
	s, sid := startFidelityScript(t, "watches", g.addr, root)
	from := sessionMember(g, sid)
	faultUnder(t, ens, g, sid, false)
	waitMoved(t, g, sid, from)
	g.waitLog(t, 10*time.Second, `"session moved"`, fmt.Sprintf("0x%x", sid))
	io.WriteString(s.stdin, "probe\n")
	if ev := s.expect(t, "EVENTS", 20*time.Second); ev != "none" {
		t.Errorf("watchers fired after the move with nothing changed: %s", ev)
	}
	if _, err := ctl.Set(root+"/e", []byte("b"), -1); err != nil {
		t.Fatal(err)
	}
	if _, err := ctl.Set(root+"/d", []byte("b"), -1); err != nil {
		t.Fatal(err)
	}
	if _, err := ctl.Create(root+"/c/x", nil, 0, openACL); err != nil {
		t.Fatal(err)
	}
	io.WriteString(s.stdin, "report\n")
	for _, c := range []struct{ line, want string }{
		{"EXISTS", "CHANGED"}, {"DATA", "CHANGED"}, {"CHILD", "CHILD"},
	} {
		if got := s.expect(t, c.line, 30*time.Second); got != c.want {
			t.Errorf("%s watcher saw %q, want exactly one %s", c.line, got, c.want)
		}
	}
	if got := s.expect(t, "SESSION", 10*time.Second); got != fmt.Sprintf("0x%x", sid) {
		t.Errorf("session %s after the move, was 0x%x", got, sid)
	}
	if st := s.expect(t, "STATES", 10*time.Second); len(suspensions(st)) > 0 {
		t.Errorf("kazoo saw %s", st)
	}
	s.expect(t, "DONE", 20*time.Second)
	if t.Failed() {
		t.Logf("client output:\n%s", s.out)
	}
}

// goWriters is a go-zookeeper session writing sequential nodes from n goroutines, each
// create retried after a connection loss until it succeeds.
type goWriters struct {
	c      *zk.Conn
	root   string
	stop   chan struct{}
	wg     sync.WaitGroup
	mu     sync.Mutex
	acked  []string
	losses map[string]int // failed attempts by error, each retried
	other  []string       // failures not retried: the test fails on any
	retry  int            // creates that succeeded on a retry
	count  atomic.Int64
}

// isConnLoss: what a go-zookeeper user retries. The library returns ErrConnectionClosed
// for a lost connection; it knows no reply error -4 (CONNECTIONLOSS) and returns that as
// "unknown error: -4", counted apart (gozkLossCode).
func isConnLoss(err error) bool {
	return errors.Is(err, zk.ErrConnectionClosed) || err.Error() == gozkLossCode
}

const gozkLossCode = "unknown error: -4"

func startGoWriters(c *zk.Conn, root string, n int) *goWriters {
	w := &goWriters{c: c, root: root, stop: make(chan struct{}), losses: map[string]int{}}
	w.wg.Add(n)
	for range n {
		go w.loop()
	}
	return w
}

func (w *goWriters) loop() {
	defer w.wg.Done()
	for {
		select {
		case <-w.stop:
			return
		default:
		}
		// A user's retry loop: a connection loss is retried after a short pause, for up
		// to 20 s (go-zookeeper answers ErrConnectionClosed at once while it reconnects,
		// so a loop without a pause used up its attempts in a loaded CI run).
		var giveUp time.Time
		for attempt := 0; ; attempt++ {
			p, err := w.c.Create(w.root+"/w-", nil, zk.FlagSequence, openACL)
			if err != nil && giveUp.IsZero() {
				giveUp = time.Now().Add(20 * time.Second)
			}
			retry := err != nil && isConnLoss(err) && time.Now().Before(giveUp)
			w.mu.Lock()
			switch {
			case err == nil:
				w.acked = append(w.acked, p)
				if attempt > 0 {
					w.retry++
				}
			case retry:
				w.losses[err.Error()]++
			default:
				w.other = append(w.other, err.Error())
			}
			w.mu.Unlock()
			if err == nil {
				w.count.Add(1)
				break
			}
			if !retry {
				return
			}
			select {
			case <-w.stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
}

func (w *goWriters) halt() {
	close(w.stop)
	w.wg.Wait()
}

// checkPresent fails the test unless every acknowledged node is in root.
func checkPresent(t *testing.T, ctl *zk.Conn, root string, acked []string) {
	t.Helper()
	// ctl is another session: ZooKeeper promises it a write acknowledged to the writers'
	// session only after a sync. Even on the leader a read can miss it: the leader sends
	// COMMIT to the followers before its own pipeline applies the write
	// (Leader.tryToCommit), and a follower may have answered the writer already. So:
	// sync, read, and read again for a while before counting a create as missing (a lost
	// create never shows up).
	var children []string
	missing := 0
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := ctl.Sync(root); err != nil {
			t.Fatal(err)
		}
		var err error
		if children, _, err = ctl.Children(root); err != nil {
			t.Fatal(err)
		}
		have := map[string]bool{}
		for _, c := range children {
			have[c] = true
		}
		missing = 0
		for _, p := range acked {
			if !have[path.Base(p)] {
				missing++
			}
		}
		if missing == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if missing > 0 {
		t.Errorf("%d of %d acknowledged creates are not in %s, after a sync and 10 s", missing, len(acked), root)
	}
	t.Logf("%d acknowledged creates, all checked against the %d nodes in %s", len(acked), len(children), root)
}

// 3. A writer creating sequential nodes from several goroutines; the follower under its
// session is killed with kill -9 mid-load. Every acknowledged create is there afterwards
// and the session is the same, on both drivers. With the default unsafe_in_flight (auto):
//   - kazoo (its ConnectRequest has the readOnly byte) sees no SUSPENDED: its writes in
//     flight raise ConnectionLoss and KazooRetry retries them;
//   - go-zookeeper (no readOnly byte) is closed, as straight at a member: its writes in
//     flight fail with zk.ErrConnectionClosed, it reconnects to its session and retries.
//
// With connection_loss go-zookeeper sees no disconnect, but reads the CONNECTIONLOSS
// replies as "unknown error: -4" (why auto closes it); close closes every client.
func TestFidelityWritersSeeNoDisconnect(t *testing.T) {
	ens := zktest.Start(t, zktest.Config{Members: 3})
	leader, err := ens.Leader()
	if err != nil {
		t.Fatal(err)
	}
	ctl, _ := connect(t, leader.ClientAddr)
	for _, driver := range []string{proxy.DriverEpoll, proxy.DriverGoroutines} {
		t.Run("kazoo/"+driver, func(t *testing.T) { kazooWritersAcrossKill(t, ens, ctl, driver) })
		t.Run("go-zookeeper/"+driver, func(t *testing.T) {
			goWritersAcrossKill(t, ens, ctl, proxy.Config{Driver: driver}, expectClose)
		})
	}
	t.Run("go-zookeeper/unsafe_in_flight=connection_loss", func(t *testing.T) {
		goWritersAcrossKill(t, ens, ctl, proxy.Config{UnsafeInFlight: proxy.UnsafeConnectionLoss}, expectLoss)
	})
	t.Run("go-zookeeper/unsafe_in_flight=close", func(t *testing.T) {
		goWritersAcrossKill(t, ens, ctl, proxy.Config{UnsafeInFlight: proxy.UnsafeClose}, expectClose)
	})
	t.Run("go-zookeeper/direct", func(t *testing.T) { goWritersAcrossKill(t, ens, ctl, proxy.Config{}, expectDirect) })
}

// What a writer's client sees at the kill.
type writerExpect int

const (
	expectLoss   writerExpect = iota // zkgate answers CONNECTIONLOSS and moves the session
	expectClose                      // zkgate closes the client, which reconnects to its session
	expectDirect                     // straight at the members: the client's own reconnect
)

func goWritersAcrossKill(t *testing.T, ens *zktest.Ensemble, ctl *zk.Conn, cfg proxy.Config, expect writerExpect) {
	var g *gate
	servers := []string{}
	if expect == expectDirect {
		for _, f := range ens.Followers() {
			servers = append(servers, f.ClientAddr)
		}
	} else {
		g = fidelityGate(t, ens, cfg)
		servers = []string{g.addr}
	}
	root := fmt.Sprintf("/fid-writers-%d", time.Now().UnixNano())
	if _, err := ctl.Create(root, nil, 0, openACL); err != nil {
		t.Fatal(err)
	}
	c, states, mark := dialCounted(t, servers, nil)
	sid := c.SessionID()
	w := startGoWriters(c, root, 8)
	stopped := false
	defer func() {
		if !stopped {
			w.halt()
		}
	}()
	zktest.WaitFor(t, 20*time.Second, "100 writes", func() bool { return w.count.Load() >= 100 })
	var victim *zktest.Member
	if expect == expectDirect {
		victim = memberAt(t, ens, c.Server())
		victim.Kill()
		t.Cleanup(func() { restore(t, ens, nil, victim, false) })
		zktest.WaitFor(t, 30*time.Second, "the client on another member", func() bool {
			return c.State() == zk.StateHasSession && c.Server() != victim.ClientAddr
		})
	} else {
		from := sessionMember(g, sid)
		victim = faultUnder(t, ens, g, sid, false)
		waitMoved(t, g, sid, from)
	}
	killedAt := w.count.Load()
	zktest.WaitFor(t, 30*time.Second, "200 writes after the fault", func() bool { return w.count.Load() >= killedAt+200 })
	w.halt()
	stopped = true

	disconnects := states.since(mark, zk.StateDisconnected, zk.StateExpired)
	w.mu.Lock()
	defer w.mu.Unlock()
	failed := 0
	for _, n := range w.losses {
		failed += n
	}
	t.Logf("killed %s after %d writes: %d acknowledged, %d attempts failed %v and were retried (%d creates succeeded on a retry), %d disconnects, session 0x%x -> 0x%x",
		victim.ClientAddr, killedAt, len(w.acked), failed, w.losses, w.retry, disconnects, sid, c.SessionID())
	if len(w.other) > 0 {
		t.Errorf("%d writes failed without a connection loss, or after 20 s of retries: %v", len(w.other), w.other[:min(5, len(w.other))])
	}
	if c.SessionID() != sid {
		t.Errorf("session 0x%x after the fault, was 0x%x", c.SessionID(), sid)
	}
	checkPresent(t, ctl, root, w.acked)
	if failed == 0 {
		t.Fatalf("the kill caught no write in flight (%d writes before it): nothing was tested", killedAt)
	}
	switch expect {
	case expectLoss:
		if disconnects != 0 {
			t.Errorf("the client saw %d disconnects (Disconnected/Expired)", disconnects)
		}
		g.waitLog(t, 10*time.Second, `"session moved"`, fmt.Sprintf("0x%x", sid), "CONNECTIONLOSS")
		t.Logf("go-zookeeper read %d CONNECTIONLOSS replies as %q", w.losses[gozkLossCode], gozkLossCode)
	case expectClose, expectDirect:
		if disconnects == 0 {
			t.Errorf("the client saw no disconnect")
		}
		if n := w.losses[gozkLossCode]; n > 0 {
			t.Errorf("%d writes failed with %q, want zk.ErrConnectionClosed as at any disconnect", n, gozkLossCode)
		}
		if expect == expectClose {
			g.waitLog(t, 10*time.Second, "session could not move", "was in flight", fmt.Sprintf("0x%x", sid))
		}
	}
}

func kazooWritersAcrossKill(t *testing.T, ens *zktest.Ensemble, ctl *zk.Conn, driver string) {
	g := fidelityGate(t, ens, proxy.Config{Driver: driver})
	root := fmt.Sprintf("/fid-kazoo-writers-%d", time.Now().UnixNano())
	if _, err := ctl.Create(root, nil, 0, openACL); err != nil {
		t.Fatal(err)
	}
	ackFile := filepath.Join(t.TempDir(), "acked")
	s, sid := startFidelityScript(t, "writer", g.addr, root, ackFile)
	count := func() int {
		_, st, err := ctl.Exists(root)
		if err != nil {
			t.Fatal(err)
		}
		return int(st.NumChildren)
	}
	zktest.WaitFor(t, 20*time.Second, "100 writes", func() bool { return count() >= 100 })
	from := sessionMember(g, sid)
	victim := faultUnder(t, ens, g, sid, false)
	waitMoved(t, g, sid, from)
	killedAt := count()
	zktest.WaitFor(t, 30*time.Second, "200 writes after the fault", func() bool { return count() >= killedAt+200 })
	io.WriteString(s.stdin, "stop\n")
	acked, _ := strconv.Atoi(s.expect(t, "ACKED", 60*time.Second))
	losses, _ := strconv.Atoi(s.expect(t, "LOSSES", 5*time.Second))
	if other := s.expect(t, "OTHER", 5*time.Second); other != "0" {
		t.Errorf("writes failed past KazooRetry: %s", other)
	}
	if got := s.expect(t, "SESSION", 5*time.Second); got != fmt.Sprintf("0x%x", sid) {
		t.Errorf("session %s after the fault, was 0x%x", got, sid)
	}
	states := s.expect(t, "STATES", 5*time.Second)
	s.expect(t, "DONE", 20*time.Second)
	t.Logf("kazoo: killed %s after ~%d writes: %d acknowledged, %d attempts got ConnectionLoss and were retried, states %q",
		victim.ClientAddr, killedAt, acked, losses, states)
	if sus := suspensions(states); len(sus) > 0 {
		t.Errorf("kazoo saw %v", sus)
	}
	data, err := os.ReadFile(ackFile)
	if err != nil {
		t.Fatal(err)
	}
	paths := strings.Fields(string(data))
	if len(paths) != acked {
		t.Errorf("ack file holds %d paths, the client said %d", len(paths), acked)
	}
	checkPresent(t, ctl, root, paths)
	if losses == 0 {
		t.Logf("the kill caught no kazoo write in flight")
	}
}

// 4. Persistent watches (addWatch, a raw client: go-zookeeper 1.0.4 has no AddWatch)
// across a move of the session off a paused member. (a) Nothing changes while it moves:
// the session stays, and a change after the move fires the watch exactly once. (b) The
// watched node changes while the member is paused: the server would re-register the
// watch with no catch-up event, so zkgate closes the client (which resyncs as after any
// reconnect) rather than lose the change silently.
func TestFidelityPersistentWatchAcrossMove(t *testing.T) {
	ens := zktest.Start(t, zktest.Config{Members: 3})
	leader, err := ens.Leader()
	if err != nil {
		t.Fatal(err)
	}
	ctl, _ := connect(t, leader.ClientAddr)
	changed := func(p string) string { return fmt.Sprintf("%d %s", jute.EventNodeDataChanged, p) }
	addPersistent := func(t *testing.T, w *watcher, p string) {
		t.Helper()
		if _, err := ctl.Create(p, []byte("a"), 0, openACL); err != nil {
			t.Fatal(err)
		}
		h := w.call([]func(int32) []byte{request(jute.OpAddWatch, &jute.AddWatchRequest{Path: p, Type: jute.AddWatchPersistent})})
		if h[0].Err != jute.ErrOK {
			t.Fatalf("addWatch: %v", h[0].Err)
		}
	}
	fired := func(w *watcher, key string) int {
		w.mu.Lock()
		defer w.mu.Unlock()
		return w.fired[key]
	}
	closed := func(w *watcher) bool {
		select {
		case <-w.done:
			return true
		default:
			return false
		}
	}

	t.Run("quiet move", func(t *testing.T) {
		g := fidelityGate(t, ens, proxy.Config{})
		w := dialWatcher(t, g.addr)
		p := fmt.Sprintf("/fid-persistent-quiet-%d", time.Now().UnixNano())
		addPersistent(t, w, p)
		from := sessionMember(g, w.id)
		faultUnder(t, ens, g, w.id, true)
		waitMoved(t, g, w.id, from)
		// A reply on the session: the new member has the replay (it answers in order).
		w.call([]func(int32) []byte{request(jute.OpSync, &jute.SyncRequest{Path: p})})
		if closed(w) {
			t.Fatalf("the session was closed:\n%s", grepLines(g.logs.String(), fmt.Sprintf("0x%x", w.id)))
		}
		if _, err := ctl.Set(p, []byte("b"), -1); err != nil {
			t.Fatal(err)
		}
		zktest.WaitFor(t, 10*time.Second, "NodeDataChanged on "+p, func() bool { return fired(w, changed(p)) > 0 || closed(w) })
		// One more round trip: a second event for the one change would be in by now.
		if !closed(w) {
			w.call([]func(int32) []byte{request(jute.OpSync, &jute.SyncRequest{Path: p})})
		}
		if n := fired(w, changed(p)); n != 1 {
			t.Errorf("NodeDataChanged on %s fired %d times, want 1", p, n)
		}
		if closed(w) {
			t.Errorf("the session was closed:\n%s", grepLines(g.logs.String(), fmt.Sprintf("0x%x", w.id)))
		}
		w.mu.Lock()
		t.Logf("events: %v", w.fired)
		w.mu.Unlock()
	})

	t.Run("change while paused", func(t *testing.T) {
		// Health sees the pause after two probes a second apart: the change below is on
		// every serving member well before zkgate moves the session.
		g := fidelityGate(t, ens, proxy.Config{},
			withHealth(health.Config{Interval: time.Second, Timeout: time.Second, Fall: 2}))
		w := dialWatcher(t, g.addr)
		p := fmt.Sprintf("/fid-persistent-paused-%d", time.Now().UnixNano())
		addPersistent(t, w, p)
		from := sessionMember(g, w.id)
		victim := faultUnder(t, ens, g, w.id, true)
		if _, err := ctl.Set(p, []byte("b"), -1); err != nil {
			t.Fatal(err)
		}
		var other *zktest.Member
		for _, m := range ens.Members() {
			if m != victim && m != leader {
				other = m
			}
		}
		oc, _ := connect(t, other.ClientAddr)
		zktest.WaitFor(t, 10*time.Second, "the change on the other follower", func() bool {
			d, _, err := oc.Get(p)
			return err == nil && string(d) == "b"
		})
		oc.Close() // its closeSession is a change too, made while the member is paused
		if m := sessionMember(g, w.id); m != from {
			t.Fatalf("test setup: zkgate had moved the session (to %q) before the change reached the members", m)
		}
		deadline := time.Now().Add(20 * time.Second)
		for !closed(w) && fired(w, changed(p)) == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("within 20s the client neither got NodeDataChanged on %s nor saw its connection close (session on %q)",
					p, sessionMember(g, w.id))
			}
			time.Sleep(20 * time.Millisecond)
		}
		if n := fired(w, changed(p)); n > 0 {
			t.Logf("the client got NodeDataChanged on %s %d times", p, n)
		}
		if !closed(w) {
			w.mu.Lock()
			t.Errorf("the session was not closed (session on %q, events %v)", sessionMember(g, w.id), w.fired)
			w.mu.Unlock()
		}
		t.Logf("zkgate's lines on the session:\n%s", grepLines(g.logs.String(), fmt.Sprintf("0x%x", w.id)))
		g.waitLog(t, 5*time.Second, "persistent watches may have missed changes")
	})
}
