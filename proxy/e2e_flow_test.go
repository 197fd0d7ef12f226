package proxy_test

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/zkgate/zkgate/breaker"
	"github.com/zkgate/zkgate/internal/zktest"
	"github.com/zkgate/zkgate/jute"
	"github.com/zkgate/zkgate/proxy"
)

// TestClientNotReadingIsHeldBack: a client pipelines requests for 40 MiB of replies and
// does not read them. zkgate stops reading that session's member connection once the
// replies back up (they wait in socket buffers and in the member, not in zkgate's
// memory), another session on the same relay loop keeps working meanwhile, and when the
// client reads again every reply arrives whole and in order. The wait counts against
// neither the breaker nor the member.
func TestClientNotReadingIsHeldBack(t *testing.T) {
	ens := zktest.Start(t, zktest.Config{Members: 1})
	g := startGate(t, ens, proxy.Config{Loops: 1}) // one loop: both sessions share it
	c, _ := connect(t, g.addr)
	value := bytes.Repeat([]byte("v"), 512<<10)
	if _, err := c.Create("/big", value, 0, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}

	r := dialRaw(t, g.addr)
	const n = 80
	reqs := make([]func(int32) []byte, n)
	for i := range reqs {
		reqs[i] = getData("/big")
	}
	xids := r.send(reqs...)

	// The other session is served while r's replies are stuck.
	for range 20 {
		if got, _, err := c.Get("/big"); err != nil || len(got) != len(value) {
			t.Fatalf("other session: %d bytes, %v", len(got), err)
		}
	}

	// Wait for zkgate to stop relaying to r: its byte count holds still.
	var info proxy.SessionInfo
	last, still := uint64(0), 0
	zktest.WaitFor(t, 30*time.Second, "relaying to the stalled client to stop", func() bool {
		for _, s := range g.srv.Sessions() {
			if s.ID == r.id {
				info = s
			}
		}
		if info.BytesOut == last {
			still++
		} else {
			last, still = info.BytesOut, 0
		}
		time.Sleep(50 * time.Millisecond)
		return still >= 10
	})
	t.Logf("client not reading: %.1f of %d MiB relayed to it, %d of %d requests still at the member",
		float64(info.BytesOut)/(1<<20), n/2, info.InFlight, n)
	if info.InFlight == 0 {
		t.Fatalf("zkgate read all %d replies for a client that reads none (%.1f MiB relayed): nothing held it back", n, float64(info.BytesOut)/(1<<20))
	}

	r.conn.SetReadDeadline(time.Now().Add(60 * time.Second))
	for i, xid := range xids {
		frame, err := r.fr.Next()
		if err != nil {
			t.Fatalf("reply %d: %v", i, err)
		}
		h, err := jute.ParseReplyHeader(frame[4:])
		if err != nil || h.Xid != xid || h.Err != jute.ErrOK {
			t.Fatalf("reply %d: %+v %v, want xid %d", i, h, err, xid)
		}
		var resp jute.GetDataResponse
		if err := jute.Decode(frame[4+jute.ReplyHeaderLen:], &resp); err != nil || !bytes.Equal(resp.Data, value) {
			t.Fatalf("reply %d: %d bytes, %v", i, len(resp.Data), err)
		}
	}
	// The wait was the client's: it must not count as a slow member.
	if st := g.srv.Breaker().State(); st != breaker.Closed {
		t.Fatalf("breaker %v after a client that did not read its replies", st)
	}
}

// TestFramesSplitAcrossReads: the relay loop reassembles frames that arrive in pieces (a
// request written a few bytes at a time, a 1 MB setData in 10 KB writes), and a bad frame
// length after the handshake closes that session alone, with a log line that says why.
func TestFramesSplitAcrossReads(t *testing.T) {
	ens := zktest.Require(t, shared)
	g := startGate(t, ens, proxy.Config{})
	good, _ := connect(t, g.addr)
	r := dialRaw(t, g.addr)
	r.conn.SetDeadline(time.Now().Add(30 * time.Second))

	value := bytes.Repeat([]byte{'z'}, 1<<20-512)
	r.xid++
	create := jute.AppendFrame(nil, &jute.RequestHeader{Xid: r.xid, Type: jute.OpCreate},
		&jute.CreateRequest{Path: "/split", Data: value, ACL: []jute.ACL{{Perms: zk.PermAll, ID: jute.ID{Scheme: "world", ID: "anyone"}}}})
	for off := 0; off < len(create); off += 10 << 10 {
		if _, err := r.conn.Write(create[off:min(off+10<<10, len(create))]); err != nil {
			t.Fatal(err)
		}
	}
	expectOK(t, r)
	if err := good.Delete("/split", -1); err != nil { // cleanup, and proof it exists
		t.Fatal(err)
	}

	r.xid++
	get := getData("/")(r.xid)
	for _, piece := range [][]byte{get[:1], get[1:4], get[4:9], get[9:]} {
		if _, err := r.conn.Write(piece); err != nil {
			t.Fatal(err)
		}
	}
	expectOK(t, r)

	// A frame length over the limit, mid-session: that session is closed and logged.
	r.conn.Write(jute.AppendInt(nil, 0x7fffffff))
	if _, err := r.fr.Next(); err == nil {
		t.Fatal("zkgate relayed a reply after a 2^31-1 frame length; want the session closed")
	}
	g.waitLog(t, 5*time.Second, "session closed: protocol error", "client frame", "exceeds limit")
	if _, _, err := good.Get("/"); err != nil {
		t.Fatalf("another session broken by a bad frame: %v", err)
	}
}

