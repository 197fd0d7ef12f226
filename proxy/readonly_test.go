package proxy

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/zkgate/zkgate/breaker"
	"github.com/zkgate/zkgate/health"
	"github.com/zkgate/zkgate/jute"
)

// A session on a read-only member is served while the breaker waits for a quorum: its
// reads reach the member; the member itself answers its writes NOTREADONLY.
func TestReadOnlySessionBypassesBreaker(t *testing.T) {
	g := newRig(t)
	g.r.sess.roServed = true
	g.srv.brk.ObserveHealth(false, "test: no quorum")
	g.client(getData(1, "/a", false), getData(2, "/b", false))
	if hs, _ := g.toMember(); !slices.Equal(reqXids(hs), []int32{1, 2}) {
		t.Fatalf("to the read-only member: %v, want both reads", reqXids(hs))
	}
	g.member(1, 0, &jute.GetDataResponse{})
	g.member(2, jute.ErrNotReadOnly)
	got := g.toClient()
	if !slices.Equal(xids(got), []int32{1, 2}) || got[0].Err != jute.ErrOK || got[1].Err != jute.ErrNotReadOnly {
		t.Fatalf("client got %+v", got)
	}
	if held := g.srv.brk.Held(); held != 0 {
		t.Fatalf("%d breaker permits held by a read-only session", held)
	}

	// The same session, not read-only, is refused.
	g = newRig(t)
	g.srv.brk.ObserveHealth(false, "test: no quorum")
	g.client(getData(1, "/a", false))
	if hs, _ := g.toMember(); len(hs) != 0 {
		t.Fatalf("a read-write session's read went to the member with the breaker open: %v", reqXids(hs))
	}
	if got := g.toClient(); len(got) != 1 || got[0].Err != g.srv.brk.RejectCode() {
		t.Fatalf("client got %+v, want the reject code", got)
	}
}

// A read-only member's session does not move: no other member knows it. Its client is
// closed and reconnects, as it would directly. A move never lands on a read-only member.
func TestReadOnlySessionDoesNotMove(t *testing.T) {
	g := newRig(t)
	g.r.sess.roServed = true
	if order, end := g.r.lose(&g.o, g.now, "test: member left read-only mode"); order != nil || end == nil || !strings.Contains(end.reason, "read-only") {
		t.Fatalf("lose: order %+v, ending %+v", order, end)
	}
	g = newRig(t)
	g.r.lose(&g.o, g.now, "test")
	if end := g.r.attached(&g.o, "m2", &jute.ConnectResponse{TimeOut: 6000, SessionID: 0x77, ReadOnly: true, HasReadOnly: true}, g.now); end == nil || !strings.Contains(end.reason, "read-only") {
		t.Fatalf("attached to a read-only member: %+v", end)
	}
	v := &health.View{Members: []health.MemberState{
		{Address: "m1", Status: health.StatusDown},
		{Address: "r", Status: health.StatusReadOnly, Mode: "read-only"}}}
	srv := NewServer(Config{}, staticView{v}, zerolog.Nop())
	if got := srv.moveTargets(&moveOrder{lost: "m1", req: jute.ConnectRequest{ReadOnly: true}}, nil); len(got) != 0 {
		t.Fatalf("move targets %v, want none: a read-only member is no move target", got)
	}
}

