//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/zkgate/zkgate/internal/zktest"
	"github.com/zkgate/zkgate/jute"
)

// The heavy scenarios' preparations and loads. Every loop is bounded in count and in
// time; every address is the ensemble's or zkgate's, on 127.0.0.1.

const heavyRoot = "/heavy"

var openACL = zk.WorldACL(zk.PermAll)

func prepareRoot(_ context.Context, h *heavyRun) error {
	_, err := h.admin.Create(heavyRoot, nil, 0, openACL)
	return err
}

// createMany creates n znodes under dir straight at the members, in multis of batch,
// four in flight.
func createMany(h *heavyRun, dir string, n, batch int, name func(int) string, data []byte) error {
	if _, err := h.admin.Create(dir, nil, 0, openACL); err != nil {
		return err
	}
	errs := make(chan error, (n+batch-1)/batch)
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	for first := 0; first < n; first += batch {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			var ops []any
			for i := first; i < min(first+batch, n); i++ {
				ops = append(ops, &zk.CreateRequest{Path: dir + "/" + name(i), Data: data, Acl: openACL})
			}
			_, err := h.admin.Multi(ops...)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return fmt.Errorf("creating %d znodes under %s: %w", n, dir, err)
		}
	}
	return nil
}

// bystander is a second session reading every 10 ms while a load runs (what the issue's
// reader did): a breaker opened by the load refuses it too. The returned func stops it.
func (h *heavyRun) bystander(ctx context.Context) (func(), error) {
	conns, err := h.dial(ctx, 1)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; i < 100_000 && ctx.Err() == nil; i++ {
			_, _, err := conns[0].Get(heavyRoot)
			h.record(fmt.Sprintf("bystander/%d", i), err)
			select {
			case <-ctx.Done():
			case <-time.After(10 * time.Millisecond):
			}
		}
	})
	return func() { cancel(); wg.Wait() }, nil
}

// pipeline runs n operations on conn at once: go-zookeeper sends them back to back on the
// session and matches the replies in order, as an async client does. start, when not nil,
// holds them until it is closed.
func (h *heavyRun) pipeline(wg *sync.WaitGroup, start <-chan struct{}, n int, key func(int) string, op func(int) error) {
	for i := 0; i < n; i++ {
		wg.Go(func() {
			if start != nil {
				<-start
			}
			h.record(key(i), op(i))
		})
	}
}

// withLoad runs fn with the bystander reading, then waits for fn's operations (at most
// heavyLoadLimit).
func (h *heavyRun) withLoad(ctx context.Context, fn func(wg *sync.WaitGroup) error) error {
	stop, err := h.bystander(ctx)
	if err != nil {
		return err
	}
	defer stop()
	var wg sync.WaitGroup
	deadline := time.Now().Add(heavyLoadLimit)
	err = fn(&wg)
	h.wait(ctx, &wg, deadline)
	return err
}

func loadColdBurst(ctx context.Context, h *heavyRun) error {
	conns, err := h.dial(ctx, 1)
	if err != nil {
		return err
	}
	data := make([]byte, 100)
	return h.withLoad(ctx, func(wg *sync.WaitGroup) error {
		h.pipeline(wg, nil, 10_000, func(i int) string { return fmt.Sprintf("create/%d", i) }, func(i int) error {
			_, err := conns[0].Create(fmt.Sprintf("%s/c%05d", heavyRoot, i), data, 0, openACL)
			return err
		})
		return nil
	})
}

func loadManyBursts(ctx context.Context, h *heavyRun) error {
	conns, err := h.dial(ctx, 64)
	if err != nil {
		return err
	}
	data := make([]byte, 100)
	return h.withLoad(ctx, func(wg *sync.WaitGroup) error {
		start := make(chan struct{})
		for s, conn := range conns {
			h.pipeline(wg, start, 500, func(i int) string { return fmt.Sprintf("create/%d/%d", s, i) }, func(i int) error {
				_, err := conn.Create(fmt.Sprintf("%s/s%02d-%03d", heavyRoot, s, i), data, 0, openACL)
				return err
			})
		}
		close(start)
		return nil
	})
}

func loadBigValues(ctx context.Context, h *heavyRun) error {
	if _, err := h.admin.Create(heavyRoot+"/big", nil, 0, openACL); err != nil {
		return err
	}
	conns, err := h.dial(ctx, 1)
	if err != nil {
		return err
	}
	value := make([]byte, 1_000_000)
	return h.withLoad(ctx, func(wg *sync.WaitGroup) error {
		h.pipeline(wg, nil, 50, func(i int) string { return fmt.Sprintf("setData/%d", i) }, func(int) error {
			_, err := conns[0].Set(heavyRoot+"/big", value, -1)
			return err
		})
		return nil
	})
}

const wideChildren = 100_000

func wideName(i int) string { return fmt.Sprintf("c%023d", i) }

func prepareWide(ctx context.Context, h *heavyRun) error {
	if err := prepareRoot(ctx, h); err != nil {
		return err
	}
	return createMany(h, heavyRoot+"/kids", wideChildren, 1000, wideName, nil)
}

