package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/zkgate/zkgate/jute"
)

// A move re-establishes a live session on another member when its member is lost (its
// connection died, health marks it down, it is ejected), without the client noticing:
//
//  1. lose: the member connection is gone. Pings in flight are answered by zkgate, reads
//     in flight wait to be sent again, and the client's new requests are held (its pings
//     answered by zkgate). A write, a SASL exchange or anything else unsafe to repeat in
//     flight, or a session that used SASL, closes the client instead.
//  2. The driver dials (Server.redial): Route again, never the lost member, and a
//     ConnectRequest with the session's id, password and lastZxid.
//  3. attached: the auth packets and the watches (SetWatches2/SetWatches batches,
//     relativeZxid = lastZxid) are replayed as zkgate's own packets, whose replies never
//     reach the client; the reads in flight are sent again; the held requests follow.
//
// A ConnectResponse with timeOut 0 (the session expired), no member that takes the
// session, or a move past its deadline (default a third of the session timeout) closes
// the client: it reconnects through zkgate and its library sees what it would directly.

// Move outcomes, for metrics and logs.
const (
	MovedOK         = "moved"
	MoveUnsafe      = "closed-unsafe-in-flight" // a write, SASL or closeSession was in flight
	MoveSASL        = "closed-sasl"             // the session used SASL
	MoveWatches     = "closed-watches"          // a persistent watch (no catch-up), or watches past the bound
	MoveReadOnly    = "closed-read-only"        // a read-only member's session: no other member knows it
	MoveNoMember    = "closed-no-member"
	MoveDeadline    = "closed-deadline"
	MoveExpired     = "closed-expired"
	MoveClientGone  = "closed-client-gone"
	MoveShutdown    = "closed-shutdown"
	maxWatchBatch   = 128 << 10 // path bytes per SetWatches, as the Java client batches them
	moveRetryPause  = 100 * time.Millisecond
	defaultMoveFrac = 3 // a move may take a third of the session timeout
)

// moveOrder is what the driver needs to re-establish the session elsewhere.
type moveOrder struct {
	req      jute.ConnectRequest
	lost     string
	deadline time.Time
	// closedByMember: the lost member ended the connection itself (EOF, reset), as a
	// member does when an election starts; not hung, down or ejected.
	closedByMember bool
}

// connLost starts the why of a loss the member's connection reported itself.
const connLost = "connection lost: "

// moveResult is a member connection past its ConnectResponse, or why there is none.
type moveResult struct {
	conn   net.Conn
	member string
	resp   *jute.ConnectResponse
	err    error
}

func (m moveResult) close() {
	if m.conn != nil {
		m.conn.Close()
	}
}

// errNoMoveTarget: no member took the session before the move's deadline.
var errNoMoveTarget = errors.New("no member took the session")

// lose starts a move off the session's member, whose connection the driver has closed. It
// returns the order for the driver to dial, or the ending when the session cannot move.
func (r *relay) lose(o *out, now time.Time, why string) (*moveOrder, *ending) {
	if r.state == moving {
		return nil, nil
	}
	r.drainUntil, r.drainWhy = time.Time{}, ""
	if r.bye {
		return nil, &ending{side: "member", err: errSessionClosed}
	}
	pings, unsafe := r.sess.strand()
	for _, xid := range pings {
		o.client = appendReply(o.client, xid, r.sess.zxid(), jute.ErrOK)
	}
	lossAnswered, lossMode := 0, unsafe != 0 && r.answersLoss()
	if lossMode {
		// The write's outcome is unknown, as it would be to the client directly: it and
		// everything queued behind it (reads too, which keeps the answers in order) get
		// CONNECTIONLOSS, and the session moves with nothing in flight. The old member
		// cannot apply the write after the move: the session's new owner makes the
		// leader refuse it (SessionMovedException).
		lossAnswered = r.answerLost(o)
	} else {
		// Requests refused (breaker, limits) behind those pings are next in line now:
		// answer them before anything the new member replies.
		r.answer(o, false, false)
	}
	waiting := r.sess.inFlight()
	r.addSent(o, waiting-r.sent)
	r.own = r.own[:0]
	r.lost, r.lostWhy, r.lostAt = r.member, why, now
	if lossAnswered > 0 {
		r.lostWhy += fmt.Sprintf("; %d requests from a %s on answered with CONNECTIONLOSS", lossAnswered, unsafe)
	}
	s := r.sess
	s.mu.Lock()
	sasl := s.sasl
	order := &moveOrder{lost: r.member, req: jute.ConnectRequest{LastZxidSeen: s.lastZxid,
		TimeOut: int32(s.timeout / time.Millisecond), SessionID: s.id, Passwd: s.passwd,
		ReadOnly: s.readOnly, HasReadOnly: s.hasReadOnly}, closedByMember: strings.HasPrefix(why, connLost)}
	timeout := s.timeout
	s.mu.Unlock()
	unmovable := r.sess.unmovable()
	switch {
	case unsafe != 0 && !lossMode:
		return nil, r.moveEnded(o, MoveUnsafe, fmt.Sprintf("a %s was in flight", unsafe), now)
	case unmovable != "":
		return nil, r.moveEnded(o, MoveWatches, unmovable, now)
	case sasl:
		return nil, r.moveEnded(o, MoveSASL, "the session used SASL, which a move cannot replay", now)
	case r.sess.roServed:
		// A read-only member's sessions are its own (local sessions); its client reconnects,
		// as it would directly, and zkgate places it on a read-write member if the quorum is back.
		return nil, r.moveEnded(o, MoveReadOnly, "the session was on a read-only member", now)
	}
	d := r.srv.conf().MoveTimeout
	if d <= 0 {
		d = timeout / defaultMoveFrac
	}
	r.state, r.deadline = moving, now.Add(d)
	order.deadline = r.deadline
	return order, nil
}

