package health

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

func errorsIsT(err, target error) bool { return errors.Is(err, target) }

func TestClassify(t *testing.T) {
	for _, c := range []struct {
		s    Srvr
		err  error
		want Status
	}{
		{Srvr{Mode: "leader"}, nil, StatusServing},
		{Srvr{Mode: "observer"}, nil, StatusServing},
		{Srvr{Mode: "read-only"}, nil, StatusReadOnly},
		{Srvr{}, fmt.Errorf("x: %w", ErrNotServing), StatusNotServing},
		{Srvr{}, errors.New("connection refused"), StatusDown},
		{Srvr{}, fmt.Errorf("x: %w", ErrNotWhitelisted), StatusDown},
	} {
		if got := Classify(c.s, c.err); got != c.want {
			t.Errorf("%+v %v: %v, want %v", c.s, c.err, got, c.want)
		}
	}
}

func TestNextRiseFall(t *testing.T) {
	t0 := time.Unix(1000, 0)
	S, D, N := StatusServing, StatusDown, StatusNotServing
	for _, c := range []struct {
		name       string
		rise, fall int
		seq        []Status
		want       []Status
	}{
		{"first probe decides", 2, 2, []Status{D}, []Status{D}},
		{"fall 1", 1, 1, []Status{S, D, S}, []Status{S, D, S}},
		{"fall 2 needs two", 1, 2, []Status{S, D, S, D, D}, []Status{S, S, S, S, D}},
		{"rise 3", 3, 1, []Status{D, S, S, S}, []Status{D, D, D, S}},
		{"streak resets on another status", 1, 2, []Status{S, D, N, N}, []Status{S, S, S, N}},
		{"streak resets on current status", 3, 1, []Status{D, S, S, D, S, S, S}, []Status{D, D, D, D, D, D, S}},
		{"zero counts as one", 0, 0, []Status{S, D}, []Status{S, D}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var tr Tracker
			for i, obs := range c.seq {
				now := t0.Add(time.Duration(i) * time.Second)
				prev := tr.Status
				tr = Next(tr, obs, now, c.rise, c.fall)
				if tr.Status != c.want[i] {
					t.Fatalf("step %d (%v): %v, want %v", i, obs, tr.Status, c.want[i])
				}
				if tr.Status != prev && !tr.Since.Equal(now) {
					t.Fatalf("step %d: Since not updated", i)
				}
			}
		})
	}
}

func TestSummarize(t *testing.T) {
	m := func(addr, mode string, st Status) MemberState {
		return MemberState{Address: addr, Mode: mode, Status: st, LastMode: mode}
	}
	was := func(addr, last string, st Status) MemberState {
		return MemberState{Address: addr, Status: st, LastMode: last}
	}
	z := func(m MemberState, zxid int64) MemberState { m.Zxid = zxid; return m }
	S, D, N := StatusServing, StatusDown, StatusNotServing
	for _, c := range []struct {
		name   string
		ms     []MemberState
		leader string
		quorum bool
	}{
		{"healthy", []MemberState{m("a", "leader", S), m("b", "follower", S), m("c", "follower", S)}, "a", true},
		{"one down", []MemberState{m("a", "leader", S), m("b", "", D), m("c", "follower", S)}, "a", true},
		{"two down", []MemberState{m("a", "", N), m("b", "", D), m("c", "", D)}, "", false},
		{"no leader yet", []MemberState{m("a", "follower", S), m("b", "follower", S), m("c", "", D)}, "", false},
		{"observer does not vote", []MemberState{m("a", "leader", S), m("b", "", D), m("c", "", D), m("o", "observer", S)}, "a", false},
		{"observer up, voters fine", []MemberState{m("a", "leader", S), m("b", "follower", S), m("c", "", D), m("o", "observer", S)}, "a", true},
		{"standalone", []MemberState{m("a", "standalone", S)}, "a", true},
		{"observers only, the leader elsewhere", []MemberState{m("o1", "observer", S), m("o2", "observer", S)}, "", true},
		{"followers only, all up", []MemberState{m("b", "follower", S), m("c", "follower", S)}, "", true},
		{"observers only, one down", []MemberState{m("o1", "observer", S), was("o2", "observer", D)}, "", true},
		{"part of the ensemble, one never seen", []MemberState{m("o1", "observer", S), m("o2", "", D)}, "", false},
		{"the leader down, followers not yet looking", []MemberState{was("a", "leader", D), m("b", "follower", S), m("c", "follower", S)}, "", false},
		// A hung leader's last answer (epoch 1) stands while the others elected one (epoch 2).
		{"two claim to lead: the later epoch", []MemberState{z(m("a", "follower", S), 2<<32|3), z(m("b", "leader", S), 2<<32), z(m("c", "leader", S), 1<<32|90)}, "b", true},
		{"two claim to lead, the other order", []MemberState{z(m("c", "leader", S), 1<<32|90), z(m("b", "leader", S), 2<<32), z(m("a", "follower", S), 2<<32|3)}, "b", true},
	} {
		v := Summarize(c.ms, time.Time{})
		if v.Leader != c.leader || v.Quorum != c.quorum {
			t.Errorf("%s: leader %q quorum %v; want %q %v", c.name, v.Leader, v.Quorum, c.leader, c.quorum)
		}
	}
}

func TestAssess(t *testing.T) {
	conf60 := Conf{MaxClientCnxns: 60}
	r := func(addr, mode string, st Status, zxid int64, version string) Report {
		return Report{Address: addr, Mode: mode, Status: st, Zxid: zxid, Srvr: &Srvr{Version: version, Mode: mode, Zxid: zxid}}
	}
	healthy := []Report{r("a", "leader", StatusServing, 0x100002000, "3.8.0"), r("b", "follower", StatusServing, 0x100002000, "3.8.0"), r("c", "follower", StatusServing, 0x100000001, "3.9.1")}
	healthy[1].Conf = &conf60
	healthy[2].Refused = []string{"mntr", "conf"}
	a := Assess(healthy)
	if !a.Healthy || a.Leader != "a" || !a.Quorum {
		t.Fatalf("%+v", a)
	}
	if len(a.Members[0].Problems) != 0 || len(a.Members[1].Problems) != 1 || len(a.Members[2].Problems) != 3 || len(a.Problems) != 1 {
		t.Fatalf("problems: %q %q %q %q", a.Members[0].Problems, a.Members[1].Problems, a.Members[2].Problems, a.Problems)
	}
	down := []Report{{Address: "a", Status: StatusDown, Error: "refused"}, r("b", "", StatusNotServing, 0, ""), {Address: "c", Status: StatusDown}}
	down[1].Srvr = nil
	a = Assess(down)
	if a.Healthy || a.Quorum || a.Leader != "" || len(a.Problems) != 2 {
		t.Fatalf("%+v", a)
	}
}