// Without a quorum, zkgate serves read-only clients when a member is in read-only mode,
// refuses the others, and says so to isro (which read-only clients poll to come back).
func TestServesReadOnly(t *testing.T) {
	ro := health.MemberState{Address: "r", Status: health.StatusReadOnly, Mode: "read-only"}
	down := health.MemberState{Address: "d", Status: health.StatusDown}
	for _, c := range []struct {
		name     string
		view     *health.View
		excluded bool
		serves   bool
		isro     string
	}{
		{"quorum", &health.View{Members: []health.MemberState{
			{Address: "a", Status: health.StatusServing, Mode: "leader", Serving: true}, ro}, Leader: "a", Quorum: true}, false, false, "rw"},
		{"read-only member, no quorum", &health.View{Members: []health.MemberState{ro, down, down}}, false, true, "ro"},
		{"read-only member ejected", &health.View{Members: []health.MemberState{ro, down, down}}, true, false, "null"},
		{"nothing", &health.View{Members: []health.MemberState{down, down}}, false, false, "null"},
	} {
		brk := breaker.NewEnsemble("t", breaker.DefaultConfig(), zerolog.Nop())
		srv := NewServer(Config{}, staticView{c.view}, zerolog.Nop(), WithBreaker(brk))
		srv.ApplyView(*c.view)
		if c.excluded {
			srv.ejector().ObserveHealth("r", true, "test: ejected", time.Now())
		}
		if got := srv.ServesReadOnly(); got != c.serves {
			t.Errorf("%s: ServesReadOnly %v, want %v", c.name, got, c.serves)
		}
		if got := srv.FourLetter("isro"); got != c.isro {
			t.Errorf("%s: isro %q, want %q", c.name, got, c.isro)
		}
	}
}

// Hot spots: a request's path prefix is counted when it goes by, its reply's bytes and
// error when it comes back; straight into the tracker (the goroutine driver), or through
// a relay loop's batch, which the tracker gets at the loop's sweep.
func TestRelayCountsHotPaths(t *testing.T) {
	for _, batched := range []bool{false, true} {
		t.Run(map[bool]string{false: "direct", true: "batched"}[batched], func(t *testing.T) {
			g := newRig(t)
			g.srv.conf().Hotspots = DefaultHotspots()
			g.srv.hot.Store(newHotTracker(g.srv.conf().Hotspots))
			if batched {
				g.o.hot = newHotBatch(g.srv)
			}
			for i := range 5 {
				g.client(getData(int32(i+1), "/app/locks/lock-"+itoa(i), false))
			}
			g.client(reqFrame(6, jute.OpDelete, &jute.DeleteRequest{Path: "/app/config", Version: -1}),
				reqFrame(jute.XidPing, jute.OpPing, nil))
			g.toMember()
			for i := range 5 {
				g.member(int32(i+1), 0, &jute.GetDataResponse{Data: make([]byte, 1000)})
			}
			g.member(6, jute.ErrNoNode)
			g.member(jute.XidPing, 0)
			g.toClient()
			if batched {
				g.srv.hotTracker().Rotate(time.Now().Add(g.srv.conf().Hotspots.Window))
				if rep, _ := g.srv.Hotspots(); len(rep.Paths.ByRequests) != 0 {
					t.Fatalf("the tracker has the batch's figures before the sweep: %+v", rep.Paths.ByRequests)
				}
				g.o.hot.flush()
				if len(g.o.hot.m) != 2 {
					t.Fatalf("batch keys after a flush: %d, want the 2 that counted, zeroed", len(g.o.hot.m))
				}
				g.o.hot.flush() // nothing since: both keys leave the batch
				if len(g.o.hot.m) != 0 {
					t.Fatalf("batch keys after an empty flush: %d, want 0", len(g.o.hot.m))
				}
			}
			g.srv.hotTracker().Rotate(time.Now().Add(2 * g.srv.conf().Hotspots.Window))
			rep, ok := g.srv.Hotspots()
			if !ok {
				t.Fatal("hot spots off")
			}
			byReq := rep.Paths.ByRequests
			if len(byReq) != 2 || byReq[0].Key != "/app/locks" || byReq[1].Key != "/app/config" {
				t.Fatalf("paths by requests: %+v (the ping has no path)", byReq)
			}
			if e := rep.Paths.ByErrors; len(e) != 1 || e[0].Key != "/app/config" {
				t.Fatalf("paths by errors: %+v", e)
			}
			if b := rep.Paths.ByBytes; b[0].Key != "/app/locks" || b[0].BytesPerSec*rep.Seconds < 5000 {
				t.Fatalf("paths by bytes: %+v: the replies' bytes count", b)
			}
		})
	}
}
