package proxy_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/zkgate/zkgate/breaker"
	"github.com/zkgate/zkgate/health"
	"github.com/zkgate/zkgate/internal/zktest"
	"github.com/zkgate/zkgate/jute"
	"github.com/zkgate/zkgate/proxy"
)

func TestBreakerQuorumLoss(t *testing.T) {
	ens := zktest.Start(t, zktest.Config{Members: 3, Extra: map[string]string{"maxSessionTimeout": "30000"}})
	leader, err := ens.Leader()
	if err != nil {
		t.Fatal(err)
	}
	// Sessions go to the leader (policy any, leader first): it is the member that keeps
	// requests in flight after the followers die, until it notices it lost its quorum.
	order := []string{leader.ClientAddr}
	var followers []*zktest.Member
	for _, m := range ens.Members() {
		if m != leader {
			order = append(order, m.ClientAddr)
			followers = append(followers, m)
		}
	}
	g := startGate(t, ens, proxy.Config{Name: "quorum", Policy: proxy.Any}, withMemberOrder(order),
		withBreaker(func(c *breaker.Config) { c.OpenFor = time.Second }))
	l := startLoad(t, g.addr, 20, 20*time.Second)
	raw := dialRaw(t, g.addr)
	if _, err := raw.replies(0, time.Second); err != nil {
		t.Fatal(err)
	}

	killed := time.Now()
	for _, f := range followers {
		f.Kill()
	}
	// A write the leader cannot commit, and reads queued behind it in the session.
	xids := raw.send(setData("/", []byte("no quorum")), getData("/"), getData("/zookeeper"), getData("/"), getData("/"))
	opened := waitState(t, g, breaker.Open, 10*time.Second)
	t.Logf("breaker open %v after 2 of 3 members were killed (target 2 s)", opened.Round(time.Millisecond))

	// Whatever the leader answered before it noticed the lost quorum, and whatever zkgate
	// answered once the breaker was open, came in xid order. (Which of the two, and
	// whether the leader closed the connection first, is a race between the leader's own
	// quorum check and health; TestBreakerAnswersInFlightInOrder pins the open case.)
	got, err := raw.replies(len(xids), 15*time.Second)
	for i, h := range got {
		if h.Xid != xids[i] || (h.Err != jute.ErrOK && h.Err != jute.ErrOperationTimeout) {
			t.Fatalf("reply %d: xid %d err %v; want xid %d, OK or OPERATIONTIMEOUT; all: %+v", i, h.Xid, h.Err, xids[i], got)
		}
	}
	t.Logf("in flight at the kill: %d of %d answered in xid order (%+v), then %v", len(got), len(xids), got, err)

	// A new client is closed at once while the breaker is open.
	conn, err := net.Dial("tcp", g.addr)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	conn.Write(jute.AppendFrame(nil, &jute.ConnectRequest{TimeOut: 4000, Passwd: make([]byte, 16)}))
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := conn.Read(make([]byte, 64))
	took := time.Since(start)
	conn.Close()
	if n != 0 || !errors.Is(err, io.EOF) {
		t.Fatalf("new client while open: read %d bytes, %v; want it closed", n, err)
	}
	t.Logf("new client closed %v after connect while open (target 50 ms)", took.Round(time.Microsecond))
	if out := ask(t, g.addr, "ruok"); out == "imok" {
		t.Fatal("ruok is imok while the breaker is open")
	}
	if out := ask(t, g.addr, "srvr"); !strings.Contains(out, "Breaker: open") {
		t.Fatalf("srvr does not show the open breaker:\n%s", out)
	}
	g.waitLog(t, time.Second, `"to":"open"`, `"reason":"health: `)

	// The members come back: half-open, then closed, and the sessions continue.
	back := time.Now()
	for _, f := range followers {
		if err := f.Start(); err != nil {
			t.Fatal(err)
		}
	}
	closedAfter := waitState(t, g, breaker.Closed, 60*time.Second)
	t.Logf("breaker closed %v after the members were restarted; transitions %s", closedAfter.Round(time.Millisecond), transitions(g))
	if !strings.Contains(transitions(g), "open,half-open,closed") {
		t.Fatalf("transitions %s: want open, half-open, closed", transitions(g))
	}
	before := l.ok.Load()
	zktest.WaitFor(t, 30*time.Second, "writes to succeed again", func() bool { return l.ok.Load() > before+100 })
	for i, c := range l.conns {
		if c.SessionID() != l.ids[i] {
			t.Errorf("session %d: id 0x%x, was 0x%x", i, c.SessionID(), l.ids[i])
		}
	}
	if n := l.expired.Load(); n > 0 {
		t.Errorf("%d sessions expired", n)
	}
	l.close()
	zktest.WaitFor(t, 10*time.Second, "every permit released", func() bool { return g.srv.Breaker().Held() == 0 })
	t.Logf("load: %d writes ok, %d failed; outage %v", l.ok.Load(), l.fail.Load(), back.Sub(killed).Round(time.Millisecond))
}