// strand settles the requests in flight to a lost member: a ping or an auth packet is
// answered by zkgate (their xids returned), one zkgate answered already is done, a
// repeatable one waits to be sent again with its breaker permit (a member that dies is
// the member's failure, and the move deals with it: the ensemble breaker sees the
// request's outcome on the new member), and anything else is unsafe to repeat (its
// opcode is returned; the session will close and settle it as lost).
func (s *Session) strand() (pings []int32, unsafe jute.OpCode) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.moving = true
	for i := range s.fifo {
		e := &s.fifo[i]
		if !e.waiting() {
			continue
		}
		switch {
		case e.answered:
			s.replied(e)
		case e.xid == jute.XidPing || e.op == jute.OpAuth:
			// Clients match these outside their queue of requests. An auth packet is in
			// the replay: it is answered now, as the old member (which processes auth
			// on arrival) most likely had.
			e.replied, e.answered = true, true
			pings = append(pings, e.xid)
			s.replies++
		case e.keptLen > 0:
		case unsafe == 0:
			unsafe = e.op
		}
	}
	for s.owed < len(s.fifo) && s.fifo[s.owed].answered {
		s.owed++
	}
	s.compact()
	return pings, unsafe
}

// hold keeps a client frame while the session moves, answering a ping itself (clients
// match ping replies by xid -2, outside their queue of requests).
func (r *relay) hold(o *out, h jute.RequestHeader, frame []byte) {
	if h.Type == jute.OpPing {
		o.client = appendReply(o.client, h.Xid, r.sess.zxid(), jute.ErrOK)
		return
	}
	r.held = append(r.held, frame...)
}

// attached resumes the session on the member the driver connected it to: the replay, the
// reads in flight sent again, then the requests held meanwhile.
func (r *relay) attached(o *out, member string, resp *jute.ConnectResponse, now time.Time) *ending {
	if r.state != moving {
		return &ending{side: "zkgate", reason: "member attached to a session that is not moving"}
	}
	if resp.Expired() {
		return r.moveEnded(o, MoveExpired, member+" answered that the session expired", now)
	}
	if resp.ReadOnly {
		// Its client believes it may write: it must see the read-only ConnectResponse itself.
		return r.moveEnded(o, MoveReadOnly, member+" is read-only", now)
	}
	from := r.lost
	r.member = member
	r.sess.mu.Lock()
	r.sess.member = member
	r.sess.moves++
	r.sess.mu.Unlock()
	auths, batches := r.replay(o)
	resent := r.resend(o, now)
	r.state = relaying
	took := now.Sub(r.lostAt)
	r.srv.moves.Add(1)
	r.srv.movedAt.Store(now.UnixNano())
	r.srv.obs.Moved(from, member, MovedOK, took)
	r.srv.log.Info().Str("session", fmt.Sprintf("0x%x", r.sess.id)).Str("client", r.sess.Client).
		Str("from", from).Str("to", member).Str("why", r.lostWhy).Dur("took", took).
		Int("auth_replayed", auths).Int("watch_batches", batches).Int("resent", resent).
		Int("held_bytes", len(r.held)).Msg("session moved")
	if len(r.held) == 0 {
		return nil
	}
	held := r.held
	r.held = nil
	used, end := r.fromClient(o, held, now)
	if end == nil && used != len(held) {
		end = &ending{side: "zkgate", reason: "held client bytes left over after a move"}
	}
	return end
}

// moveFailed ends a move that found no member, or that ran out of time.
func (r *relay) moveFailed(o *out, err error, now time.Time) *ending {
	if r.state != moving {
		return nil
	}
	outcome := MoveDeadline
	switch {
	case errors.Is(err, errNoMoveTarget):
		outcome = MoveNoMember
	case errors.Is(err, context.Canceled):
		outcome = MoveShutdown
	}
	return r.moveEnded(o, outcome, err.Error(), now)
}

// errSessionClosed: the member closed the connection of a session the client closed.
var errSessionClosed = errors.New("session closed by its client")

var errMoveDeadline = errors.New("move deadline passed")

