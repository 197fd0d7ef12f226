//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/zkgate/zkgate/internal/zktest"
)

// The steady heavy loads: sessions working at a pace while a member pauses, snapshots,
// or the machine is busy.

func steadyPath(i int) string { return fmt.Sprintf("%s/s%02d", heavyRoot, i) }

func prepareSteady(ctx context.Context, h *heavyRun) error {
	if err := prepareRoot(ctx, h); err != nil {
		return err
	}
	for i := 0; i < steadySessions; i++ {
		if _, err := h.admin.Create(steadyPath(i), nil, 0, openACL); err != nil {
			return err
		}
	}
	return nil
}

// steady runs one worker per session for d: each alternates getData and setData of its
// own znode (only setData when writeOnly), pausing pace between operations.
func (h *heavyRun) steady(ctx context.Context, conns []*zk.Conn, d, pace time.Duration, writeOnly bool, value []byte) {
	var wg sync.WaitGroup
	end := time.Now().Add(d)
	for w, conn := range conns {
		wg.Go(func() {
			for i := 0; i < 1_000_000 && time.Now().Before(end) && ctx.Err() == nil; i++ {
				var err error
				if writeOnly || i%2 == 1 {
					_, err = conn.Set(steadyPath(w), value, -1)
				} else {
					_, _, err = conn.Get(steadyPath(w))
				}
				h.record(fmt.Sprintf("worker/%d/%d", w, i), err)
				if pace > 0 {
					time.Sleep(pace)
				}
			}
		})
	}
	h.wait(ctx, &wg, end.Add(heavyLoadLimit))
}

// busiestMember is the follower the most of conns are on (zkgate's count, through it).
func (h *heavyRun) busiestFollower(conns []*zk.Conn) (*zktest.Member, error) {
	count := map[string]int{}
	if h.gate != nil {
		st, err := h.gate.status()
		if err != nil {
			return nil, err
		}
		for _, m := range st.Ensembles[0].Members {
			count[m.Address] = m.Sessions
		}
	} else {
		for _, c := range conns {
			count[c.Server()]++
		}
	}
	var best *zktest.Member
	for _, f := range h.ens.Followers() {
		if best == nil || count[f.ClientAddr] > count[best.ClientAddr] {
			best = f
		}
	}
	if best == nil {
		return nil, errors.New("no follower")
	}
	return best, nil
}

func loadGCPause(ctx context.Context, h *heavyRun) error {
	conns, err := h.dial(ctx, steadySessions)
	if err != nil {
		return err
	}
	m, err := h.busiestFollower(conns)
	if err != nil {
		return err
	}
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	paused := make(chan error, 1)
	go func() {
		// 150 ms: a long young-generation pause, below the slow-call threshold (500 ms).
		var err error
		for i := 0; i < int(steadyFor/time.Second) && err == nil && pctx.Err() == nil; i++ {
			tick := time.Now()
			if err = m.Pause(); err == nil {
				time.Sleep(150 * time.Millisecond)
				err = m.Resume()
			}
			sleepCtx(pctx, time.Second-time.Since(tick))
		}
		paused <- errors.Join(err, m.Resume())
	}()
	h.log("  pausing member %d for 150 ms every second", m.ID)
	h.steady(ctx, conns, steadyFor+time.Second, 10*time.Millisecond, false, make([]byte, 100))
	cancel()
	return <-paused
}

func prepareSnapshots(ctx context.Context, h *heavyRun) error {
	if err := prepareSteady(ctx, h); err != nil {
		return err
	}
	// A data tree of 5 MB, so that each snapshot costs its member something.
	return createMany(h, heavyRoot+"/d", 5000, 500, func(i int) string { return fmt.Sprintf("d%04d", i) }, make([]byte, 1024))
}

func loadSnapshots(ctx context.Context, h *heavyRun) error {
	conns, err := h.dial(ctx, steadySessions)
	if err != nil {
		return err
	}
	before := countSnapshots(h.ens.Dir())
	h.steady(ctx, conns, steadyFor, 0, true, make([]byte, 1024))
	h.log("  %d snapshots taken across the members", countSnapshots(h.ens.Dir())-before)
	return nil
}

// countSnapshots counts the snapshot files under the ensemble's directory.
func countSnapshots(dir string) int {
	n := 0
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasPrefix(d.Name(), "snapshot.") {
			n++
		}
		return nil
	})
	return n
}

func loadBusyMachine(ctx context.Context, h *heavyRun) error {
	conns, err := h.dial(ctx, steadySessions)
	if err != nil {
		return err
	}
	stop, err := cpuHogs(2*runtime.NumCPU(), steadyFor)
	if err != nil {
		return err
	}
	defer stop()
	h.log("  %d CPU hogs for %v", 2*runtime.NumCPU(), steadyFor)
	h.steady(ctx, conns, steadyFor, 10*time.Millisecond, false, make([]byte, 100))
	return nil
}

// cpuHogs starts n busy shell loops at the default priority, each in its own process
// group and bounded by timeout(1) even if this process dies; stop kills them.
func cpuHogs(n int, d time.Duration) (stop func(), err error) {
	var cmds []*exec.Cmd
	stop = func() {
		for _, c := range cmds {
			syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
			c.Wait()
		}
	}
	secs := fmt.Sprint(int(d/time.Second) + 5)
	for i := 0; i < n; i++ {
		c := exec.Command("nice", "-n", "0", "timeout", "-s", "KILL", secs, "sh", "-c", "while :; do :; done")
		c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		if err := c.Start(); err != nil {
			stop()
			return nil, fmt.Errorf("starting a CPU hog: %w", err)
		}
		cmds = append(cmds, c)
	}
	once := sync.OnceFunc(stop)
	time.AfterFunc(d, once)
	return once, nil
}