// expectOK reads r's next reply: it must answer r's last request, successfully.
func expectOK(t *testing.T, r *rawSession) {
	t.Helper()
	hs, err := r.replies(1, 30*time.Second)
	if err != nil || hs[0].Xid != r.xid || hs[0].Err != jute.ErrOK {
		t.Fatalf("reply %+v, %v; want xid %d OK", hs, err, r.xid)
	}
}

// TestCoalescingKeepsEveryReplyInOrder: under pipelined load the relay loop waits to
// gather frames (relay.coalesce), and every session still gets every reply, in its own
// order, with the data its own earlier write put there. With coalescing off the loop
// never waits.
func TestCoalescingKeepsEveryReplyInOrder(t *testing.T) {
	ens := zktest.Require(t, shared)
	for _, tc := range []struct {
		name     string
		coalesce time.Duration
	}{{"on", 2 * time.Millisecond}, {"off", -1}} {
		t.Run(tc.name, func(t *testing.T) {
			// Share 1: the wait may be as long as the replies take (at most 2 ms), so it
			// starts as soon as requests queue, whatever this machine's speed.
			g := startGate(t, ens, proxy.Config{Loops: 1, Coalesce: tc.coalesce, CoalesceShare: 1})
			c, _ := connect(t, g.addr)
			const sessions, pairs, rounds = 4, 48, 5
			raws := make([]*rawSession, sessions)
			for i := range raws {
				raws[i] = dialRaw(t, g.addr)
				path := fmt.Sprintf("/coalesce-%s-%d", tc.name, i)
				if _, err := c.Create(path, nil, 0, zk.WorldACL(zk.PermAll)); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { c.Delete(path, -1) })
			}
			for round := range rounds {
				xids := make([][]int32, sessions)
				for i, r := range raws { // every session's requests in flight at once
					path := fmt.Sprintf("/coalesce-%s-%d", tc.name, i)
					var reqs []func(int32) []byte
					for k := range pairs {
						reqs = append(reqs, setData(path, fmt.Appendf(nil, "%d-%d-%d", i, round, k)), getData(path))
					}
					xids[i] = r.send(reqs...)
				}
				for i, r := range raws {
					r.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
					for j, xid := range xids[i] {
						frame, err := r.fr.Next()
						if err != nil {
							t.Fatalf("session %d reply %d: %v", i, j, err)
						}
						h, err := jute.ParseReplyHeader(frame[4:])
						if err != nil || h.Xid != xid || h.Err != jute.ErrOK {
							t.Fatalf("session %d reply %d: %+v %v, want xid %d OK", i, j, h, err, xid)
						}
						if j%2 == 1 {
							var resp jute.GetDataResponse
							want := fmt.Sprintf("%d-%d-%d", i, round, j/2)
							if err := jute.Decode(frame[4+jute.ReplyHeaderLen:], &resp); err != nil || string(resp.Data) != want {
								t.Fatalf("session %d reply %d: data %q %v, want %q (the write just before it)", i, j, resp.Data, err, want)
							}
						}
					}
				}
			}
			tot := g.srv.Totals()
			t.Logf("coalesce %v: %d waits, %v in all, for %d replies", tc.coalesce, tot.Coalesced, tot.CoalescedFor, tot.Replies)
			if on := tc.coalesce > 0; on != (tot.Coalesced > 0) {
				t.Fatalf("coalesce %v: the loop waited %d times", tc.coalesce, tot.Coalesced)
			}
		})
	}
}
