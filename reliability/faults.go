//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/zkgate/zkgate/internal/zktest"
)

// scenario is one fault under the workload.
type scenario struct {
	name, desc string
	gates      int           // zkgate instances in front
	idle       int           // idle sessions
	before     time.Duration // workload before the fault
	after      time.Duration // at least this on a healthy ensemble after it
	length     time.Duration // the whole scenario, about
	fault      func(ctx context.Context, r *run) error
	gateOnly   bool // meaningless without zkgate
}

func scenarios() []scenario {
	base := scenario{gates: 1, idle: 200, before: 5 * time.Second, after: 5 * time.Second, length: 30 * time.Second}
	with := func(name, desc string, fault func(context.Context, *run) error) scenario {
		s := base
		s.name, s.desc, s.fault = name, desc, fault
		return s
	}
	killGate := with("kill-zkgate", "kill -9 one of two zkgate instances, restart it 10 s later", faultKillGate)
	killGate.gates, killGate.gateOnly = 2, true
	return []scenario{
		with("kill-leader", "kill -9 the leader, restart it 5 s later", faultKill(leader)),
		with("kill-follower", "kill -9 a follower, restart it 5 s later", faultKill(busiestFollower)),
		with("pause-member", "SIGSTOP the follower serving most active clients for 10 s", faultPause),
		with("pause-leader", "SIGSTOP the leader for 10 s (a hung leader)", faultPauseLeader),
		with("quorum-loss", "kill -9 the leader and a follower for 10 s", faultQuorumLoss),
		with("rolling-restart", "restart each member in turn (SIGTERM), the leader last", faultRolling),
		killGate,
		with("slow-member", "SIGSTOP the follower serving most active clients for 800 ms of every second, for 15 s", faultSlow),
	}
}

func leader(_ context.Context, r *run) (*zktest.Member, error) { return r.ens.Leader() }

// busiestFollower is the follower holding the most zkgate sessions (any follower, direct).
func busiestFollower(_ context.Context, r *run) (*zktest.Member, error) {
	followers := r.ens.Followers()
	if len(followers) == 0 {
		return nil, errors.New("no follower")
	}
	best, most := followers[0], -1
	for _, g := range r.gates {
		st, err := g.status()
		if err != nil {
			return nil, err
		}
		for _, m := range st.Ensembles[0].Members {
			for _, f := range followers {
				if f.ClientAddr == m.Address && m.Sessions > most {
					best, most = f, m.Sessions
				}
			}
		}
	}
	return best, nil
}

// activeFollower is the follower serving the most register and create sessions (the
// ones with requests in flight, which a slow member stalls); from zkgate's cons, or the
// clients' own server when they connect directly. Without one, the busiest follower.
func activeFollower(ctx context.Context, r *run) (*zktest.Member, error) {
	onMember := map[int64]string{} // session id → member address
	for _, g := range r.gates {
		cons, err := zktest.FourLetter(g.listen, "cons", 5*time.Second)
		if err != nil {
			return nil, err
		}
		for _, line := range strings.Split(cons, "\n") {
			var sid int64
			if _, after, ok := strings.Cut(line, "sid=0x"); ok {
				fmt.Sscanf(after, "%x", &sid)
			}
			if _, after, ok := strings.Cut(line, "member="); ok {
				onMember[sid], _, _ = strings.Cut(after, ",")
			}
		}
	}
	count := map[string]int{}
	for _, c := range r.clients {
		if c.class == classIdle {
			continue
		}
		if r.direct {
			count[c.conn.Server()]++
		} else {
			count[onMember[c.conn.SessionID()]]++
		}
	}
	var best *zktest.Member
	for _, f := range r.ens.Followers() {
		if best == nil || count[f.ClientAddr] > count[best.ClientAddr] {
			best = f
		}
	}
	if best == nil || count[best.ClientAddr] == 0 {
		return busiestFollower(ctx, r)
	}
	return best, nil
}

func faultKill(pick func(context.Context, *run) (*zktest.Member, error)) func(context.Context, *run) error {
	return func(ctx context.Context, r *run) error {
		m, err := pick(ctx, r)
		if err != nil {
			return err
		}
		r.log("  kill -9 member %d", m.ID)
		r.inject(ctx)
		m.Kill()
		if err := sleepCtx(ctx, 5*time.Second); err != nil {
			return err
		}
		return m.Start()
	}
}

