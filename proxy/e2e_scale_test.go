package proxy_test

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/zkgate/zkgate/internal/zktest"
	"github.com/zkgate/zkgate/jute"
	"github.com/zkgate/zkgate/proxy"
)

// watcher is a raw session that pipelines requests, pings itself alive and counts the
// notifications it gets by path and type.
type watcher struct {
	t       *testing.T
	conn    net.Conn
	id      int64
	wmu     sync.Mutex
	xid     atomic.Int32
	replies chan jute.ReplyHeader
	mu      sync.Mutex
	fired   map[string]int // "type path"
	done    chan struct{}
}

func dialWatcher(t *testing.T, addr string) *watcher {
	t.Helper()
	r := dialRaw(t, addr)
	w := &watcher{t: t, conn: r.conn, id: r.id, replies: make(chan jute.ReplyHeader, 1<<14),
		fired: map[string]int{}, done: make(chan struct{})}
	go w.read(r.fr)
	go w.ping()
	t.Cleanup(func() { r.conn.Close(); <-w.done })
	return w
}

func (w *watcher) read(fr *jute.FrameReader) {
	defer close(w.done)
	defer close(w.replies)
	for {
		frame, err := fr.Next()
		if err != nil {
			return
		}
		h, err := jute.ParseReplyHeader(frame[4:])
		if err != nil {
			return
		}
		switch h.Xid {
		case jute.XidNotification:
			var ev jute.WatcherEvent
			if jute.Decode(frame[4+jute.ReplyHeaderLen:], &ev) == nil {
				w.mu.Lock()
				w.fired[fmt.Sprintf("%d %s", ev.Type, ev.Path)]++
				w.mu.Unlock()
			}
		case jute.XidPing:
		default:
			w.replies <- h
		}
	}
}

func (w *watcher) ping() {
	ping := jute.AppendFrame(nil, &jute.RequestHeader{Xid: jute.XidPing, Type: jute.OpPing})
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-w.done:
			return
		case <-tick.C:
			w.write(ping)
		}
	}
}

func (w *watcher) write(b []byte) {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	w.conn.Write(b)
}

// call sends requests built by reqs in one write and waits for all their replies.
func (w *watcher) call(reqs []func(xid int32) []byte) []jute.ReplyHeader {
	w.t.Helper()
	var buf []byte
	for _, req := range reqs {
		buf = append(buf, req(w.xid.Add(1))...)
	}
	w.write(buf)
	var out []jute.ReplyHeader
	deadline := time.After(30 * time.Second)
	for len(out) < len(reqs) {
		select {
		case h, ok := <-w.replies:
			if !ok {
				w.t.Fatalf("session closed after %d of %d replies", len(out), len(reqs))
			}
			out = append(out, h)
		case <-deadline:
			w.t.Fatalf("%d of %d replies within 30s", len(out), len(reqs))
		}
	}
	return out
}

func request(op jute.OpCode, body jute.Record) func(int32) []byte {
	return func(xid int32) []byte { return jute.AppendFrame(nil, &jute.RequestHeader{Xid: xid, Type: op}, body) }
}

