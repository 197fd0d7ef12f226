package proxy

import (
	"slices"
	"testing"
	"time"

	"github.com/zkgate/zkgate/breaker"
	"github.com/zkgate/zkgate/jute"
)

// limitRig is the relay rig with the limits on for its session (client IP "c").
func limitRig(t *testing.T, l Limits) *relayRig {
	g := newRig(t)
	g.srv.conf().Limits = l
	g.srv.mu.Lock()
	g.r.lim = g.srv.newSessionLimit("c")
	g.srv.mu.Unlock()
	return g
}

// A session over its rate: the requests within it go to the member, the rest are
// answered with the reject code in their place in the session's order, and none of this
// touches the breaker.
func TestLimitSessionRate(t *testing.T) {
	g := limitRig(t, Limits{SessionRate: 1, SessionBurst: 3})
	g.client(getData(1, "/a", false), getData(2, "/a", false), getData(3, "/a", false),
		getData(4, "/a", false), getData(5, "/a", false),
		reqFrame(jute.XidPing, jute.OpPing, nil)) // pings are never limited
	if hs, _ := g.toMember(); !slices.Equal(reqXids(hs), []int32{1, 2, 3, jute.XidPing}) {
		t.Fatalf("to member: %v, want the burst of 3 and the ping", reqXids(hs))
	}
	if got := g.toClient(); len(got) != 0 {
		t.Fatalf("rejects overtook the requests in flight: %v", xids(got))
	}
	g.member(1, 0)
	g.member(2, 0)
	g.member(3, 0)
	g.member(jute.XidPing, 0)
	got := g.toClient()
	if !slices.Equal(xids(got), []int32{1, 2, 3, 4, 5, jute.XidPing}) {
		t.Fatalf("client got %v", xids(got))
	}
	for _, h := range got[3:5] {
		if h.Err != g.srv.brk.RejectCode() {
			t.Fatalf("xid %d answered %v, want the reject code", h.Xid, h.Err)
		}
	}
	if n := g.r.sess.limited.Load(); n != 2 {
		t.Fatalf("session counts %d limited requests, want 2", n)
	}
	if st := g.srv.brk.State(); st != breaker.Closed || g.srv.brk.Held() != 0 {
		t.Fatalf("breaker %v with %d permits held", st, g.srv.brk.Held())
	}
	// A second later the bucket has a token again.
	g.now = g.now.Add(time.Second)
	g.client(getData(6, "/a", false))
	if hs, _ := g.toMember(); !slices.Equal(reqXids(hs), []int32{6}) {
		t.Fatalf("after a second: %v", reqXids(hs))
	}
}

// The client IP's bucket is shared by its sessions; the in-flight cap counts the requests
// waiting on the member.
func TestLimitClientAndInFlight(t *testing.T) {
	g := limitRig(t, Limits{ClientRate: 1, ClientBurst: 2})
	other := newRelay(g.srv, g.r.sess) // a second session of the same client IP
	g.srv.mu.Lock()
	other.lim = g.srv.newSessionLimit("c")
	g.srv.mu.Unlock()
	g.client(getData(1, "/a", false))
	if _, end := other.fromClient(&g.o, getData(2, "/a", false), g.now); end != nil {
		t.Fatal(end)
	}
	g.client(getData(3, "/a", false))
	if hs, _ := g.toMember(); !slices.Equal(reqXids(hs), []int32{1, 2}) {
		t.Fatalf("to member: %v, want the client's burst of 2 over both sessions", reqXids(hs))
	}
	if c := g.r.lim.client; c != other.lim.client || g.r.sess.limited.Load() != 1 {
		t.Fatalf("the sessions do not share the client's bucket: %p %p", c, other.lim.client)
	}

	g = limitRig(t, Limits{MaxInFlight: 2})
	g.client(getData(1, "/a", false), getData(2, "/a", false), getData(3, "/a", false))
	if hs, _ := g.toMember(); !slices.Equal(reqXids(hs), []int32{1, 2}) {
		t.Fatalf("to member: %v, want 2 in flight", reqXids(hs))
	}
	g.member(1, 0)
	g.client(getData(4, "/a", false))
	if hs, _ := g.toMember(); !slices.Equal(reqXids(hs), []int32{4}) {
		t.Fatalf("after a reply: %v", reqXids(hs))
	}
}

// The client's bucket goes when its last session does.
func TestLimitClientBucketReleased(t *testing.T) {
	g := limitRig(t, Limits{ClientRate: 5})
	g.srv.mu.Lock()
	defer g.srv.mu.Unlock()
	if len(g.srv.clientLimits) != 1 {
		t.Fatalf("%d client buckets", len(g.srv.clientLimits))
	}
	g.srv.dropSessionLimit("c", g.r.lim)
	if len(g.srv.clientLimits) != 0 {
		t.Fatalf("bucket kept after the last session: %v", g.srv.clientLimits)
	}
}
