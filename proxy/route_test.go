package proxy

import (
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/zkgate/zkgate/health"
)

func TestRoute(t *testing.T) {
	S, D, RO := health.StatusServing, health.StatusDown, health.StatusReadOnly
	m := func(addr, mode string, st health.Status, zxid int64) health.MemberState {
		return health.MemberState{Address: addr, Mode: mode, Status: st, Zxid: zxid}
	}
	three := &health.View{Members: []health.MemberState{m("a", "leader", S, 100), m("b", "follower", S, 90), m("c", "follower", S, 100)}}
	withObservers := &health.View{Members: append(append([]health.MemberState(nil), three.Members...),
		m("o1", "observer", S, 100), m("o2", "observer", S, 100))}
	for _, c := range []struct {
		name string
		in   RouteInput
		want []string
	}{
		{"least connections avoids the leader", RouteInput{View: three, Sessions: map[string]int{"b": 5, "c": 1}}, []string{"c", "b", "a"}},
		{"ties keep member order", RouteInput{View: three}, []string{"b", "c", "a"}},
		{"with the leader: counted like any member", RouteInput{View: three, Policy: LeastConnectionsWithLeader, Sessions: map[string]int{"b": 5, "c": 1}}, []string{"a", "c", "b"}},
		{"with the leader: on a tie followers first, in member order", RouteInput{View: three, Policy: LeastConnectionsWithLeader}, []string{"b", "c", "a"}},
		{"with the leader: the leader when it has fewest", RouteInput{View: three, Policy: LeastConnectionsWithLeader, Sessions: map[string]int{"b": 1, "c": 1}}, []string{"a", "b", "c"}},
		{"leader used when alone", RouteInput{View: &health.View{Members: []health.MemberState{m("a", "leader", S, 1), m("b", "", D, 0)}}}, []string{"a"}},
		{"down members never", RouteInput{View: &health.View{Members: []health.MemberState{m("a", "", D, 0), m("b", "", D, 0)}}}, []string{}},
		{"reconnect skips lagging member", RouteInput{View: three, LastZxidSeen: 95}, []string{"c", "a"}},
		{"zxid 0 follower is tried", RouteInput{View: &health.View{Members: []health.MemberState{m("a", "leader", S, 100), m("b", "follower", S, 0)}}, LastZxidSeen: 50}, []string{"b", "a"}},
		{"excluded", RouteInput{View: three, Excluded: map[string]bool{"c": true}}, []string{"b", "a"}},
		{"read-only only for read-only clients", RouteInput{View: &health.View{Members: []health.MemberState{m("a", "read-only", RO, 1)}}}, []string{}},
		{"read-only client", RouteInput{View: &health.View{Members: []health.MemberState{m("a", "read-only", RO, 1)}}, ReadOnly: true}, []string{"a"}},
		{"read-write members before a read-only one, whatever their load", RouteInput{View: &health.View{Members: []health.MemberState{
			m("r", "read-only", RO, 1), m("a", "leader", S, 1), m("b", "follower", S, 1)}}, ReadOnly: true,
			Sessions: map[string]int{"b": 9, "a": 9}}, []string{"b", "a", "r"}},
		{"read-only last under every policy", RouteInput{View: &health.View{Members: []health.MemberState{
			m("r", "read-only", RO, 1), m("o", "observer", S, 1)}}, ReadOnly: true, Policy: Any}, []string{"o", "r"}},
		{"round robin rotates", RouteInput{View: three, Policy: RoundRobin, Counter: 1}, []string{"b", "c", "a"}},
		{"round robin rotates again", RouteInput{View: three, Policy: RoundRobin, Counter: 2}, []string{"c", "a", "b"}},
		{"any keeps order", RouteInput{View: three, Policy: Any, Sessions: map[string]int{"a": 9}}, []string{"a", "b", "c"}},
		{"prefer observers: observers, followers, then the leader", RouteInput{View: withObservers, Policy: PreferObservers,
			Sessions: map[string]int{"o1": 3, "o2": 1, "b": 0}}, []string{"o2", "o1", "b", "c", "a"}},
		{"prefer observers: followers when no observer serves", RouteInput{View: withObservers, Policy: PreferObservers,
			Excluded: map[string]bool{"o1": true, "o2": true}}, []string{"b", "c", "a"}},
		{"prefer observers: the leader last", RouteInput{View: three, Policy: PreferObservers, Sessions: map[string]int{"b": 5}},
			[]string{"c", "b", "a"}},
	} {
		if got := Route(c.in); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

// Placement and moves both try the members health saw behind a session's lastZxid after
// the others: health's zxids are a poll old, and a client that just wrote is ahead of
// them. (Placement had no such fallback: a writer closed at a member loss was refused
// with "no member can take the session".)
func TestRouteCaughtUpFirst(t *testing.T) {
	view := &health.View{Members: []health.MemberState{
		{Address: "a", Status: health.StatusServing, Mode: "follower", Zxid: 90},
		{Address: "b", Status: health.StatusServing, Mode: "follower", Zxid: 100},
		{Address: "c", Status: health.StatusServing, Mode: "leader", Zxid: 95},
	}}
	for _, tc := range []struct {
		zxid   int64
		want   []string
		caught int
	}{
		{0, []string{"a", "b", "c"}, 3},
		{100, []string{"b", "a", "c"}, 1},
		{120, []string{"a", "b", "c"}, 0}, // all behind health's poll: every one is tried
	} {
		got, caught := routeCaughtUpFirst(RouteInput{View: view, Policy: LeastConnections, LastZxidSeen: tc.zxid})
		if !slices.Equal(got, tc.want) || caught != tc.caught {
			t.Errorf("lastZxid %d: %v (%d caught up), want %v (%d)", tc.zxid, got, caught, tc.want, tc.caught)
		}
	}
}

// A drain never takes so long that the session could come near expiring: at most a
// sixth of its negotiated timeout, so the move after it (a third at most) ends well
// within the timeout.
func TestDrainBound(t *testing.T) {
	for _, tc := range []struct{ within, timeout, want time.Duration }{
		{5 * time.Second, 30 * time.Second, 5 * time.Second},
		{5 * time.Second, 6 * time.Second, time.Second},
		{5 * time.Second, 4 * time.Second, 4 * time.Second / 6},
		{5 * time.Second, 0, 5 * time.Second},
	} {
		if got := drainBound(tc.within, tc.timeout); got != tc.want {
			t.Errorf("drainBound(%v, session %v) = %v, want %v", tc.within, tc.timeout, got, tc.want)
		}
	}
}
