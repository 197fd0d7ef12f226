package proxy

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/zkgate/zkgate/health"
	"github.com/zkgate/zkgate/jute"
)

// moveDials and placeDials bound the member connects under way at once, for moves and
// for new sessions apart, so that neither starves the other. A member lost under a
// thousand sessions, or ten thousand clients connecting at once, must not turn into as
// many SYNs at a member's accept queue: ZooKeeper's holds 50, and past it connects wait a
// second for the SYN to be resent, fail, and count against a healthy member.
const (
	moveDials  = 32
	placeDials = 32
)

// servingCheck: how often a patient attempt looks whether health still shows its member
// serving (whileServing).
const servingCheck = 100 * time.Millisecond

// dialBounded is dialMember within one of the bounds on concurrent connects. The slot is
// held for the TCP connect only: waiting for the ConnectResponse sends no SYN, and a move
// waiting on a hung member must not keep the other moves from connecting elsewhere.
func (s *Server) dialBounded(ctx context.Context, slots chan struct{}, member string, raw []byte, attempt time.Duration) (net.Conn, *jute.ConnectResponse, []byte, error) {
	select {
	case slots <- struct{}{}:
	case <-ctx.Done():
		return nil, nil, nil, fmt.Errorf("member %s: waiting to dial: %w", member, ctx.Err())
	}
	release := sync.OnceFunc(func() { <-slots })
	defer release()
	return s.dialMember(ctx, member, raw, attempt, release)
}

// errNotServing ends a patient attempt whose member health no longer shows serving.
var errNotServing = errors.New("health no longer shows the member serving")

// whileServing is ctx, ended with errNotServing once health stops showing member serving
// (or ejects it): a patient attempt waits on a slow member, not on one found hung or down
// meanwhile. stop releases it.
func (s *Server) whileServing(ctx context.Context, member string) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(servingCheck)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				if !s.routable(member) {
					cancel(errNotServing)
					return
				}
			}
		}
	}()
	return ctx, func() { close(done); cancel(nil) }
}

// routable: health shows member serving and it is not ejected.
func (s *Server) routable(member string) bool {
	v := s.view()
	if v == nil {
		return false
	}
	m, ok := v.Member(member)
	return ok && m.Status == health.StatusServing && !s.ejector().Excluded()[member]
}

// noteSilent records that an attempt on member got no answer in time; silentNow reports
// whether it has answered nothing (a session or a probe) since. Every move then tries it
// after the others, not only the move whose attempt timed out: a hung member must not
// take each of a thousand moves' first attempt.
func (s *Server) noteSilent(member string, at time.Time) { s.silentAt.Store(member, at) }

func (s *Server) silentNow(member string) bool {
	at, ok := s.silentAt.Load(member)
	return ok && !s.LastAnswer(member).After(at.(time.Time))
}

// patientAttempt reports whether a move's connect attempt to member may wait for its
// ConnectResponse until the move's deadline, rather than DialTimeout: when no other
// candidate answered its sessions clearly more recently (by more than dial). Every member
// is then as slow as this one (an overloaded ensemble, a stall of the whole machine): a
// client connected directly keeps waiting on its member, an attempt given up leaves its
// ConnectRequest for the member to process anyway (more load on an ensemble already
// behind), and trying the next member is no faster. A member frozen while its peers
// answer is still given up after dial, for them.
func patientAttempt(member string, candidates []string, lastAnswer func(string) time.Time, dial time.Duration) bool {
	own := lastAnswer(member)
	for _, c := range candidates {
		if c != member && lastAnswer(c).Sub(own) > dial {
			return false
		}
	}
	return true
}

// moveTargets lists the members to try for a move, best first: those health saw caught
// up with the session's lastZxid, then the others. Health's zxids are a poll old, and a
// session that just wrote is ahead of them; a member that is really behind closes the
// connection without an answer, and the next one is tried. A move never goes to a
// read-only member: the client would not see the read-only ConnectResponse, and would
// take its writes' NOTREADONLY for a fault.
func (s *Server) moveTargets(m *moveOrder, excluded map[string]bool) []string {
	out, _ := routeCaughtUpFirst(RouteInput{View: s.view(), Policy: s.conf().Policy, Sessions: s.SessionsPerMember(),
		LastZxidSeen: m.req.LastZxidSeen, Counter: s.rr.Add(1), Excluded: excluded})
	return out
}

