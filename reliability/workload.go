//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"
)

// Client classes, as the report counts them.
const (
	classIdle     = "idle"     // holds an ephemeral and a data watch, sends nothing else
	classRegister = "register" // read / write / compare-and-set on the registers
	classCreate   = "create"   // creates sequential znodes
)

const (
	sessionTimeout = 15 * time.Second
	registers      = 3
	root           = "/rel"
)

func regPath(k int) string       { return fmt.Sprintf("%s/r%d", root, k) }
func watchPath(i int) string     { return fmt.Sprintf("%s/w/%d", root, i) }
func ephemeralPath(i int) string { return fmt.Sprintf("%s/eph/%d", root, i) }

const seqDir = root + "/seq"

// client is one ZooKeeper session of the workload, and what it saw.
type client struct {
	class string
	id    int
	conn  *zk.Conn

	mu          sync.Mutex
	first       int64 // session id at setup
	connected   bool
	disconnects int         // times the session lost its connection
	disconnAt   []time.Time // when, each time
	expired     int         // StateExpired events
	fired       map[string]int
	failedLoss  int // operations failed with connection loss (or the client not connected)
	failedRej   int // operations answered with the reject code
	failedOther []string
	lastOK      time.Time
	longest     time.Duration // longest time between two served operations
}

// dial opens a session and waits for it.
func dial(ctx context.Context, servers []string, class string, id int) (*client, error) {
	c := &client{class: class, id: id, fired: map[string]int{}}
	conn, _, err := zk.Connect(servers, sessionTimeout, zk.WithLogger(quiet{}), zk.WithEventCallback(c.event))
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.conn = conn
	c.mu.Unlock()
	if err := waitUntil(ctx, 30*time.Second, fmt.Sprintf("%s client %d connected", class, id), c.isConnected); err != nil {
		conn.Close()
		return nil, err
	}
	c.mu.Lock()
	c.first, c.lastOK = conn.SessionID(), time.Now()
	c.mu.Unlock()
	return c, nil
}

type quiet struct{}

func (quiet) Printf(string, ...any) {}

// event runs on go-zookeeper's goroutine for every session event and watch notification.
func (c *client) event(ev zk.Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ev.Type != zk.EventSession {
		c.fired[ev.Path]++
		return
	}
	switch ev.State {
	case zk.StateHasSession:
		c.connected = true
	case zk.StateDisconnected:
		if c.connected {
			c.disconnects++
			c.disconnAt = append(c.disconnAt, time.Now())
		}
		c.connected = false
	case zk.StateExpired:
		c.expired++
		c.connected = false
	}
}

// disconnectedSince is the client's first disconnect at or after t.
func (c *client) disconnectedSince(t time.Time) (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, at := range c.disconnAt {
		if !at.Before(t) {
			return at, true
		}
	}
	return time.Time{}, false
}

func (c *client) isConnected() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.connected
}

// outcome classifies an error. Only BADVERSION, NONODE and NODEEXISTS are definite; anything
// else may have taken effect.
type outcome uint8

const (
	outOK outcome = iota
	outFailed
	outUnknown
)

// result records one operation's end: the served gap, and the failure class.
func (c *client) result(err error) outcome {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case err == nil:
	case errors.Is(err, zk.ErrBadVersion), errors.Is(err, zk.ErrNoNode), errors.Is(err, zk.ErrNodeExists):
	case isReject(err):
		c.failedRej++
		return outUnknown
	case isLoss(err):
		c.failedLoss++
		return outUnknown
	default:
		if len(c.failedOther) < 5 {
			c.failedOther = append(c.failedOther, err.Error())
		}
		return outUnknown
	}
	if gap := now.Sub(c.lastOK); gap > c.longest {
		c.longest = gap
	}
	c.lastOK = now
	if err != nil {
		return outFailed
	}
	return outOK
}