// Requests in flight when the breaker opens get the reject code, in xid order, at once,
// not when the member gets round to it: both followers hang (SIGSTOP), health opens the
// breaker, and the leader (which waits syncLimit before it gives up) still holds a write
// it cannot commit, with reads queued behind it.
func TestBreakerAnswersInFlightInOrder(t *testing.T) {
	ens := zktest.Start(t, zktest.Config{Members: 3, Extra: map[string]string{"syncLimit": "25"}})
	leader, err := ens.Leader()
	if err != nil {
		t.Fatal(err)
	}
	order := []string{leader.ClientAddr}
	for _, m := range ens.Followers() {
		order = append(order, m.ClientAddr)
	}
	g := startGate(t, ens, proxy.Config{Name: "inflight", Policy: proxy.Any}, withMemberOrder(order))
	raw := dialRaw(t, g.addr)
	for _, f := range ens.Followers() {
		if err := f.Pause(); err != nil {
			t.Fatal(err)
		}
		defer f.Resume()
	}
	xids := raw.send(setData("/", []byte("no quorum")), getData("/"), getData("/zookeeper"), getData("/"))
	opened := waitState(t, g, breaker.Open, 10*time.Second)
	start := time.Now()
	got, err := raw.replies(len(xids), 10*time.Second)
	if len(got) != len(xids) {
		t.Fatalf("%d of %d in-flight requests answered before %v", len(got), len(xids), err)
	}
	for i, h := range got {
		if h.Xid != xids[i] || h.Err != jute.ErrOperationTimeout {
			t.Fatalf("reply %d: xid %d err %v, want xid %d with OPERATIONTIMEOUT, in order; all: %+v", i, h.Xid, h.Err, xids[i], got)
		}
	}
	t.Logf("breaker open %v after the followers hung; %d in-flight requests answered with %v in xid order %v later",
		opened.Round(time.Millisecond), len(got), got[0].Err, time.Since(start).Round(time.Millisecond))
	// Later requests on the same live session are refused at once, still in order.
	more := raw.send(getData("/"), setData("/", nil), getData("/zookeeper"))
	got, err = raw.replies(len(more), 5*time.Second)
	if len(got) != len(more) {
		t.Fatalf("refused requests: %d of %d answered (%v)", len(got), len(more), err)
	}
	for i, h := range got {
		if h.Xid != more[i] || h.Err != jute.ErrOperationTimeout {
			t.Fatalf("refused %d: %+v", i, got)
		}
	}
}

// A hung leader (SIGSTOP) while 20 sessions write: the breaker opens, requests on the
// live sessions are answered fast with the reject code, and it closes again once the
// ensemble has a leader. Run twice: with health as shipped (health usually sees the
// leader go first), and with health slowed down (a 3 s probe timeout, followers that
// wait syncLimit 4 s before they give up on the leader) so that the slow writes alone
// must open it.
func TestBreakerHungLeader(t *testing.T) {
	t.Run("health and data path", func(t *testing.T) { hungLeader(t, false) })
	t.Run("slow calls alone", func(t *testing.T) { hungLeader(t, true) })
}

func hungLeader(t *testing.T, slowOnly bool) {
	extra := map[string]string{"maxSessionTimeout": "30000"}
	opts := []gateOption{withBreaker(func(c *breaker.Config) { c.OpenFor = time.Second })}
	if slowOnly {
		extra["syncLimit"] = "20"
		opts = []gateOption{
			withHealth(health.Config{Interval: 200 * time.Millisecond, Timeout: 3 * time.Second, Fall: 1}),
			withBreaker(func(c *breaker.Config) {
				c.OpenFor, c.Window, c.MinRequests, c.SlowCall = time.Second, 500*time.Millisecond, 10, 200*time.Millisecond
			}),
		}
	}
	ens := zktest.Start(t, zktest.Config{Members: 3, Extra: extra})
	g := startGate(t, ens, proxy.Config{Name: "hung"}, opts...)
	// The slow calls must keep coming for a time-window ratio to see them: open loop.
	l := startLoadMode(t, g.addr, 20, 20*time.Second, slowOnly)
	zktest.WaitFor(t, 10*time.Second, "load", func() bool { return l.ok.Load() > 200 })
	leader, err := ens.Leader()
	if err != nil {
		t.Fatal(err)
	}
	if err := leader.Pause(); err != nil {
		t.Fatal(err)
	}
	resumed := false
	defer func() {
		if !resumed {
			leader.Resume()
		}
	}()
	opened := waitState(t, g, breaker.Open, 15*time.Second)
	openAt := time.Now()
	why := g.srv.Breaker().History()
	reason := why[len(why)-1].Reason
	t.Logf("breaker open %v after SIGSTOP of the leader: %s", opened.Round(time.Millisecond), reason)
	if slowOnly && !strings.Contains(reason, "failure ratio") {
		t.Fatalf("opened by %q, want the slow calls (failure ratio)", reason)
	}
	zktest.WaitFor(t, 10*time.Second, "requests answered with the reject code", func() bool {
		n, _ := l.rejectStats(openAt)
		return n >= 100
	})
	n, p99 := l.rejectStats(openAt)
	t.Logf("%d requests answered with the reject code while open, p99 %v (target 10 ms)", n, p99)
	if p99 > time.Second {
		t.Errorf("p99 %v: refused requests are not answered fast", p99)
	}
	leader.Resume()
	resumed = true
	closedAfter := waitState(t, g, breaker.Closed, 60*time.Second)
	t.Logf("breaker closed %v after SIGCONT; transitions %s", closedAfter.Round(time.Millisecond), transitions(g))
	before := l.ok.Load()
	zktest.WaitFor(t, 30*time.Second, "writes to succeed again", func() bool { return l.ok.Load() > before+100 })
	if n := l.expired.Load(); n > 0 {
		t.Errorf("%d sessions expired", n)
	}
	l.close()
	zktest.WaitFor(t, 10*time.Second, "every permit released", func() bool { return g.srv.Breaker().Held() == 0 })
}

