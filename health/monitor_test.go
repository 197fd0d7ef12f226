package health_test

import (
	"context"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/zkgate/zkgate/health"
	"github.com/zkgate/zkgate/internal/zktest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// waitView polls the monitor's view until cond holds, and returns how long that took.
func waitView(t *testing.T, mon *health.Monitor, within time.Duration, what string, cond func(*health.View) bool) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		v := mon.View()
		if cond(v) {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("%s: not seen within %v; view: %+v", what, within, v)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func status(v *health.View, addr string) health.MemberState {
	m, _ := v.Member(addr)
	return m
}

// One ensemble with the server's default whitelist (srvr only) and an observer goes
// through the failures the monitor must see: a paused follower, a killed leader, a lost
// quorum.
func TestMonitorRealEnsemble(t *testing.T) {
	ens := zktest.Start(t, zktest.Config{Members: 3, Observers: 1, Whitelist: zktest.DefaultWhitelist})
	cfg := health.Config{Interval: 500 * time.Millisecond, Timeout: 300 * time.Millisecond, Fall: 1}
	mon := health.NewMonitor(ens.Addrs(), cfg, zerolog.New(zerolog.NewTestWriter(t)))
	mon.Start()
	defer mon.Close()

	leader, err := ens.Leader()
	if err != nil {
		t.Fatal(err)
	}
	v := mon.View()
	if v.Leader != leader.ClientAddr || !v.Quorum {
		t.Fatalf("leader %q quorum %v, want %s", v.Leader, v.Quorum, leader.ClientAddr)
	}
	modes := map[string]int{}
	for _, m := range v.Members {
		modes[m.Mode]++
		if !m.Serving {
			t.Errorf("%s not serving: %+v", m.Address, m)
		}
	}
	if modes["leader"] != 1 || modes["follower"] != 2 || modes["observer"] != 1 {
		t.Fatalf("modes %v", modes)
	}
	if st := status(v, leader.ClientAddr); st.Zxid == 0 {
		t.Fatalf("leader zxid not parsed: %+v", st)
	}

	t.Run("paused follower is down, then back", func(t *testing.T) {
		f := ens.Followers()[0]
		if err := f.Pause(); err != nil {
			t.Fatal(err)
		}
		took := waitView(t, mon, 3*time.Second, "paused follower down", func(v *health.View) bool {
			return status(v, f.ClientAddr).Status == health.StatusDown
		})
		t.Logf("paused follower marked down after %v (interval %v + timeout %v)", took, cfg.Interval, cfg.Timeout)
		if err := f.Resume(); err != nil {
			t.Fatal(err)
		}
		waitView(t, mon, 10*time.Second, "resumed follower serving", func(v *health.View) bool {
			return status(v, f.ClientAddr).Serving
		})
	})

	t.Run("killed leader is down and a new leader is seen", func(t *testing.T) {
		leader.Kill()
		next, err := ens.WaitLeader(zktest.Ctx(t, 30*time.Second), leader)
		if err != nil {
			t.Fatal(err)
		}
		took := waitView(t, mon, 2*time.Second, "new leader in view", func(v *health.View) bool {
			return v.Leader == next.ClientAddr && v.Quorum && status(v, leader.ClientAddr).Status == health.StatusDown
		})
		t.Logf("new leader %s in view %v after the election finished", next.ClientAddr, took)
	})

	t.Run("two of three voters gone: not serving, no quorum", func(t *testing.T) {
		cur, err := ens.Leader()
		if err != nil {
			t.Fatal(err)
		}
		cur.Kill()
		var survivor *zktest.Member
		for _, m := range ens.Members() {
			if m.Running() && !m.Observer {
				survivor = m
			}
		}
		took := waitView(t, mon, 10*time.Second, "quorum lost", func(v *health.View) bool {
			return !v.Quorum && v.Leader == ""
		})
		t.Logf("quorum false in view %v after the kill", took)
		waitView(t, mon, 15*time.Second, "survivor not serving", func(v *health.View) bool {
			return status(v, survivor.ClientAddr).Status == health.StatusNotServing
		})
	})
}

func TestSubscribeAndClose(t *testing.T) {
	ens := zktest.Start(t, zktest.Config{Members: 1})
	mon := health.NewMonitor(ens.Addrs(), health.Config{Interval: 100 * time.Millisecond}, zerolog.Nop())
	changes := make(chan health.View, 16)
	mon.Subscribe(func(v health.View) {
		select {
		case changes <- v:
		default:
		}
	})
	mon.Start()
	defer mon.Close()
	if v := mon.View(); v.Leader != ens.Member(1).ClientAddr {
		t.Fatalf("view after Start: %+v", v)
	}
	ens.Member(1).Kill()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for {
		select {
		case v := <-changes:
			if !v.Quorum && v.Members[0].Status == health.StatusDown {
				return
			}
		case <-ctx.Done():
			t.Fatal("no change notification for a killed member")
		}
	}
}
