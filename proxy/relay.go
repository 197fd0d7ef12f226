package proxy

import (
	"errors"
	"fmt"
	"time"

	"github.com/zkgate/zkgate/jute"
)

// relay is one placed session's relay: a state machine that owns the session's decisions
// and touches no socket. Its inputs are bytes from the client and from the member, the
// clock, the breaker's and health's decisions, and "your member is gone"; its outputs are
// bytes for each side (in an out), outcomes for the breaker, ejector and observer, and
// actions: an *ending (close the client) or a *moveOrder (dial another member).
//
// A driver feeds it: the epoll loop on Linux, the goroutine driver elsewhere, and tests
// directly. Calls on one relay must not overlap; the driver serialises them.
type relay struct {
	srv    *Server
	sess   *Session
	member string // the member connection's address
	state  relayState
	sent   int           // requests sent to the member and not replied to (out.flight counts them)
	own    []int32       // xids of zkgate's own packets on the member connection, oldest first
	held   []byte        // whole client frames that came during a move, released after it
	bye    bool          // closeSession sent, or auth failed: a member that closes now is not lost
	lim    *sessionLimit // nil when Config.Limits are off
	// a drain under way (Server.DrainOff): requests are held until the member has
	// answered those in flight (or drainUntil passes), then the session moves
	drainUntil time.Time
	drainWhy   string
	// the move under way (state moving)
	lost             string // the member the session moves off
	lostWhy          string
	lostAt, deadline time.Time
}

type relayState uint8

const (
	relaying relayState = iota
	moving              // the member is gone; the client's requests are held
)

// out is a driver's scratch for one input to a relay: the bytes it produced for each
// side, which the driver sends and then empties. An epoll loop has one for all its
// sessions, so an idle session holds no buffer; the goroutine driver has one per session.
// flight and latency are the driver's running figures, which the relays keep up to date
// (coalescing reads them).
type out struct {
	client, member []byte
	hot            *hotBatch // a relay loop's path figures; nil: straight to the tracker
	batch, owed    []inflight
	flight         int           // requests sent to members and not answered yet
	busy           int           // sessions with any of them (flight/busy: how deep requests queue)
	latency        time.Duration // moving average of the members' reply latency
}

func (o *out) reset() { o.client, o.member = o.client[:0], o.member[:0] }

func newRelay(s *Server, sess *Session) *relay {
	return &relay{srv: s, sess: sess, member: sess.member}
}

// moving reports a move under way; heldBytes is what the client sent meanwhile (or
// during a drain).
func (r *relay) moving() bool   { return r.state == moving }
func (r *relay) holding() bool  { return r.state == moving || !r.drainUntil.IsZero() }
func (r *relay) heldBytes() int { return len(r.held) }

// fromClient relays the whole client frames at the start of data to the member and
// returns how many bytes they took. It decodes each request header and records the
// request in the session's FIFO before the driver sends it (so the reply cannot overtake
// it); the frames of one read enter the FIFO together and share one arrival time.
//
// While the session moves, frames are held instead (see hold).
func (r *relay) fromClient(o *out, data []byte, now time.Time) (used int, end *ending) {
	batch := o.batch[:0]
	defer func() { o.batch = r.enqueue(o, batch) }()
	for {
		frame, h, err := r.nextRequest(data[used:])
		if err != nil {
			return used, &ending{side: "client", err: err}
		}
		if frame == nil {
			return used, nil
		}
		used += len(frame)
		if r.holding() {
			r.hold(o, h, frame)
			continue
		}
		f, end := r.note(o, h, frame, now)
		if end != nil {
			return used, end
		}
		r.srv.obs.Request(h.Type)
		if h.Type == jute.OpReconfig {
			batch = r.enqueue(o, batch) // the FIFO keeps the client's order
			r.refuseReconfig(o, f)
			continue
		}
		f.hot = r.hotRequest(o, h, frame)
		r.sess.bytesIn.Add(uint64(len(frame)))
		counted := needsPermit(h)
		if r.lim != nil && counted {
			inFlight := 0
			if r.lim.cfg.MaxInFlight > 0 {
				inFlight = r.sess.requestsInFlight() + len(batch)
			}
			if scope := r.lim.check(now, inFlight); scope != "" {
				batch = r.enqueue(o, batch) // the FIFO keeps the client's order
				r.limited(o, f, scope, now)
				continue
			}
			r.endEpisode(now, false)
		}
		allowed := true
		if counted && !r.sess.roServed {
			// A read-only member's sessions are served without a quorum, which the
			// breaker waits for; the member itself refuses their writes.
			f.permit, allowed = r.srv.brk.Acquire()
		}
		if allowed {
			if repeatable(h.Type) || h.Type == jute.OpMulti && jute.MultiChecksOnly(frame[4+jute.RequestHeaderLen:]) {
				f.frame = frame // kept by enqueue, for a move
			}
			batch = append(batch, f)
			o.member = append(o.member, frame...)
			continue
		}
		batch = r.enqueue(o, batch) // the FIFO keeps the client's order
		r.reject(o, f)
	}
}