func faultPause(ctx context.Context, r *run) error {
	m, err := activeFollower(ctx, r)
	if err != nil {
		return err
	}
	return pauseFor(ctx, r, m, 10*time.Second)
}

// faultPauseLeader is a hung leader: its followers stop hearing from it after syncLimit
// and elect another; zkgate's sessions on it wait until health or the stall rules see it.
func faultPauseLeader(ctx context.Context, r *run) error {
	m, err := r.ens.Leader()
	if err != nil {
		return err
	}
	return pauseFor(ctx, r, m, 10*time.Second)
}

// pauseFor freezes m (SIGSTOP) for d, then lets it go on (SIGCONT).
func pauseFor(ctx context.Context, r *run, m *zktest.Member, d time.Duration) error {
	r.log("  SIGSTOP member %d", m.ID)
	r.inject(ctx)
	if err := m.Pause(); err != nil {
		return err
	}
	err := sleepCtx(ctx, d)
	return errors.Join(err, m.Resume())
}

func faultQuorumLoss(ctx context.Context, r *run) error {
	l, err := r.ens.Leader()
	if err != nil {
		return err
	}
	f, err := busiestFollower(ctx, r)
	if err != nil {
		return err
	}
	r.log("  kill -9 members %d (leader) and %d", l.ID, f.ID)
	r.inject(ctx)
	l.Kill()
	f.Kill()
	if err := sleepCtx(ctx, 10*time.Second); err != nil {
		return err
	}
	return errors.Join(l.Start(), f.Start())
}

func faultRolling(ctx context.Context, r *run) error {
	l, err := r.ens.Leader()
	if err != nil {
		return err
	}
	order := append(r.ens.Followers(), l)
	for _, m := range order {
		r.log("  restart member %d", m.ID)
		r.inject(ctx)
		if err := m.Restart(); err != nil {
			return err
		}
		if err := r.ens.WaitReady(ctxTimeout(ctx, 60*time.Second)); err != nil {
			return err
		}
		// Let zkgate's health see the member serving before the next one goes.
		if err := sleepCtx(ctx, 2*time.Second); err != nil {
			return err
		}
	}
	return nil
}

func faultKillGate(ctx context.Context, r *run) error {
	g := r.gates[0]
	r.log("  kill -9 zkgate %s", g.listen)
	r.inject(ctx, g)
	g.kill()
	if err := sleepCtx(ctx, 10*time.Second); err != nil {
		return err
	}
	return g.start(ctx)
}

func faultSlow(ctx context.Context, r *run) error {
	m, err := activeFollower(ctx, r)
	if err != nil {
		return err
	}
	r.log("  pulse SIGSTOP/SIGCONT on member %d", m.ID)
	end := time.Now().Add(15 * time.Second)
	r.inject(ctx)
	for time.Now().Before(end) {
		if err := m.Pause(); err != nil {
			return err
		}
		// Longer than the slow-call threshold (500 ms), shorter than the ensemble's own
		// patience (syncLimit: 5 ticks of 200 ms), so the member stays in the quorum.
		err := sleepCtx(ctx, 800*time.Millisecond)
		if err := errors.Join(err, m.Resume()); err != nil {
			return err
		}
		if err := sleepCtx(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
	return nil
}

// pickScenarios selects by name ("all", or a comma-separated list).
func pickScenarios(names string, direct bool) ([]scenario, error) {
	all := scenarios()
	if names == "all" {
		var out []scenario
		for _, s := range all {
			if !(direct && s.gateOnly) {
				out = append(out, s)
			}
		}
		return out, nil
	}
	var out []scenario
next:
	for _, n := range strings.Split(names, ",") {
		for _, s := range all {
			if s.name == n {
				if direct && s.gateOnly {
					return nil, fmt.Errorf("scenario %s needs zkgate", n)
				}
				out = append(out, s)
				continue next
			}
		}
		var known []string
		for _, s := range all {
			known = append(known, s.name)
		}
		return nil, fmt.Errorf("unknown scenario %q (known: %s)", n, strings.Join(known, ", "))
	}
	return out, nil
}