func loadWide(ctx context.Context, h *heavyRun) error {
	conns, err := h.dial(ctx, 4)
	if err != nil {
		return err
	}
	return h.withLoad(ctx, func(wg *sync.WaitGroup) error {
		start := make(chan struct{})
		for s, conn := range conns {
			h.pipeline(wg, start, 5, func(i int) string { return fmt.Sprintf("getChildren/%d/%d", s, i) }, func(int) error {
				kids, _, err := conn.Children(heavyRoot + "/kids")
				if err == nil && len(kids) != wideChildren {
					err = fmt.Errorf("%d children, want %d", len(kids), wideChildren)
				}
				return err
			})
		}
		close(start)
		return nil
	})
}

func loadMulti(ctx context.Context, h *heavyRun) error {
	conns, err := h.dial(ctx, 1)
	if err != nil {
		return err
	}
	return h.withLoad(ctx, func(wg *sync.WaitGroup) error {
		h.pipeline(wg, nil, 10, func(m int) string { return fmt.Sprintf("multi/%d", m) }, func(m int) error {
			ops := make([]any, 0, 1000)
			for i := 0; i < 1000; i++ {
				ops = append(ops, &zk.CreateRequest{Path: fmt.Sprintf("%s/m%02d-%04d", heavyRoot, m, i), Acl: openACL})
			}
			_, err := conns[0].Multi(ops...)
			return err
		})
		return nil
	})
}

const (
	slowReaderValue    = 64 << 10
	slowReaderRequests = 500
	slowReaderPause    = 3 * time.Second
)

func prepareSlowReader(ctx context.Context, h *heavyRun) error {
	if err := prepareRoot(ctx, h); err != nil {
		return err
	}
	_, err := h.admin.Create(heavyRoot+"/v", make([]byte, slowReaderValue), 0, openACL)
	return err
}

// loadSlowReader speaks jute itself (go-zookeeper always reads): a session, then every
// request written, then nothing read for 3 s, then every reply read in order.
func loadSlowReader(ctx context.Context, h *heavyRun) error {
	addr := h.target()[0]
	if h.gate == nil {
		// A follower, as zkgate's least-connections routing would pick.
		if f := h.ens.Followers(); len(f) > 0 {
			addr = f[0].ClientAddr
		}
	}
	stop, err := h.bystander(ctx)
	if err != nil {
		return err
	}
	defer stop()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.(*net.TCPConn).SetReadBuffer(64 << 10)
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write(jute.AppendFrame(nil, &jute.ConnectRequest{TimeOut: int32(sessionTimeout / time.Millisecond), Passwd: make([]byte, 16)})); err != nil {
		return err
	}
	fr := jute.NewFrameReaderSize(c, heavyMaxBuffer+jute.FrameSlack, 128<<10)
	frame, err := fr.Next()
	if err != nil {
		return fmt.Errorf("handshake: %w", err)
	}
	var resp jute.ConnectResponse
	if err := jute.Decode(frame[4:], &resp); err != nil || resp.SessionID == 0 {
		return fmt.Errorf("handshake: %+v %v", resp, err)
	}
	// The writes block once the member (or zkgate) stops reading the session: a goroutine
	// writes while this one does not read.
	wrote := make(chan error, 1)
	go func() {
		c.SetWriteDeadline(time.Now().Add(slowReaderPause + 60*time.Second))
		var err error
		for xid := int32(1); xid <= slowReaderRequests && err == nil; xid++ {
			_, err = c.Write(request(xid, jute.OpGetData, &jute.GetDataRequest{Path: heavyRoot + "/v"}))
		}
		wrote <- err
	}()
	if err := sleepCtx(ctx, slowReaderPause); err != nil {
		return err
	}
	c.SetReadDeadline(time.Now().Add(60 * time.Second))
	next := int32(1)
	var readErr error
	for next <= slowReaderRequests {
		frame, err := fr.Next()
		if err != nil {
			readErr = err
			break
		}
		hdr, err := jute.ParseReplyHeader(frame[4:])
		if err != nil {
			readErr = err
			break
		}
		if hdr.Xid < 0 {
			continue // a notification or a ping
		}
		switch {
		case hdr.Xid != next:
			err = fmt.Errorf("reply xid %d, want %d", hdr.Xid, next)
		case hdr.Err != jute.ErrOK:
			err = fmt.Errorf("answered %v", hdr.Err)
		case len(frame) < slowReaderValue:
			err = fmt.Errorf("reply of %d bytes", len(frame))
		}
		h.record(fmt.Sprintf("getData/%d", next), err)
		next++
	}
	for ; next <= slowReaderRequests; next++ {
		h.record(fmt.Sprintf("getData/%d", next), fmt.Errorf("no reply: %w", readErr))
	}
	c.Close()
	<-wrote
	return nil
}

const steadySessions = 16

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

const steadyFor = 20 * time.Second

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