// readMember is the relay's word on reading the member, given whether the client takes
// its replies (clientTakes: what zkgate owes the client is under the high-water mark).
// While replies wait on the client the member is not read, and requests in flight
// meanwhile say nothing of the member's speed, for the breaker or the ejector. The
// session keeps that state, whichever member it is on: a driver asks on every change
// of flow, including right after a move, and does only the I/O.
func (r *relay) readMember(clientTakes bool, now time.Time) bool {
	r.sess.hold(!clientTakes, now)
	return clientTakes
}

// nextRequest cuts the next whole frame off data and decodes its header; a nil frame
// means data holds no whole frame.
func (r *relay) nextRequest(data []byte) ([]byte, jute.RequestHeader, error) {
	frame, _, err := jute.NextFrame(data, r.srv.conf().MaxFrame)
	if err != nil {
		return nil, jute.RequestHeader{}, protocolError{fmt.Errorf("client frame: %w", err)}
	}
	if frame == nil {
		return nil, jute.RequestHeader{}, nil
	}
	h, err := jute.ParseRequestHeader(frame[4:])
	if err != nil {
		return nil, h, protocolError{fmt.Errorf("client request header: %w", err)}
	}
	return frame, h, nil
}

// addSent changes the session's count of requests at its member by d, and the driver's
// figures with it: its flight, and its busy sessions (those with any request there).
func (r *relay) addSent(o *out, d int) {
	was := r.sent
	r.sent += d
	o.flight += d
	switch {
	case was == 0 && r.sent > 0:
		o.busy++
	case was > 0 && r.sent == 0:
		o.busy--
	}
}

// enqueue records requests sent to the member in the session's FIFO and in the in-flight
// counts, and returns the batch emptied for reuse.
func (r *relay) enqueue(o *out, batch []inflight) []inflight {
	if len(batch) > 0 {
		r.sess.pushAll(batch)
		r.addSent(o, len(batch))
	}
	clear(batch)
	return batch[:0]
}

