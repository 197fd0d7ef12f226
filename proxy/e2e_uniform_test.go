package proxy_test

import (
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/zkgate/zkgate/health"
	"github.com/zkgate/zkgate/internal/zktest"
	"github.com/zkgate/zkgate/proxy"
)

// stallClient is a session that reads every pace and counts the times its library lost
// the connection (zkgate closing it counts: the bench harness calls those lost sessions).
type stallClient struct {
	c       *zk.Conn
	sentAt  atomic.Int64 // unix ns of the read in flight, 0 when none
	okAt    atomic.Int64 // unix ns of the last read answered
	lost    atomic.Int32 // Disconnected or Expired events after the session was up
	lastErr atomic.Value
}

func startStallClient(t *testing.T, addr string, pace time.Duration, stop <-chan struct{}, wg *sync.WaitGroup) *stallClient {
	t.Helper()
	c, events, err := zk.Connect([]string{addr}, 10*time.Second, zk.WithLogger(quietLogger{t}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	sc := &stallClient{c: c}
	deadline := time.After(20 * time.Second)
	for up := false; !up; {
		select {
		case e := <-events:
			up = e.State == zk.StateHasSession
		case <-deadline:
			t.Fatalf("no session through %s", addr)
		}
	}
	wg.Add(2)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case e := <-events:
				if e.State == zk.StateDisconnected || e.State == zk.StateExpired {
					sc.lost.Add(1)
				}
			}
		}
	}()
	go func() {
		defer wg.Done()
		tick := time.NewTicker(pace)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			sc.sentAt.Store(time.Now().UnixNano())
			_, _, err := c.Get("/")
			sc.sentAt.Store(0)
			if err != nil {
				sc.lastErr.Store(err.Error())
				continue
			}
			sc.okAt.Store(time.Now().UnixNano())
		}
	}()
	return sc
}

// A stall of the whole ensemble (every member frozen at once, as an overloaded machine
// or a stop-the-world pause on shared cores does) is nobody's outlier: zkgate must
// eject no member, move no session and lose no session where clients connected
// directly lose none. Before zkgate compared members with their peers, a uniform
// stall ejected a member (the silent-member rule saw its peers answer a few ms later,
// the failure ratio counted every member's stalls) and moved its sessions onto
// members as frozen as it, whose ConnectResponses came past the move's dial timeout.
func TestUniformStallLosesNoSession(t *testing.T) {
	// ZooKeeper's default tickTime: with the tests' 200 ms ticks (syncLimit 5: 1 s) a
	// frozen ensemble holds an election when it resumes, and direct clients lose their
	// connections too.
	ens := zktest.Start(t, zktest.Config{Members: 3, TickTime: 2 * time.Second})
	g := startGate(t, ens, proxy.Config{}, withHealth(health.DefaultConfig()))
	const perSide, pace, rounds = 24, 50 * time.Millisecond, 3
	stallFor := 1500 * time.Millisecond // past slow_call (500 ms) thrice; direct clients' read timeout is 6.7 s
	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(stop)
	var viaGate, direct []*stallClient
	for i := range perSide {
		viaGate = append(viaGate, startStallClient(t, g.addr, pace, stop, &wg))
		direct = append(direct, startStallClient(t, ens.Addrs()[i%3], pace, stop, &wg))
	}
	all := append(append([]*stallClient(nil), viaGate...), direct...)
	answeredSince := func(at time.Time) bool {
		for _, c := range all {
			if c.okAt.Load() < at.UnixNano() {
				return false
			}
		}
		return true
	}
	zktest.WaitFor(t, 10*time.Second, "every client reading", func() bool { return answeredSince(time.Now().Add(-time.Second)) })
	for round := range rounds {
		for _, m := range ens.Members() {
			if err := m.Pause(); err != nil {
				t.Fatal(err)
			}
		}
		paused := time.Now()
		// Held until every client has a read waiting for stallFor (no fixed sleep: the
		// clients' own clocks say when the stall has lasted long enough).
		zktest.WaitFor(t, 10*time.Second, "every client stalled", func() bool {
			for _, c := range all {
				if s := c.sentAt.Load(); s == 0 || time.Since(time.Unix(0, s)) < stallFor {
					return false
				}
			}
			return true
		})
		for _, m := range ens.Members() {
			if err := m.Resume(); err != nil {
				t.Fatal(err)
			}
		}
		t.Logf("round %d: every member frozen for %v", round+1, time.Since(paused).Round(time.Millisecond))
		resumed := time.Now()
		zktest.WaitFor(t, 20*time.Second, "every client answered after the stall", func() bool { return answeredSince(resumed) })
	}
	count := func(cs []*stallClient) (n int) {
		for _, c := range cs {
			n += int(c.lost.Load())
		}
		return n
	}
	lostGate, lostDirect := count(viaGate), count(direct)
	var lines []string
	for _, l := range strings.Split(g.logs.String(), "\n") {
		if containsAll(l, "member ejected") || containsAll(l, "session could not move") || containsAll(l, "moving sessions off") {
			lines = append(lines, l)
		}
	}
	t.Logf("connections lost: %d of %d sessions through zkgate, %d of %d direct; moves %+v", lostGate, perSide, lostDirect, perSide, g.srv.Totals())
	if lostDirect != 0 {
		t.Fatalf("%d direct sessions lost their connection: the stall was too long for this test to say anything", lostDirect)
	}
	if lostGate != 0 || len(lines) != 0 {
		t.Fatalf("through zkgate %d sessions lost their connection where direct lost none; ejections and moves:\n%s", lostGate, strings.Join(lines, "\n"))
	}
}
