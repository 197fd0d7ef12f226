//go:build linux

package main

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/go-zookeeper/zk"
)

// result is what one scenario's checks found.
type result struct {
	name, desc string

	linear     porcupine.CheckResult
	linearFile string // porcupine's visualization, when not ok
	ops        int    // register operations in the history (unknown reads left out)
	unknownOps int    // writes and cas whose outcome is unknown
	resolved   resolution

	acked, lostCreates        int
	ephemerals, lostEphemeral int
	watches, missed, dup      int
	expired                   int

	disconnects map[string]int // by class
	failedLoss  map[string]int
	failedRej   map[string]int
	other       []string // unexpected errors, a few
	longest     time.Duration

	moved, moveClosed uint64 // zkgate's counts, all gates
	breakerOpened     int    // times a breaker opened
	stalled           int    // requests past the slow-call threshold (slow calls)
	ejections         int    // members ejected

	detection detection

	problems []string // every check that failed, in words
}

func (res *result) ok() bool { return len(res.problems) == 0 }

func (res *result) fail(format string, args ...any) {
	res.problems = append(res.problems, fmt.Sprintf(format, args...))
}

// check runs every check on a finished scenario. The watches are checked first: their
// changes happen now, after the fault, on a healthy ensemble.
func (r *run) check(ctx context.Context) (*result, error) {
	res := &result{name: r.sc.name, desc: r.sc.desc, disconnects: map[string]int{},
		failedLoss: map[string]int{}, failedRej: map[string]int{}, detection: r.detection()}
	if err := waitUntil(ctx, 60*time.Second, "every session connected again", func() bool {
		for _, c := range r.clients {
			if !c.isConnected() {
				return false
			}
		}
		return true
	}); err != nil {
		res.fail("%v", err)
	}
	if err := r.checkWatches(ctx, res); err != nil {
		return nil, err
	}
	if err := r.checkZnodes(res); err != nil {
		return nil, err
	}
	for _, c := range r.clients {
		s := c.snapshot()
		res.disconnects[s.class] += s.disconnects
		res.failedLoss[s.class] += s.failedLoss
		res.failedRej[s.class] += s.failedRej
		if len(res.other) < 5 {
			res.other = append(res.other, s.failedOther...)
		}
		if s.expired > 0 || s.current != s.first {
			res.expired++
		}
		if s.class != classIdle {
			res.longest = max(res.longest, s.longest)
		}
	}
	if res.expired > 0 {
		res.fail("%d sessions expired or changed id", res.expired)
	}
	if len(res.other) > 0 {
		res.fail("unexpected errors: %v", res.other)
	}

	ops, err := r.finalReads()
	if err != nil {
		return nil, err
	}
	res.ops = len(ops)
	final := map[int]int32{}
	for _, op := range ops {
		if op.Output.(regOutput).unknown {
			res.unknownOps++
		}
		if op.ClientId == finalClient {
			final[op.Input.(regInput).key] = op.Output.(regOutput).version
		}
	}
	ops, res.resolved = resolve(ops, final)
	res.linear, res.linearFile = linearizable(ops, 5*time.Minute, r.dir)
	if res.linear != porcupine.Ok {
		res.fail("register history: %s (%s)", res.linear, res.linearFile)
	}

	for _, g := range r.gates {
		if g.cmd == nil {
			continue
		}
		st, err := g.status()
		if err != nil {
			return nil, fmt.Errorf("zkgate status: %w", err)
		}
		e := st.Ensembles[0]
		res.moved += e.SessionMoves
		res.moveClosed += e.SessionMovesClosed
		opened, err := g.metric("zkgate_breaker_transitions_total", `to="open"`)
		if err != nil {
			return nil, err
		}
		stalled, err := g.metric("zkgate_stalled_requests_total")
		if err != nil {
			return nil, err
		}
		res.breakerOpened += int(opened)
		res.stalled += int(stalled)
	}
	for _, g := range r.gates {
		n, err := g.logCount(`"message":"member ejected"`)
		if err != nil {
			return nil, err
		}
		res.ejections += n
	}
	return res, nil
}