// isLoss: the connection-loss errors, and CONNECTIONLOSS (-4) as a reply, which zkgate
// sends for a write in flight at a member loss (relay.unsafe_in_flight connection_loss) and
// go-zookeeper, which does not name that code, reports as "unknown error: -4".
func isLoss(err error) bool {
	if strings.HasSuffix(err.Error(), "unknown error: -4") {
		return true
	}
	for _, e := range []error{zk.ErrConnectionClosed, zk.ErrNoServer, zk.ErrClosing, zk.ErrSessionExpired, zk.ErrSessionMoved} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// isReject: zkgate's reject codes (operation timeout -7, throttled -127), which
// go-zookeeper does not name.
func isReject(err error) bool {
	s := err.Error()
	return strings.HasSuffix(s, ": -7") || strings.HasSuffix(s, ": -127")
}

// registerWorker reads, writes and compare-and-sets the registers until ctx ends.
func (c *client) registerWorker(ctx context.Context, h *history, hmu *sync.Mutex) {
	rng := rand.New(rand.NewPCG(uint64(c.id), 7))
	versions := make([]int32, registers) // the last version this client read of each
	seq := 0
	for ctx.Err() == nil {
		k := rng.IntN(registers)
		in := regInput{key: k}
		switch r := rng.IntN(10); {
		case r < 4:
			in.kind = opRead
		case r < 7:
			in.kind = opWrite
		default:
			in.kind, in.version = opCAS, versions[k]
		}
		if in.kind != opRead {
			seq++
			in.value = fmt.Sprintf("c%d-%d", c.id, seq)
		}
		hmu.Lock()
		call := h.now()
		hmu.Unlock()
		out, err := c.do(in)
		res := c.result(err)
		hmu.Lock()
		ret := h.now()
		switch res {
		case outUnknown:
			out = regOutput{unknown: true}
		case outFailed:
			out = regOutput{failed: true}
		}
		h.add(c.id, in, call, out, ret)
		hmu.Unlock()
		if res == outOK && in.kind == opRead {
			versions[k] = out.version
		}
		pause(ctx, res)
	}
}

func (c *client) do(in regInput) (regOutput, error) {
	p := regPath(in.key)
	switch in.kind {
	case opRead:
		// A barrier through the leader, then the read: the member has applied everything
		// committed before the barrier by the time it answers it.
		if _, err := c.conn.Multi(&zk.CheckVersionRequest{Path: p, Version: -1}); err != nil {
			return regOutput{}, err
		}
		data, st, err := c.conn.Get(p)
		if err != nil {
			return regOutput{}, err
		}
		return regOutput{value: string(data), version: st.Version}, nil
	case opWrite:
		st, err := c.conn.Set(p, []byte(in.value), -1)
		if err != nil {
			return regOutput{}, err
		}
		return regOutput{version: st.Version}, nil
	}
	st, err := c.conn.Set(p, []byte(in.value), in.version)
	if err != nil {
		return regOutput{}, err
	}
	return regOutput{version: st.Version}, nil
}

// createWorker creates sequential znodes until ctx ends, keeping every acknowledged path.
func (c *client) createWorker(ctx context.Context, acked *[]string) {
	for n := 0; ctx.Err() == nil; n++ {
		path, err := c.conn.Create(seqDir+"/n-", []byte(fmt.Sprintf("c%d-%d", c.id, n)), zk.FlagSequence, zk.WorldACL(zk.PermAll))
		res := c.result(err)
		if res == outOK {
			*acked = append(*acked, path)
		}
		pause(ctx, res)
	}
}

// pause paces a worker: briefly after a served operation, longer after a failure, so that a
// client does not spin against an ensemble that cannot serve it.
func pause(ctx context.Context, res outcome) {
	d := 5 * time.Millisecond
	if res == outUnknown {
		d = 100 * time.Millisecond
	}
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// snapshot is a copy of what a client saw, for the checks.
type snapshot struct {
	class                 string
	id                    int
	first, current        int64
	connected             bool
	disconnects, expired  int
	failedLoss, failedRej int
	failedOther           []string
	fired                 map[string]int
	longest               time.Duration
}

func (c *client) snapshot() snapshot {
	c.mu.Lock()
	defer c.mu.Unlock()
	fired := make(map[string]int, len(c.fired))
	for k, v := range c.fired {
		fired[k] = v
	}
	return snapshot{class: c.class, id: c.id, first: c.first, current: c.conn.SessionID(), connected: c.connected,
		disconnects: c.disconnects, expired: c.expired, failedLoss: c.failedLoss, failedRej: c.failedRej,
		failedOther: append([]string(nil), c.failedOther...), fired: fired, longest: c.longest}
}