// note builds the FIFO entry for a request, decoding the body only where the session
// must remember something: a watch, an auth packet, re-registered watches, SASL. An auth
// packet past what zkgate keeps for a replay is refused, as a server refuses a failed
// auth: AUTHFAILED, then the connection closes.
func (r *relay) note(o *out, h jute.RequestHeader, frame []byte, start time.Time) (inflight, *ending) {
	body := frame[4+jute.RequestHeaderLen:]
	f := inflight{xid: h.Xid, op: h.Type, start: start}
	switch h.Type {
	case jute.OpExists, jute.OpGetData, jute.OpGetChildren, jute.OpGetChildren2:
		// The watch flag is the body's last byte; decode the path only when it is set.
		// What it registers depends on the reply (watchrules.go).
		if len(body) > 0 && body[len(body)-1] != 0 {
			var req jute.PathWatchRequest
			if jute.Decode(body, &req) == nil {
				f.path, f.watched, f.mode = req.Path, true, -1
			}
		}
		// A read of the ensemble's config: its reply loses the members' client addresses.
		f.config = h.Type == jute.OpGetData && configRequest(body)
	case jute.OpAddWatch, jute.OpRemoveWatches:
		var req jute.PathTypeRequest
		if jute.Decode(body, &req) == nil {
			// addWatch registers its mode, removeWatches drops its type, once answered OK
			f.path, f.watched, f.mode = req.Path, true, req.Type
		}
	case jute.OpAuth:
		if err := r.sess.addAuth(body); err != nil {
			z := r.sess.zxid()
			o.client = appendReply(o.client, h.Xid, z, jute.ErrAuthFailed)
			return f, &ending{side: "zkgate", reason: "auth refused: " + err.Error()}
		}
	case jute.OpSASL:
		r.sess.usedSASL()
	case jute.OpCloseSession:
		r.bye = true
	case jute.OpSetWatches:
		var req jute.SetWatches
		if jute.Decode(body, &req) == nil {
			r.sess.addWatchLists(jute.SetWatches2{DataWatches: req.DataWatches, ExistWatches: req.ExistWatches,
				ChildWatches: req.ChildWatches})
		}
	case jute.OpSetWatches2:
		var req jute.SetWatches2
		if jute.Decode(body, &req) == nil {
			r.sess.addWatchLists(req)
		}
	}
	return f, nil
}

// needsPermit: requests that keep a session alive (ping, closeSession, auth and the
// watch re-registration of a reconnect) pass even while the breaker is open, so the
// breaker itself never kills a session.
func needsPermit(h jute.RequestHeader) bool {
	switch h.Type {
	case jute.OpPing, jute.OpCloseSession, jute.OpAuth, jute.OpSetWatches, jute.OpSetWatches2, jute.OpSASL:
		return false
	}
	return h.Xid >= 0
}

// repeatable requests change nothing on the server, so a move may send them again to
// the new member when the old one took their answers with it.
func repeatable(op jute.OpCode) bool {
	switch op {
	case jute.OpGetData, jute.OpExists, jute.OpGetChildren, jute.OpGetChildren2, jute.OpGetACL,
		jute.OpGetAllChildrenNumber, jute.OpGetEphemerals, jute.OpWhoAmI, jute.OpMultiRead,
		jute.OpCheckWatches, jute.OpSync:
		return true
	}
	return false
}

// fromMember relays the whole member frames at the start of data to the client, matching
// each reply with the oldest request in flight and reporting its latency and outcome, and
// returns how many bytes they took. Replies of one read share one arrival time.
func (r *relay) fromMember(o *out, data []byte, now time.Time) (used int, end *ending) {
	r.srv.ejector().Answered(r.member, now)
	for {
		frame, _, err := jute.NextFrame(data[used:], r.srv.conf().MaxFrame)
		if err != nil {
			return used, &ending{side: "member", err: protocolError{fmt.Errorf("member frame: %w", err)}}
		}
		if frame == nil {
			return used, nil
		}
		if err := r.reply(o, frame, now); err != nil {
			if errors.Is(err, errMissedEvents) { // zkgate's decision, logged as such
				// Counted with the moves that closed their client (outcome closed-watches),
				// after the move itself was counted: the client does see a disconnect.
				r.srv.movesClosed.Add(1)
				r.srv.obs.Moved(r.member, "", MoveWatches, 0)
				return used, &ending{side: "zkgate", reason: err.Error()}
			}
			return used, &ending{side: "member", err: err}
		}
		used += len(frame)
	}
}