// checkWatches changes every idle session's watched znode twice. Each watch must fire once:
// after the first change, and not again. A barrier on each session (a multi through the
// leader) orders the count after every notification the session's member sent.
func (r *run) checkWatches(ctx context.Context, res *result) error {
	var idle []*client
	for _, c := range r.clients {
		if c.class == classIdle {
			idle = append(idle, c)
		}
	}
	res.watches = len(idle)
	change := func(round int) error {
		for _, c := range idle {
			if _, err := r.admin.Set(watchPath(c.id), []byte(fmt.Sprint(round)), -1); err != nil {
				return fmt.Errorf("changing %s: %w", watchPath(c.id), err)
			}
		}
		return nil
	}
	fired := func(c *client) int {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.fired[watchPath(c.id)]
	}
	barrier := func() {
		for _, c := range idle {
			c.conn.Multi(&zk.CheckVersionRequest{Path: root, Version: -1})
		}
	}
	if err := change(1); err != nil {
		return err
	}
	waitUntil(ctx, 30*time.Second, "every watch fired", func() bool {
		for _, c := range idle {
			if fired(c) == 0 {
				return false
			}
		}
		return true
	})
	barrier()
	if err := change(2); err != nil {
		return err
	}
	barrier()
	for _, c := range idle {
		switch n := fired(c); {
		case n == 0:
			res.missed++
		case n > 1:
			res.dup++
		}
	}
	if res.missed > 0 || res.dup > 0 {
		res.fail("watches: %d missed, %d fired more than once", res.missed, res.dup)
	}
	return nil
}

// checkZnodes looks, straight at the members, for every acknowledged create and for every
// idle session's ephemeral, owned by that session.
func (r *run) checkZnodes(res *result) error {
	// The admin session's member has applied every write acknowledged before this barrier.
	if _, err := r.admin.Multi(&zk.CheckVersionRequest{Path: root, Version: -1}); err != nil {
		return fmt.Errorf("barrier: %w", err)
	}
	children, _, err := r.admin.Children(seqDir)
	if err != nil {
		return fmt.Errorf("listing %s: %w", seqDir, err)
	}
	have := make(map[string]bool, len(children))
	for _, ch := range children {
		have[seqDir+"/"+ch] = true
	}
	for _, paths := range r.acked {
		for _, p := range paths {
			res.acked++
			if !have[p] {
				res.lostCreates++
			}
		}
	}
	if res.lostCreates > 0 {
		res.fail("%d acknowledged creates missing", res.lostCreates)
	}
	for _, c := range r.clients {
		if c.class != classIdle {
			continue
		}
		res.ephemerals++
		ok, st, err := r.admin.Exists(ephemeralPath(c.id))
		if err != nil {
			return fmt.Errorf("exists %s: %w", ephemeralPath(c.id), err)
		}
		if !ok || st.EphemeralOwner != c.conn.SessionID() {
			res.lostEphemeral++
		}
	}
	if res.lostEphemeral > 0 {
		res.fail("%d ephemerals missing or owned by another session", res.lostEphemeral)
	}
	return nil
}

// finalClient is the client id of the reads made after the workload stopped.
const finalClient = 1000

// finalReads returns the workload's history and, after it, each register read straight at
// the members behind a barrier: the versions every write is accounted against.
func (r *run) finalReads() ([]porcupine.Operation, error) {
	r.hmu.Lock()
	defer r.hmu.Unlock()
	for k := 0; k < registers; k++ {
		call := r.hist.now()
		if _, err := r.admin.Multi(&zk.CheckVersionRequest{Path: regPath(k), Version: -1}); err != nil {
			return nil, fmt.Errorf("barrier: %w", err)
		}
		data, st, err := r.admin.Get(regPath(k))
		if err != nil {
			return nil, fmt.Errorf("final read of %s: %w", regPath(k), err)
		}
		r.hist.add(finalClient, regInput{key: k, kind: opRead}, call, regOutput{value: string(data), version: st.Version}, r.hist.now())
	}
	return slices.Clone(r.hist.ops), nil
}