// A hung follower that hosts sessions is ejected, its sessions move and keep working, new
// sessions avoid it, and it returns after SIGCONT and its ejection time.
func TestMemberEjection(t *testing.T) {
	ens := zktest.Start(t, zktest.Config{Members: 3, Extra: map[string]string{"maxSessionTimeout": "30000"}})
	g := startGate(t, ens, proxy.Config{Name: "eject"}, withEjection(func(c *breaker.EjectionConfig) { c.BaseTime = 2 * time.Second }))
	l := startLoad(t, g.addr, 20, 20*time.Second)
	zktest.WaitFor(t, 10*time.Second, "load", func() bool { return l.ok.Load() > 200 })
	counts := map[string]int{}
	for _, s := range g.srv.Sessions() {
		counts[s.Member]++
	}
	var victim *zktest.Member
	for _, m := range ens.Followers() {
		if counts[m.ClientAddr] > 0 {
			victim = m
		}
	}
	if victim == nil {
		t.Fatalf("no follower hosts a session: %v", counts)
	}
	if err := victim.Pause(); err != nil {
		t.Fatal(err)
	}
	paused := time.Now()
	zktest.WaitFor(t, 10*time.Second, "ejection", func() bool { return g.srv.Ejector().Excluded()[victim.ClientAddr] })
	t.Logf("follower with %d sessions ejected %v after SIGSTOP (target about 1 s)", counts[victim.ClientAddr], time.Since(paused).Round(time.Millisecond))
	g.waitLog(t, time.Second, "member ejected", victim.ClientAddr)
	zktest.WaitFor(t, 20*time.Second, "sessions to leave the hung member", func() bool {
		for _, s := range g.srv.Sessions() {
			if s.Member == victim.ClientAddr {
				return false
			}
		}
		return true
	})
	before := l.ok.Load()
	zktest.WaitFor(t, 20*time.Second, "moved sessions to keep writing", func() bool { return l.ok.Load() > before+200 })
	for range 5 {
		c, _ := connect(t, g.addr)
		if m := memberOf(t, g, c.SessionID()); m == victim.ClientAddr {
			t.Fatalf("new session placed on the ejected member %s", m)
		}
	}
	if err := victim.Resume(); err != nil {
		t.Fatal(err)
	}
	resumed := time.Now()
	zktest.WaitFor(t, 30*time.Second, "the member's return", func() bool { return !g.srv.Ejector().Excluded()[victim.ClientAddr] })
	t.Logf("member returned %v after SIGCONT (ejection time 2 s); breaker transitions: %q", time.Since(resumed).Round(time.Millisecond), transitions(g))
	if n := l.expired.Load(); n > 0 {
		t.Errorf("%d sessions expired", n)
	}
}

// Application errors at 100% are the ensemble doing its job: they never open the breaker.
func TestApplicationErrorsKeepBreakerClosed(t *testing.T) {
	ens := zktest.Require(t, shared)
	g := startGate(t, ens, proxy.Config{Name: "apperr"}, withBreaker(func(c *breaker.Config) { c.MinRequests = 10 }))
	c, _ := connect(t, g.addr)
	path := fmt.Sprintf("/apperr-%d", time.Now().UnixNano())
	if _, err := c.Create(path, nil, 0, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	for i := range 300 {
		var err error
		switch i % 3 {
		case 0:
			_, _, err = c.Get(path + "/none")
		case 1:
			_, err = c.Create(path, nil, 0, zk.WorldACL(zk.PermAll))
		case 2:
			_, err = c.Set(path, nil, 99)
		}
		if err == nil || !(errors.Is(err, zk.ErrNoNode) || errors.Is(err, zk.ErrNodeExists) || errors.Is(err, zk.ErrBadVersion)) {
			t.Fatalf("request %d: %v, want an application error", i, err)
		}
	}
	req, fail, _ := g.srv.Breaker().Stats()
	if s := g.srv.Breaker().State(); s != breaker.Closed || fail != 0 {
		t.Fatalf("breaker %v with %d failures in %d requests after 300 application errors", s, fail, req)
	}
	if h := g.srv.Breaker().Held(); h != 0 {
		t.Fatalf("%d permits held with nothing in flight", h)
	}
}