// reply forwards one member frame to the client, followed by zkgate's answers to any
// rejected requests queued right behind it. Replies to zkgate's own packets (a move's
// replay) stay with zkgate.
func (r *relay) reply(o *out, frame []byte, now time.Time) error {
	payload := frame[4:]
	h, err := jute.ParseReplyHeader(payload)
	if err != nil {
		return protocolError{fmt.Errorf("member reply header: %w", err)}
	}
	switch {
	case h.Xid == jute.XidNotification:
		var ev jute.WatcherEvent
		if jute.Decode(payload[jute.ReplyHeaderLen:], &ev) == nil {
			r.sess.fired(ev.Type, ev.Path)
			r.srv.obs.Event(ev.Type)
		}
	case len(r.own) > 0 && h.Xid == r.own[0]:
		r.own = r.own[1:]
		if h.Xid == jute.XidSetWatches && h.Err == jute.ErrOK {
			if err := r.sess.caughtUp(h.Zxid); err != nil {
				return err
			}
		}
		if h.Err != jute.ErrOK {
			r.srv.log.Warn().Str("member", r.member).Int32("xid", h.Xid).Str("err", h.Err.String()).
				Str("session", fmt.Sprintf("0x%x", r.sess.id)).Msg("member refused a moved session's replayed packet")
			if h.Xid == jute.XidAuth {
				r.bye = true // the member closes the connection after a failed auth
				return fmt.Errorf("%w: %s", errReplayAuth, h.Err)
			}
		}
		return nil
	default:
		f, forward, err := r.sess.pop(h, now)
		if err != nil {
			return protocolError{err}
		}
		if top := r.srv.topZxid.Load(); h.Zxid > top && r.srv.topZxid.CompareAndSwap(top, h.Zxid) {
			r.srv.committedAt.Store(now.UnixNano())
		}
		r.addSent(o, -1)
		r.outcome(o, f, h, now)
		if f.hot != "" {
			r.hotReply(o, &f, h.Err, len(frame))
		}
		if f.op == jute.OpAuth && h.Err == jute.ErrAuthFailed {
			r.bye = true // the member closes the connection after a failed auth; so does zkgate
		}
		if !forward { // zkgate answered it already, while the breaker was open
			return nil
		}
		if f.config { // the members' client addresses stay behind zkgate (zkconfig.go)
			frame = rewriteConfigReply(frame)
		}
	}
	r.sess.bytesOut.Add(uint64(len(frame)))
	o.client = append(o.client, frame...)
	r.answer(o, false, false)
	return nil
}

// outcome reports a reply's latency and result to the breaker, the ejector and the
// observer, and records the watch a successful request set or removed.
func (r *relay) outcome(o *out, f inflight, h jute.ReplyHeader, now time.Time) {
	latency := now.Sub(f.start)
	if f.xid >= 0 && !f.held {
		o.latency += (latency - o.latency) / 64 // a moving average over about 64 replies
	}
	memberLatency := f.service // the member's part (Session.serviceStart)
	if f.held {                // it waited on the client, not on the member
		memberLatency = 0
	}
	if f.permit {
		brkLatency := memberLatency
		if !r.srv.countsSlow(now) {
			// No two sessions stalled at the last sweep, or a move settling: a slow reply
			// is load, not the ensemble's trouble (see sweepStalls).
			brkLatency = min(brkLatency, r.srv.brk.SlowCall())
		}
		r.srv.brk.Release(h.Err, brkLatency, false)
	}
	if f.xid >= 0 && !f.reported {
		r.srv.ejector().Reply(r.member, r.sess.id, h.Err, memberLatency)
	}
	r.srv.obs.Reply(r.member, f.op, h.Err, latency)
	if f.watched {
		r.sess.applyWatch(f.op, f.path, f.mode, h.Err)
	}
}

// errReplayAuth: the new member refused an auth packet the old one had accepted.
var errReplayAuth = errors.New("a moved session's replayed auth was refused")

// appendReply appends a bare reply frame: a header and no body.
func appendReply(dst []byte, xid int32, zxid int64, code jute.ErrCode) []byte {
	h := jute.ReplyHeader{Xid: xid, Zxid: zxid, Err: code}
	return h.Append(jute.AppendInt(dst, jute.ReplyHeaderLen))
}
