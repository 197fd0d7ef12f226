package proxy_test

import (
	"testing"
	"time"

	"github.com/zkgate/zkgate/internal/zktest"
	"github.com/zkgate/zkgate/proxy"
)

// prefer-observers on a 5-member ensemble of 3 voters and 2 observers: sessions go to
// the observers; with the observers gone they move to the followers, never the leader.
func TestPreferObserversPlacement(t *testing.T) {
	ens := zktest.Start(t, zktest.Config{Members: 3, Observers: 2})
	g := startGate(t, ens, proxy.Config{Policy: proxy.PreferObservers})
	observers := map[string]bool{}
	for _, m := range ens.Members() {
		if m.Observer {
			observers[m.ClientAddr] = true
		}
	}
	// Health must have seen the observers' mode before placing by it.
	zktest.WaitFor(t, 30*time.Second, "health sees both observers serving", func() bool {
		n := 0
		for _, m := range g.mon.View().Members {
			if observers[m.Address] && m.Serving && m.Mode == "observer" {
				n++
			}
		}
		return n == 2
	})
	for range 4 {
		connect(t, g.addr)
	}
	placed := map[string]int{}
	for _, s := range g.srv.Sessions() {
		placed[s.Member]++
	}
	for member, n := range placed {
		if !observers[member] {
			t.Fatalf("%d sessions on %s, not an observer: %v", n, member, placed)
		}
	}
	if len(placed) != 2 {
		t.Fatalf("sessions not spread over both observers: %v", placed)
	}

	leader, err := ens.Leader()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ens.Members() {
		if m.Observer {
			m.Kill()
		}
	}
	zktest.WaitFor(t, 30*time.Second, "every session moved to a follower", func() bool {
		ss := g.srv.Sessions()
		for _, s := range ss {
			if observers[s.Member] || s.Member == leader.ClientAddr {
				return false
			}
		}
		return len(ss) == 4
	})
	connect(t, g.addr)
	for _, s := range g.srv.Sessions() {
		if s.Member == leader.ClientAddr {
			t.Fatalf("a session on the leader while followers serve: %+v", s)
		}
	}
}

// zkgate in front of the observers alone (the leader and followers elsewhere): health
// infers the quorum from observers that serve, sessions are placed, and losing one
// observer leaves the other serving. Without the inference zkgate saw no leader among
// its members and refused every client.
func TestObserversOnly(t *testing.T) {
	ens := zktest.Start(t, zktest.Config{Members: 3, Observers: 2})
	var observers []*zktest.Member
	var addrs []string
	for _, m := range ens.Members() {
		if m.Observer {
			observers, addrs = append(observers, m), append(addrs, m.ClientAddr)
		}
	}
	g := startGate(t, ens, proxy.Config{Policy: proxy.PreferObservers}, withMemberOrder(addrs))
	zktest.WaitFor(t, 30*time.Second, "zkgate ready in front of the observers", g.srv.CanServe)
	c, _ := connect(t, g.addr)
	if _, _, err := c.Get("/"); err != nil {
		t.Fatal(err)
	}
	observers[0].Kill()
	zktest.WaitFor(t, 30*time.Second, "the session on the other observer", func() bool {
		ss := g.srv.Sessions()
		return len(ss) == 1 && ss[0].Member == addrs[1]
	})
	if !g.srv.CanServe() {
		t.Fatal("one observer lost: zkgate stopped serving")
	}
	connect(t, g.addr)
	if _, _, err := c.Get("/"); err != nil {
		t.Fatalf("after losing one observer: %v", err)
	}
}

// least-connections keeps sessions off the leader while followers serve; the default,
// least-connections-with-leader, spreads them over every serving member, the leader
// included, as clients that connect to the ensemble directly do.
func TestPlacementWithAndWithoutTheLeader(t *testing.T) {
	ens := zktest.Start(t, zktest.Config{Members: 3})
	leader, err := ens.Leader()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		policy                   proxy.Policy
		leaderWant, followerWant int
	}{{proxy.LeastConnections, 0, 3}, {proxy.LeastConnectionsWithLeader, 2, 2}} {
		t.Run(string(c.policy), func(t *testing.T) {
			g := startGate(t, ens, proxy.Config{Policy: c.policy})
			zktest.WaitFor(t, 30*time.Second, "health sees the leader and both followers serving", func() bool {
				modes := map[string]int{}
				for _, m := range g.mon.View().Members {
					if m.Serving {
						modes[m.Mode]++
					}
				}
				return modes["leader"] == 1 && modes["follower"] == 2
			})
			for range 6 {
				connect(t, g.addr)
			}
			placed := map[string]int{}
			for _, s := range g.srv.Sessions() {
				placed[s.Member]++
			}
			if placed[leader.ClientAddr] != c.leaderWant {
				t.Fatalf("%d of 6 sessions on the leader %s, want %d: %v", placed[leader.ClientAddr], leader.ClientAddr, c.leaderWant, placed)
			}
			for _, m := range ens.Members() {
				if m != leader && placed[m.ClientAddr] != c.followerWant {
					t.Fatalf("%d sessions on follower %s, want %d: %v", placed[m.ClientAddr], m.ClientAddr, c.followerWant, placed)
				}
			}
		})
	}
}