// A session holding 10,000 standard watches of the three kinds a reconnect replays (data,
// exist, child) moves; some paths change while its member is gone, the rest after the
// move. Every watch fires exactly once, and the replay went out in SetWatches batches
// (of at most 128 KiB each: TestWatchBatches). Persistent watches, which the server
// re-registers with no catch-up, are TestRelayMovePersistentCatchUp's.
func TestMoveKeepsTenThousandWatches(t *testing.T) {
	ens := zktest.Start(t, zktest.Config{Members: 3})
	g := startGate(t, ens, proxy.Config{Policy: proxy.LeastConnections}) // the paused member is a follower
	leader, err := ens.Leader()
	if err != nil {
		t.Fatal(err)
	}
	ctl, _ := connect(t, leader.ClientAddr)
	const n = 3334
	long := strings.Repeat("w", 48) // long paths: the replay needs several batches
	path := func(kind string, i int) string { return fmt.Sprintf("/w/%s/%s%04d", kind, long, i) }
	acl := zk.WorldACL(zk.PermAll)
	var ops []any
	for _, p := range []string{"/w", "/w/d", "/w/e", "/w/c"} {
		ops = append(ops, &zk.CreateRequest{Path: p, Acl: acl})
	}
	for i := range n {
		for _, kind := range []string{"d", "c"} {
			ops = append(ops, &zk.CreateRequest{Path: path(kind, i), Acl: acl})
		}
	}
	multi(t, ctl, ops)

	w := dialWatcher(t, g.addr)
	var reqs []func(int32) []byte
	for i := range n {
		reqs = append(reqs,
			request(jute.OpGetData, &jute.GetDataRequest{Path: path("d", i), Watch: true}),
			request(jute.OpExists, &jute.ExistsRequest{Path: path("e", i), Watch: true}),
			request(jute.OpGetChildren, &jute.GetChildrenRequest{Path: path("c", i), Watch: true}))
	}
	for len(reqs) > 0 { // in rounds, as a client would: 10,000 at once is a burst the breaker sees
		k := min(len(reqs), 250)
		for _, h := range w.call(reqs[:k]) {
			if h.Err != jute.ErrOK && h.Err != jute.ErrNoNode {
				t.Fatalf("registering watches: %v", h.Err)
			}
		}
		reqs = reqs[k:]
	}
	from := sessionMember(g, w.id)
	victim := memberAt(t, ens, from)
	if err := victim.Pause(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { victim.Resume() })
	// Changed while the session has no member: fired by the replay.
	const early = 100
	ops = ops[:0]
	for i := range early {
		ops = append(ops, &zk.SetDataRequest{Path: path("d", i), Data: []byte("x"), Version: -1},
			&zk.CreateRequest{Path: path("e", i), Acl: acl}, &zk.CreateRequest{Path: path("c", i) + "/x", Acl: acl})
	}
	multi(t, ctl, ops)
	zktest.WaitFor(t, 15*time.Second, "the session on another member", func() bool {
		m := sessionMember(g, w.id)
		return m != "" && m != from
	})
	// A reply on the session means the member has the replay (it answers in order).
	w.call([]func(int32) []byte{request(jute.OpSync, &jute.SyncRequest{Path: "/w"})})
	// Changed after the move.
	ops = ops[:0]
	for i := range n {
		if i >= early {
			ops = append(ops, &zk.SetDataRequest{Path: path("d", i), Data: []byte("x"), Version: -1},
				&zk.CreateRequest{Path: path("e", i), Acl: acl}, &zk.CreateRequest{Path: path("c", i) + "/x", Acl: acl})
		}
	}
	multi(t, ctl, ops)
	want := map[string]bool{}
	for i := range n {
		want[fmt.Sprintf("%d %s", jute.EventNodeDataChanged, path("d", i))] = true
		want[fmt.Sprintf("%d %s", jute.EventNodeCreated, path("e", i))] = true
		want[fmt.Sprintf("%d %s", jute.EventNodeChildrenChanged, path("c", i))] = true
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		w.mu.Lock()
		got := len(w.fired)
		missing := map[string]int{} // by event type and kind of path
		for k := range want {
			if w.fired[k] == 0 {
				f := strings.Fields(k)
				missing[f[0]+" "+strings.Split(f[1], "/")[2]]++
			}
		}
		w.mu.Unlock()
		if got >= len(want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d watches fired within 30s; missing by event type and path kind: %v", got, len(want), missing)
		}
		time.Sleep(50 * time.Millisecond)
	}
	w.call([]func(int32) []byte{request(jute.OpSync, &jute.SyncRequest{Path: "/w"})}) // anything still on its way comes first
	w.mu.Lock()
	defer w.mu.Unlock()
	for k, c := range w.fired {
		if !want[k] {
			t.Errorf("unexpected event %s (%d times)", k, c)
		} else if c != 1 {
			t.Errorf("event %s fired %d times", k, c)
		}
	}
	if len(w.fired) != len(want) {
		t.Errorf("%d of %d watches fired", len(w.fired), len(want))
	}
	line := g.waitLog(t, 5*time.Second, `"session moved"`, fmt.Sprintf("0x%x", w.id))
	if !strings.Contains(line, `"watch_batches":`) || strings.Contains(line, `"watch_batches":1,`) {
		t.Errorf("replay not split in batches: %s", line)
	}
	t.Logf("%s", line)
}

// multi runs ops in transactions of up to 500.
func multi(t *testing.T, c *zk.Conn, ops []any) {
	t.Helper()
	for len(ops) > 0 {
		k := min(len(ops), 500)
		if _, err := c.Multi(ops[:k]...); err != nil {
			t.Fatal(err)
		}
		ops = ops[k:]
	}
}

// 1,000 sessions on a member that is killed all move; the time from the kill until the
// last of them answers again is logged (the target is 1 s).
func TestMoveThousandSessions(t *testing.T) {
	// tickTime 500ms: sessions of 10 s, so a move may take 3.3 s on a machine that the
	// race detector and a thousand sessions' goroutines keep busy.
	ens := zktest.Start(t, zktest.Config{Members: 3, TickTime: 500 * time.Millisecond})
	leader, err := ens.Leader()
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, m := range ens.Members() {
		if m != leader {
			order = append([]string{m.ClientAddr}, order...)
		}
	}
	order = append(order, leader.ClientAddr)
	g := startGate(t, ens, proxy.Config{Policy: proxy.Any}, withMemberOrder(order))
	zktest.WaitFor(t, 10*time.Second, "zkgate sees every member serving", func() bool {
		return len(proxy.Route(proxy.RouteInput{View: g.mon.View(), Policy: proxy.Any})) == 3
	})
	const n = 1000
	sessions := make([]*watcher, n)
	var wg sync.WaitGroup
	var next atomic.Int32
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				// A member that is slow to accept (a loaded machine) sends a session on to
				// the next member in order: dial again until it is on the first.
				for range 5 {
					sessions[i] = dialWatcher(t, g.addr)
					if sessionMember(g, sessions[i].id) == order[0] {
						break
					}
					sessions[i].conn.Close()
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	for _, s := range sessions {
		if m := sessionMember(g, s.id); m != order[0] {
			t.Fatalf("session 0x%x on %s, want all on %s", s.id, m, order[0])
		}
	}
	victim := memberAt(t, ens, order[0])
	start := time.Now()
	victim.Kill()
	var last atomic.Int64
	for _, s := range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h := s.call([]func(int32) []byte{request(jute.OpExists, &jute.ExistsRequest{Path: "/"})})
			if h[0].Err != jute.ErrOK {
				t.Errorf("session 0x%x: %v", s.id, h[0].Err)
			}
			took := int64(time.Since(start))
			for {
				old := last.Load()
				if took <= old || last.CompareAndSwap(old, took) {
					break
				}
			}
		}()
	}
	wg.Wait()
	moved := 0
	for _, s := range sessions {
		if m := sessionMember(g, s.id); m != "" && m != order[0] {
			moved++
		}
	}
	t.Logf("%d sessions: the last answered again %v after the kill; %d moved", n, time.Duration(last.Load()), moved)
	if moved != n {
		t.Errorf("%d of %d sessions moved", moved, n)
	}
}