// routeCaughtUpFirst is Route's list followed by the members Route left out only because
// health saw them behind the session's lastZxid (health's zxids are a poll old; a
// member really behind closes the connection without an answer). caught is how many
// of the list health saw caught up.
func routeCaughtUpFirst(in RouteInput) (out []string, caught int) {
	out = Route(in)
	caught = len(out)
	if in.LastZxidSeen == 0 {
		return out, caught
	}
	in.LastZxidSeen = 0
	for _, addr := range Route(in) {
		if !slices.Contains(out, addr) {
			out = append(out, addr)
		}
	}
	return out, caught
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// redial routes a moving session to a member other than the lost one, whose zxid has
// caught up with the session's, and re-establishes it there. While no member takes it
// (an election under way), it tries again until the move's deadline. A lost member that
// closed the connection itself (as every member does when an election starts) is tried
// again after the first round, last, once health sees it serving: after the election it
// is as good a home as any.
//
// A move's failed dials count in the metrics but not against the member (ejection) or
// the ensemble (breaker): they are retries of one event, the loss, which health and the
// sessions' own traffic already report. Counted, a thousand sessions retrying through an
// election ejected a healthy member and left them nowhere to go.
func (s *Server) redial(ctx context.Context, m *moveOrder) moveResult {
	ctx, cancel := context.WithDeadline(ctx, m.deadline)
	defer cancel()
	raw := jute.AppendFrame(nil, &m.req)
	var last error = errNoMember
	unanswered := map[string]bool{} // members an attempt of this move found silent
	for round := 0; ; round++ {
		excluded := maps.Clone(s.ejector().Excluded())
		if excluded == nil {
			excluded = map[string]bool{}
		}
		if round == 0 || !m.closedByMember {
			excluded[m.lost] = true
		}
		targets := s.moveTargets(m, excluded)
		if i := slices.Index(targets, m.lost); i >= 0 { // routable again: the last choice
			targets = append(slices.Delete(targets, i, i+1), m.lost)
		}
		// A member that let an attempt time out (frozen, while health has not seen it
		// yet) goes after the others: a hung leader must not take every move's time.
		silent := func(a string) int { return b2i(unanswered[a] || s.silentNow(a)) }
		slices.SortStableFunc(targets, func(a, b string) int { return cmp.Compare(silent(a), silent(b)) })
		for _, member := range targets {
			attempt := s.conf().DialTimeout
			actx, stop := ctx, func() {}
			if patientAttempt(member, targets, s.LastAnswer, attempt) {
				attempt = time.Until(m.deadline)
				actx, stop = s.whileServing(ctx, member)
			}
			nc, resp, _, err := s.dialBounded(actx, s.dials, member, raw, attempt)
			notServing := errors.Is(context.Cause(actx), errNotServing)
			stop()
			if err != nil {
				last = err
				if ctx.Err() != nil {
					break // the move's own deadline, not the member's failure
				}
				if health.IsOwnLimit(err) {
					s.ownLimit.Note(s.log, "moving a session", member, err, time.Now())
					break // zkgate's own limit: try again after the pause, every member alike
				}
				if notServing {
					last = fmt.Errorf("member %s: %w", member, errNotServing)
				}
				if health.IsTimeout(err) || notServing {
					unanswered[member] = true
					s.noteSilent(member, time.Now())
				}
				s.obs.ConnectFailed(member, err)
				continue
			}
			s.ejector().Connected(member)
			return moveResult{conn: nc, member: member, resp: resp}
		}
		t := time.NewTimer(moveRetryPause)
		select {
		case <-ctx.Done():
			t.Stop()
			if errors.Is(ctx.Err(), context.Canceled) {
				return moveResult{err: ctx.Err()}
			}
			return moveResult{err: fmt.Errorf("%w before the move's deadline: %w", errNoMoveTarget, last)}
		case <-t.C:
		}
	}
}
