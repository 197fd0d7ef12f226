package proxy

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/zkgate/zkgate/health"
)

// TestPatientAttempt: a move waits on a member's ConnectResponse until its deadline
// unless another candidate answers its sessions clearly more recently (the member is
// frozen while its peers work: try them after the dial timeout).
func TestPatientAttempt(t *testing.T) {
	t0 := time.Unix(1000, 0)
	s := time.Second
	for _, c := range []struct {
		name string
		last map[string]time.Time
		want bool
	}{
		{"every member answering (overloaded alike)", map[string]time.Time{"a": t0, "b": t0.Add(s / 2), "c": t0.Add(s)}, true},
		{"every member silent (the whole machine stalled)", map[string]time.Time{"a": t0, "b": t0, "c": t0.Add(-s)}, true},
		{"this member silent, a peer answering", map[string]time.Time{"a": t0, "b": t0.Add(5 * s), "c": t0}, false},
		{"never answered, a peer answering", map[string]time.Time{"b": t0}, false},
		{"alone", map[string]time.Time{}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			cands := []string{"a", "b", "c"}
			if c.name == "alone" {
				cands = []string{"a"}
			}
			if got := patientAttempt("a", cands, func(m string) time.Time { return c.last[m] }, 2*s); got != c.want {
				t.Fatalf("patientAttempt = %v, want %v", got, c.want)
			}
		})
	}
}

// swapView is a ViewSource whose view a test replaces.
type swapView struct{ p atomic.Pointer[health.View] }

func (s *swapView) View() *health.View { return s.p.Load() }

func oneMember(addr string, st health.Status) *health.View {
	return &health.View{Members: []health.MemberState{{Address: addr, Status: st, Mode: "leader", Serving: st == health.StatusServing}},
		Leader: addr, Quorum: st == health.StatusServing, At: time.Now()}
}

// TestWhileServing: a patient attempt ends as soon as health stops showing its member
// serving (a hung leader found down), with errNotServing as the cause; stop ends the
// watch.
func TestWhileServing(t *testing.T) {
	views := &swapView{}
	views.p.Store(oneMember("m1", health.StatusServing))
	s := NewServer(Config{}, views, zerolog.Nop())
	ctx, stop := s.whileServing(context.Background(), "m1")
	defer stop()
	if ctx.Err() != nil {
		t.Fatal("ended while the member serves")
	}
	views.p.Store(oneMember("m1", health.StatusDown))
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("still waiting on a member health shows down")
	}
	if !errors.Is(context.Cause(ctx), errNotServing) {
		t.Fatalf("cause %v, want errNotServing", context.Cause(ctx))
	}

	views.p.Store(oneMember("m1", health.StatusServing))
	ctx, stop2 := s.whileServing(context.Background(), "m1")
	stop2()
	if !errors.Is(ctx.Err(), context.Canceled) || context.Cause(ctx) == errNotServing {
		t.Fatalf("after stop: err %v cause %v", ctx.Err(), context.Cause(ctx))
	}
}

// TestSilentNow: a member whose attempt timed out goes after the others for every move
// until it answers again (a probe or a session).
func TestSilentNow(t *testing.T) {
	views := &swapView{}
	views.p.Store(oneMember("m1", health.StatusServing))
	s := NewServer(Config{}, views, zerolog.Nop())
	t0 := time.Now()
	if s.silentNow("m1") {
		t.Fatal("silent before any attempt")
	}
	s.ProbeAnswered("m1", t0)
	s.noteSilent("m1", t0.Add(time.Second))
	if !s.silentNow("m1") {
		t.Fatal("not silent after an unanswered attempt")
	}
	s.ProbeAnswered("m1", t0.Add(2*time.Second))
	if s.silentNow("m1") {
		t.Fatal("still silent after it answered a probe")
	}
}
