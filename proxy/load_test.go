package proxy_test

import (
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/zkgate/zkgate/breaker"
	"github.com/zkgate/zkgate/internal/zktest"
	"github.com/zkgate/zkgate/jute"
)

// rawSession is a ZooKeeper session spoken in raw jute, for pipelining and for checking
// the order and codes of replies byte by byte.
type rawSession struct {
	t    *testing.T
	conn net.Conn
	fr   *jute.FrameReader
	xid  int32
	id   int64
}

func dialRaw(t *testing.T, addr string) *rawSession {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write(jute.AppendFrame(nil, &jute.ConnectRequest{TimeOut: 10000, Passwd: make([]byte, 16)})); err != nil {
		t.Fatal(err)
	}
	fr := jute.NewFrameReader(conn, 0)
	frame, err := fr.Next()
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	var resp jute.ConnectResponse
	if err := jute.Decode(frame[4:], &resp); err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Time{})
	return &rawSession{t: t, conn: conn, fr: fr, id: resp.SessionID}
}

// send writes requests in one go (pipelined) and returns their xids.
func (r *rawSession) send(reqs ...func(xid int32) []byte) []int32 {
	var buf []byte
	var xids []int32
	for _, req := range reqs {
		r.xid++
		xids = append(xids, r.xid)
		buf = append(buf, req(r.xid)...)
	}
	if _, err := r.conn.Write(buf); err != nil {
		r.t.Fatal(err)
	}
	return xids
}

func getData(path string) func(int32) []byte {
	return func(xid int32) []byte {
		return jute.AppendFrame(nil, &jute.RequestHeader{Xid: xid, Type: jute.OpGetData}, &jute.GetDataRequest{Path: path})
	}
}

func setData(path string, data []byte) func(int32) []byte {
	return func(xid int32) []byte {
		return jute.AppendFrame(nil, &jute.RequestHeader{Xid: xid, Type: jute.OpSetData}, &jute.SetDataRequest{Path: path, Data: data, Version: -1})
	}
}

// replies reads reply headers (skipping notifications) until n arrived or the connection
// ends.
func (r *rawSession) replies(n int, within time.Duration) ([]jute.ReplyHeader, error) {
	r.conn.SetReadDeadline(time.Now().Add(within))
	var out []jute.ReplyHeader
	for len(out) < n {
		frame, err := r.fr.Next()
		if err != nil {
			return out, err
		}
		h, err := jute.ParseReplyHeader(frame[4:])
		if err != nil {
			return out, err
		}
		if h.Xid != jute.XidNotification {
			out = append(out, h)
		}
	}
	return out, nil
}

// load is n go-zookeeper sessions, each writing its own node in a loop.
type load struct {
	conns    []*zk.Conn
	ids      []int64
	expired  atomic.Int32
	ok, fail atomic.Int64
	mu       sync.Mutex
	rejected []timed // requests answered with the reject code
	stop     chan struct{}
	wg       sync.WaitGroup
}

func startLoad(t *testing.T, addr string, n int, timeout time.Duration) *load {
	return startLoadMode(t, addr, n, timeout, false)
}

// startLoadMode is startLoad, closed loop (one write at a time per session) or open
// loop (openLoop: a write every 10 ms per session, not waiting for the last).
func startLoadMode(t *testing.T, addr string, n int, timeout time.Duration, openLoop bool) *load {
	t.Helper()
	l := &load{stop: make(chan struct{})}
	for i := range n {
		c, events, err := zk.Connect([]string{addr}, timeout, zk.WithLogger(quietLogger{t}))
		if err != nil {
			t.Fatal(err)
		}
		waitEvent(t, events, zk.StateHasSession, 15*time.Second)
		go func() {
			for e := range events {
				if e.State == zk.StateExpired {
					l.expired.Add(1)
				}
			}
		}()
		path := fmt.Sprintf("/load-%d-%d", time.Now().UnixNano(), i)
		// An ensemble that has just formed may still hold an election; a test's breaker
		// (a 200 ms slow-call threshold) can open on it while the load starts. zkgate
		// refuses with the reject code without sending: the setup waits that out.
		for deadline := time.Now().Add(15 * time.Second); ; {
			_, err := c.Create(path, nil, 0, zk.WorldACL(zk.PermAll))
			if err == nil {
				break
			}
			if !strings.Contains(fmt.Sprint(err), "-7") || time.Now().After(deadline) {
				t.Fatal(err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		l.conns, l.ids = append(l.conns, c), append(l.ids, c.SessionID())
		write := func() {
			start := time.Now()
			_, err := c.Set(path, []byte("x"), -1)
			switch {
			case err == nil:
				l.ok.Add(1)
			case strings.Contains(fmt.Sprint(err), "-7"):
				l.fail.Add(1)
				l.mu.Lock()
				l.rejected = append(l.rejected, timed{start, time.Since(start)})
				l.mu.Unlock()
			default:
				l.fail.Add(1)
				time.Sleep(10 * time.Millisecond) // connection loss: let the client reconnect
			}
		}
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			if openLoop {
				// A write every 10 ms whether or not the last ones came back (up to 100 in
				// flight), as many client threads sharing a session would send.
				sem := make(chan struct{}, 100)
				tick := time.NewTicker(10 * time.Millisecond)
				defer tick.Stop()
				for {
					select {
					case <-l.stop:
						for range cap(sem) {
							sem <- struct{}{}
						}
						return
					case <-tick.C:
						select {
						case sem <- struct{}{}:
							go func() { defer func() { <-sem }(); write() }()
						default:
						}
					}
				}
			}
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				write()
			}
		}()
	}
	t.Cleanup(l.close)
	return l
}

func (l *load) close() {
	select {
	case <-l.stop:
		return
	default:
	}
	close(l.stop)
	for _, c := range l.conns {
		c.Close()
	}
	l.wg.Wait()
}

type timed struct {
	start   time.Time
	latency time.Duration
}

// rejectStats returns how many requests sent after since got the reject code, and their
// p99 latency.
func (l *load) rejectStats(since time.Time) (int, time.Duration) {
	l.mu.Lock()
	var s []time.Duration
	for _, r := range l.rejected {
		if !r.start.Before(since) {
			s = append(s, r.latency)
		}
	}
	l.mu.Unlock()
	if len(s) == 0 {
		return 0, 0
	}
	slices.Sort(s)
	return len(s), s[len(s)*99/100]
}

// waitState waits for the breaker to reach state and returns how long it took.
func waitState(t *testing.T, g *gate, state breaker.State, d time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	// The state changes before its transition is recorded (failsafe-go calls the listener
	// after): wait for both, as the status page shows them.
	zktest.WaitFor(t, d, "breaker "+state.String(), func() bool {
		h := g.srv.Breaker().History()
		return g.srv.Breaker().State() == state && len(h) > 0 && h[len(h)-1].To == state
	})
	return time.Since(start)
}

func transitions(g *gate) string {
	var path []string
	for _, tr := range g.srv.Breaker().History() {
		path = append(path, tr.ToName)
	}
	return strings.Join(path, ",")
}

// Quorum loss under load: the breaker opens, new clients are closed at once, requests in
// flight are answered with the reject code in order, and after the members come back it
// goes through half-open to closed with the sessions intact.