// overdue ends a move past its deadline (the dial has its own; this is the relay's word).
func (r *relay) overdue(o *out, now time.Time) *ending {
	if r.state == moving && now.After(r.deadline) {
		return r.moveFailed(o, fmt.Errorf("%w (%v)", errMoveDeadline, r.deadline.Sub(r.lostAt)), now)
	}
	return nil
}

// abandoned records a move cut short by the client or by shutdown.
func (r *relay) abandoned(outcome string, now time.Time) {
	if r.state == moving {
		r.state = relaying
		r.srv.movesClosed.Add(1)
		r.srv.obs.Moved(r.lost, "", outcome, now.Sub(r.lostAt))
	}
}

// moveEnded records a move that closes the client, and the ending for the driver.
func (r *relay) moveEnded(o *out, outcome, why string, now time.Time) *ending {
	answered := r.closeAnswering(o)
	r.state = relaying
	r.held = nil
	r.srv.movesClosed.Add(1)
	r.srv.obs.Moved(r.lost, "", outcome, now.Sub(r.lostAt))
	r.srv.log.Info().Str("session", fmt.Sprintf("0x%x", r.sess.id)).Str("client", r.sess.Client).
		Str("from", r.lost).Str("why", r.lostWhy).Str("outcome", outcome).Int("answered_with_reject_code", answered).
		Str("reason", why).Msg("session could not move; closed the client, which reconnects through zkgate")
	// side member: what is still in flight was lost with the member
	return &ending{side: "member", reason: "member " + r.lost + " lost (" + r.lostWhy + "), session not moved: " + why, quiet: true}
}

// replay sends zkgate's own packets that re-create the session's connection state on the
// new member, in the order the Java client's primeConnection uses: each distinct auth
// packet (xid -4), then the watches in batches (xid -8, relativeZxid = lastZxid). It
// returns how many of each it sent.
func (r *relay) replay(o *out) (auths, batches int) {
	r.sess.mu.Lock()
	auth := r.sess.auth
	r.sess.mu.Unlock()
	for _, a := range auth {
		o.member = appendRequest(o.member, jute.XidAuth, jute.OpAuth, a)
		r.own = append(r.own, jute.XidAuth)
	}
	for _, b := range watchBatches(r.sess.Watches(), maxWatchBatch) {
		op := jute.OpSetWatches2
		var rec jute.Record = &b
		if len(b.PersistentWatches)+len(b.PersistentRecursiveWatches) == 0 {
			op, rec = jute.OpSetWatches, &jute.SetWatches{RelativeZxid: b.RelativeZxid,
				DataWatches: b.DataWatches, ExistWatches: b.ExistWatches, ChildWatches: b.ChildWatches}
		}
		o.member = jute.AppendFrame(o.member, &jute.RequestHeader{Xid: jute.XidSetWatches, Type: op}, rec)
		r.own = append(r.own, jute.XidSetWatches)
	}
	return len(auth), len(r.own) - len(auth)
}

// watchBatches splits a session's watches into SetWatches2 records of at most limit
// bytes of paths each, in the order data, exist, child, persistent, recursive.
func watchBatches(w jute.SetWatches2, limit int) []jute.SetWatches2 {
	var out []jute.SetWatches2
	// Empty lists, not null ones: the server reads null as a list it cannot iterate.
	fresh := func() jute.SetWatches2 {
		b := jute.SetWatches2{RelativeZxid: w.RelativeZxid}
		for _, l := range b.Lists() {
			*l = []string{}
		}
		return b
	}
	cur := fresh()
	size, n := 0, 0
	for i, from := range w.Lists() {
		for _, p := range *from {
			if n > 0 && size+len(p) > limit {
				out = append(out, cur)
				cur, size, n = fresh(), 0, 0
			}
			to := cur.Lists()[i]
			*to = append(*to, p)
			size += len(p)
			n++
		}
	}
	if n > 0 {
		out = append(out, cur)
	}
	return out
}

// resend sends the repeatable requests that were in flight to the lost member again, in
// their order; their latency counts from now.
func (r *relay) resend(o *out, now time.Time) int {
	s := r.sess
	s.mu.Lock()
	defer s.mu.Unlock()
	s.moving = false
	n := 0
	for i := range s.fifo {
		if e := &s.fifo[i]; e.waiting() && e.keptLen > 0 {
			o.member = append(o.member, s.keptFrame(e)...)
			e.start = now
			n++
		}
	}
	return n
}

// drain starts moving the session gracefully off a member that still serves (removed
// from the configuration): from now on the client's requests are held, and once the
// member has answered every request in flight the driver moves the session, which then
// has nothing in flight that a move could not repeat (a write in flight would close the
// session). Past until, the driver moves it anyway.
func (r *relay) drain(until time.Time, why string) {
	if r.state != relaying || !r.drainUntil.IsZero() {
		return
	}
	r.drainUntil, r.drainWhy = until, why
}

// drained reports a drain the driver should now finish with a move: the member owes
// nothing more, or the drain's time is up.
func (r *relay) drained(now time.Time) bool {
	return !r.drainUntil.IsZero() && (r.sent == 0 && len(r.own) == 0 || !now.Before(r.drainUntil))
}
