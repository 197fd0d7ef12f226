//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/zkgate/zkgate/internal/zktest"
)

// run is one scenario: a fresh ensemble, zkgate in front (unless direct), the workload, the
// fault, and what the checks found.
type run struct {
	sc     scenario
	dir    string
	ens    *zktest.Ensemble
	gates  []*gate
	bin    zkgateBin
	direct bool
	log    func(format string, args ...any)

	hist    history
	hmu     sync.Mutex
	clients []*client
	acked   [][]string // per create client
	admin   *zk.Conn   // straight to the members: setup and checks
	detect  detector
}

// servers is what the workload's clients list in their connect string.
func (r *run) servers() []string {
	if r.direct {
		return r.ens.Addrs()
	}
	var out []string
	for _, g := range r.gates {
		out = append(out, g.listen)
	}
	return out
}

// gateArgs are the zkgate settings of every scenario: the defaults, and logs at info.
var gateArgs = []string{"--log-level", "info"}

func (r *run) start(ctx context.Context) error {
	ens, err := zktest.New(ensembleConfig(filepath.Join(r.dir, "ensemble")))
	if err != nil {
		return err
	}
	r.ens = ens
	if !r.direct {
		for i := 0; i < r.sc.gates; i++ {
			g, err := startGate(ctx, r.bin, r.dir, i+1, ens.Addrs(), gateArgs...)
			if err != nil {
				return err
			}
			r.gates = append(r.gates, g)
		}
	}
	if r.admin, _, err = zk.Connect(ens.Addrs(), sessionTimeout, zk.WithLogger(quiet{})); err != nil {
		return err
	}
	return r.setup(ctx)
}

// setup creates the znodes, then the sessions: idle ones with their ephemeral and watch,
// register and create clients.
func (r *run) setup(ctx context.Context) error {
	acl := zk.WorldACL(zk.PermAll)
	ops := []any{
		&zk.CreateRequest{Path: root, Acl: acl},
		&zk.CreateRequest{Path: seqDir, Acl: acl},
		&zk.CreateRequest{Path: root + "/w", Acl: acl},
		&zk.CreateRequest{Path: root + "/eph", Acl: acl},
	}
	for k := 0; k < registers; k++ {
		ops = append(ops, &zk.CreateRequest{Path: regPath(k), Data: []byte(initValue), Acl: acl})
	}
	for i := 0; i < r.sc.idle; i++ {
		ops = append(ops, &zk.CreateRequest{Path: watchPath(i), Data: []byte("0"), Acl: acl})
	}
	if err := waitUntil(ctx, 30*time.Second, "the admin session", func() bool { return r.admin.State() == zk.StateHasSession }); err != nil {
		return err
	}
	if _, err := r.admin.Multi(ops...); err != nil {
		return fmt.Errorf("creating the znodes: %w", err)
	}
	var mu sync.Mutex
	errs := make(chan error, r.sc.idle)
	sem := make(chan struct{}, 20)
	for i := 0; i < r.sc.idle; i++ {
		sem <- struct{}{}
		go func(i int) {
			defer func() { <-sem }()
			c, err := dial(ctx, r.servers(), classIdle, i)
			if err == nil {
				mu.Lock()
				r.clients = append(r.clients, c)
				mu.Unlock()
				_, err = c.conn.Create(ephemeralPath(i), nil, zk.FlagEphemeral, acl)
				if err == nil {
					_, _, _, err = c.conn.GetW(watchPath(i))
				}
			}
			errs <- err
		}(i)
	}
	for i := 0; i < r.sc.idle; i++ {
		if err := <-errs; err != nil {
			return fmt.Errorf("idle session: %w", err)
		}
	}
	for i := 0; i < 6; i++ {
		c, err := dial(ctx, r.servers(), classRegister, i)
		if err != nil {
			return err
		}
		r.clients = append(r.clients, c)
	}
	for i := 0; i < 3; i++ {
		c, err := dial(ctx, r.servers(), classCreate, i)
		if err != nil {
			return err
		}
		r.clients = append(r.clients, c)
	}
	r.acked = make([][]string, 3)
	return nil
}

// workload runs the register and create clients until ctx ends.
func (r *run) workload(ctx context.Context) *sync.WaitGroup {
	var wg sync.WaitGroup
	r.hist.start = time.Now()
	for _, c := range r.clients {
		switch c.class {
		case classRegister:
			wg.Go(func() { c.registerWorker(ctx, &r.hist, &r.hmu) })
		case classCreate:
			wg.Go(func() { c.createWorker(ctx, &r.acked[c.id]) })
		}
	}
	return &wg
}

// execute runs the whole scenario and its checks.
func (r *run) execute(ctx context.Context) (*result, error) {
	defer r.close()
	if err := r.start(ctx); err != nil {
		return nil, err
	}
	r.log("%s: %d sessions up; workload running", r.sc.name, len(r.clients))
	wctx, stopWork := context.WithCancel(ctx)
	wg := r.workload(wctx)
	began := time.Now()
	faultErr := sleepCtx(ctx, r.sc.before)
	if faultErr == nil {
		r.log("%s: fault: %s", r.sc.name, r.sc.desc)
		faultErr = r.sc.fault(ctx, r)
	}
	if faultErr == nil {
		faultErr = r.ens.WaitReady(ctxTimeout(ctx, 60*time.Second))
	}
	if faultErr == nil {
		// The rest of the scenario's time, and at least the settle time, on a healthy ensemble.
		faultErr = sleepCtx(ctx, max(r.sc.after, r.sc.length-time.Since(began)))
	}
	// The detection poll runs up to detectFor from the injection, with the workload on.
	r.detect.wg.Wait()
	stopWork()
	waited := make(chan struct{})
	go func() { wg.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(30 * time.Second):
		faultErr = errors.Join(faultErr, errors.New("a workload client was still waiting for a reply 30 s after the workload stopped"))
	}
	if faultErr != nil {
		return nil, fmt.Errorf("%s: %w\n%s", r.sc.name, faultErr, r.ens.Logs(20))
	}
	r.log("%s: fault over; checking", r.sc.name)
	return r.check(ctx)
}

func (r *run) close() {
	for _, c := range r.clients {
		c.conn.Close()
	}
	if r.admin != nil {
		r.admin.Close()
	}
	for _, g := range r.gates {
		g.stop()
	}
	if r.ens != nil {
		r.ens.Close()
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// ctxTimeout is a child of ctx that ends after d; its cancel runs when ctx ends.
func ctxTimeout(ctx context.Context, d time.Duration) context.Context {
	c, cancel := context.WithTimeout(ctx, d)
	context.AfterFunc(c, cancel)
	return c
}

func mkdir(dir string) error { return os.MkdirAll(dir, 0o755) }
