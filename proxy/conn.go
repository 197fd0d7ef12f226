package proxy

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/zkgate/zkgate/breaker"
	"github.com/zkgate/zkgate/jute"
)

// conn is one client connection and, once placed, its member connection. The handshake
// runs on the connection's own goroutine with net.Conns; a placed session then moves to a
// relay loop, which owns both sockets and every field below the line.
type conn struct {
	srv    *Server
	client net.Conn // until the loop takes the socket
	addr   string   // client address
	ip     string   // client IP, for the per-address limit
	member string   // set once by attach, under srv.mu
	sess   *Session // set once by attach, under srv.mu; read by Sessions under it

	amu     sync.Mutex // guards below: abort comes from any goroutine
	server  net.Conn   // the member connection, until the loop takes the socket
	loop    *loop      // set when the session moves to its loop
	aborted string     // why zkgate ended it before it reached the loop

	// owned by the loop
	ce, me   end // client and member sockets
	closed   bool
	lastRead time.Time
	idle     time.Duration // a client silent this long is gone
	sent     int           // requests sent to the member and not replied to (loop.flight counts them)
	scratch  []inflight
}

// ending says how a session ended: which side, with what error, or zkgate's reason.
type ending struct {
	side   string // "client", "member" or "zkgate"
	err    error
	reason string
}

// abort ends the session: on its loop once it has one, else by closing the handshake's
// sockets.
func (c *conn) abort(reason string) {
	c.amu.Lock()
	l := c.loop
	if l == nil {
		if c.aborted == "" {
			c.aborted = reason
		}
		server := c.server
		c.amu.Unlock()
		c.client.Close()
		if server != nil {
			server.Close()
		}
		return
	}
	c.amu.Unlock()
	l.post(func() { l.finish(c, ending{side: "zkgate", reason: reason}) })
}

var (
	errClientSilent = errors.New("client sent nothing for 1.5 session timeouts")
	errNoMember     = errors.New("no member can take the session")
)

// serve runs the handshake; a placed session moves to a relay loop, and this goroutine
// (with the stack the handshake grew) ends.
func (c *conn) serve() {
	fr, err := c.handshake()
	if err != nil {
		defer c.srv.wg.Done()
		defer c.srv.untrack(c)
		defer c.client.Close()
		c.amu.Lock()
		if c.server != nil { // placed, but the client went away before its ConnectResponse
			c.server.Close()
		}
		c.amu.Unlock()
		c.refused(err)
		return
	}
	c.adopt(fr)
}

// refused logs and counts a connection that ended in the handshake.
func (c *conn) refused(err error) {
	switch {
	case errors.Is(err, errRefused):
		c.srv.obs.Refused("breaker")
		c.srv.rlog.Warn().Str("client", c.addr).Str("breaker", c.srv.brk.State().String()).
			Msg("refused client: ensemble breaker refuses new sessions")
	case errors.Is(err, errFourLetterDone):
	default:
		reason := "handshake"
		if errors.Is(err, errNoMember) {
			reason = "no-member"
		}
		if isProtocolError(err) {
			c.srv.obs.ProtocolError()
		}
		c.srv.obs.Refused(reason)
		c.srv.log.Warn().Str("client", c.addr).Err(err).Msg("refused client")
	}
}

// adopt moves a placed session to a relay loop, with the bytes the client sent right
// behind its ConnectRequest.
func (c *conn) adopt(fr *jute.FrameReader) {
	fr.Release()
	var early []byte
	if n := fr.Reader().Buffered(); n > 0 {
		b, _ := fr.Reader().Peek(n)
		early = append([]byte(nil), b...)
	}
	c.idle = c.sess.timeout + c.sess.timeout/2
	c.amu.Lock()
	server := c.server
	c.amu.Unlock()
	cfd, err := detach(c.client)
	if err != nil {
		server.Close()
		c.ended(ending{side: "zkgate", reason: "taking over the client socket: " + err.Error()}, false, 0)
		return
	}
	mfd, err := detach(server)
	if err != nil {
		closeFD(cfd)
		c.ended(ending{side: "zkgate", reason: "taking over the member socket: " + err.Error()}, false, 0)
		return
	}
	l := c.srv.pickLoop()
	c.amu.Lock()
	reason := c.aborted
	if reason == "" {
		c.loop = l
	}
	c.amu.Unlock()
	if reason == "" && l.post(func() { l.register(c, cfd, mfd, early) }) {
		return
	}
	l.sessions.Add(-1)
	closeFD(cfd)
	closeFD(mfd)
	if reason == "" {
		reason = "zkgate shutting down"
	}
	c.ended(ending{side: "zkgate", reason: reason}, false, 0)
}

// ended settles and logs a placed session once its sockets are closed.
func (c *conn) ended(why ending, memberBroke bool, answered int) {
	defer c.srv.wg.Done()
	defer c.srv.untrack(c)
	// Sent requests without a member reply, those just answered with the reject code included.
	lost := c.release(c.sess.drain(), memberBroke)
	// The session's logger is made here, not held for its whole life.
	log := c.srv.log.With().Str("client", c.addr).
		Str("member", c.member).Str("session", fmt.Sprintf("0x%x", c.sess.id)).Logger()
	switch {
	case isProtocolError(why.err):
		c.srv.obs.ProtocolError()
		log.Warn().Str("side", why.side).Err(why.err).Msg("session closed: protocol error")
	case errors.Is(why.err, errClientSilent):
		log.Warn().Err(why.err).Msg("closed silent client")
	case memberBroke:
		// The member closed the session's connection: it expired the session, it stopped
		// serving, or it died. The client reconnects through zkgate.
		log.Info().AnErr("member_side", why.err).Int("in_flight", lost).Int("answered_with_reject_code", answered).
			Msg("member closed the session connection; closed the client")
	case why.side == "zkgate":
		log.Info().Str("reason", why.reason).Msg("session connection closed by zkgate; client will reconnect")
	default:
		log.Debug().AnErr("client_side", why.err).Msg("session connection ended")
	}
}

// refuseWait bounds how long a client may take to show a four-letter word or its
// ConnectRequest while the breaker turns new sessions away.
const refuseWait = 30 * time.Millisecond

var errRefused = errors.New("ensemble breaker refuses new sessions")

// handshakeBuffer is the client read buffer during the handshake: a ConnectRequest is
// about 50 bytes; a larger one goes through the frame reader's pool.
const handshakeBuffer = 1 << 10

// answer appends the reject code for the requests the session owes an answer (see
// Session.answerOwed: all of them with sentToo, else the rejected ones next in line) to
// buf, in FIFO order, and releases their permits (as lost when the member connection
// died). It returns buf and how many it answered.
func (c *conn) answer(buf []byte, sentToo, memberLost bool) ([]byte, int) {
	entries := c.sess.answerOwed(c.scratch[:0], sentToo)
	if len(entries) == 0 {
		return buf, 0
	}
	code := c.srv.brk.RejectCode()
	zxid := c.sess.zxid()
	for _, f := range entries {
		h := jute.ReplyHeader{Xid: f.xid, Zxid: zxid, Err: code}
		buf = h.Append(jute.AppendInt(buf, jute.ReplyHeaderLen))
		if !f.rejected { // a sent request answered early; rejected ones were counted when refused
			c.srv.obs.Rejected(f.op, code)
		}
	}
	c.releasePermits(entries, memberLost)
	clear(entries)
	c.scratch = entries[:0]
	return buf, len(entries)
}

// releasePermits gives back the permits of requests that get no member reply counted:
// their outcome is what their age says (slow by now, or not), or lost.
func (c *conn) releasePermits(entries []inflight, lost bool) {
	now := time.Now()
	for _, f := range entries {
		if f.permit {
			c.srv.brk.Release(0, now.Sub(f.start), lost)
		}
	}
}

// answerOpen answers everything the session is owed at once while the breaker is open,
// so refused requests are not held behind requests a hung member will not answer. The
// maintenance loop calls it; the session's loop writes the answers.
func (c *conn) answerOpen() {
	c.amu.Lock()
	l := c.loop
	c.amu.Unlock()
	if l == nil || !c.sess.owes() {
		return
	}
	l.post(func() {
		if c.closed {
			return
		}
		var n int
		if l.toClient, n = c.answer(l.toClient[:0], true, false); n > 0 {
			l.send(&c.ce, l.toClient)
		}
		l.toClient = l.toClient[:0]
	})
}

// release settles the sent requests that will get no reply from the member when the
// session ends: their permits go back, as lost when the member connection broke and as
// what they were (fast, or slow by now) when the client went away. It returns how many
// there were.
func (c *conn) release(entries []inflight, memberBroke bool) int {
	c.releasePermits(entries, memberBroke)
	if memberBroke && len(entries) > 0 {
		c.srv.obs.Lost(c.member, len(entries))
		c.srv.ej.Lost(c.member, len(entries))
	}
	return len(entries)
}

// reject answers a request zkgate will not send, in FIFO order: after the replies to the
// requests already in flight, or, while the breaker is open, at once together with them.
func (c *conn) reject(l *loop, f inflight) {
	f.rejected = true
	c.srv.obs.Rejected(f.op, c.srv.brk.RejectCode())
	c.sess.push(f)
	l.toClient, _ = c.answer(l.toClient, c.srv.brk.State() == breaker.Open, false)
}

type protocolError struct{ error }

func (p protocolError) Unwrap() error { return p.error }

func isProtocolError(err error) bool {
	var p protocolError
	return errors.As(err, &p)
}

var errFourLetterDone = errors.New("four-letter word answered")

// handshake reads the client's first bytes under the handshake deadline: a four-letter
// word is answered here; a ConnectRequest is routed to a member whose ConnectResponse
// goes back to the client. On success the client's frame reader is returned for the relay.
func (c *conn) handshake() (*jute.FrameReader, error) {
	cfg := c.srv.cfg
	deadline := time.Now().Add(cfg.HandshakeTimeout)
	refusing := c.srv.brk.Refusing()
	if refusing {
		// The breaker turns new sessions away: a client gets refuseWait to show a
		// four-letter word or a reconnecting session, then it is closed.
		c.client.SetDeadline(time.Now().Add(refuseWait))
	} else {
		c.client.SetDeadline(deadline)
	}
	fr := jute.NewFrameReaderSize(c.client, cfg.MaxFrame, handshakeBuffer)
	first, err := fr.Reader().Peek(4)
	if err != nil {
		if refusing {
			return nil, errRefused
		}
		return nil, fmt.Errorf("handshake: reading first bytes: %w", describeRead(err))
	}
	first = append([]byte(nil), first...) // for the refusal message; Peek's slice does not last
	if cmd, ok := jute.FourLetterWord(first); ok {
		fr.Reader().Discard(4)
		if cmd == "stmk" {
			fr.Reader().Discard(jute.StmkArgLen)
		}
		c.answerFourLetter(cmd)
		return nil, errFourLetterDone
	}
	frame, err := fr.Next()
	if err != nil {
		var tl *jute.FrameTooLargeError
		if errors.As(err, &tl) || errors.Is(err, jute.ErrBadLength) {
			// Most often not a ZooKeeper client at all (an HTTP probe, TLS, a port scan):
			// the first bytes say which.
			return nil, protocolError{fmt.Errorf("handshake: not a ZooKeeper ConnectRequest (first bytes %q): %w", first, err)}
		}
		if refusing {
			return nil, errRefused
		}
		return nil, fmt.Errorf("handshake: reading ConnectRequest: %w", describeRead(err))
	}
	var req jute.ConnectRequest
	if err := jute.Decode(frame[4:], &req); err != nil {
		return nil, protocolError{fmt.Errorf("handshake: bad ConnectRequest (%d bytes): %w", len(frame)-4, err)}
	}
	// A reconnecting session (an id) is let through whenever health allows, whatever the
	// breaker: refusing it would let the session expire. Its requests still meet the
	// breaker. A new session waits for the breaker.
	if !c.srv.brk.AdmitSession(req.SessionID != 0) {
		return nil, errRefused
	}
	c.client.SetDeadline(deadline)
	raw := append([]byte(nil), frame...)
	if err := c.place(raw, &req, deadline); err != nil {
		return nil, err
	}
	return fr, nil
}

// place tries members in Route's order until one answers the ConnectRequest, then
// forwards its ConnectResponse to the client.
func (c *conn) place(raw []byte, req *jute.ConnectRequest, deadline time.Time) error {
	s := c.srv
	cands := Route(RouteInput{
		View: s.views.View(), Policy: s.cfg.Policy, Sessions: s.sessionsPerMember(),
		LastZxidSeen: req.LastZxidSeen, ReadOnly: req.ReadOnly, Counter: s.rr.Add(1),
		Excluded: s.ej.Excluded(),
	})
	if len(cands) == 0 {
		return fmt.Errorf("session 0x%x lastZxid 0x%x: %w", req.SessionID, req.LastZxidSeen, errNoMember)
	}
	var errs []error
	for _, member := range cands {
		if time.Now().After(deadline) {
			errs = append(errs, errors.New("handshake deadline passed"))
			break
		}
		server, resp, respFrame, err := c.dialMember(member, raw, deadline)
		if err != nil {
			s.obs.ConnectFailed(member, err)
			s.brk.ConnectFailed()
			s.ej.ConnectFailed(member)
			errs = append(errs, err)
			continue
		}
		s.ej.Connected(member)
		c.amu.Lock()
		c.server = server
		c.amu.Unlock()
		// Attached before the client has its ConnectResponse: once the client sees its
		// session, zkgate's status and cons list it.
		s.attach(c, &Session{Client: c.addr, Member: member, id: resp.SessionID,
			passwd: resp.Passwd, timeout: time.Duration(resp.TimeOut) * time.Millisecond,
			lastZxid: req.LastZxidSeen, started: time.Now()})
		if _, err := c.client.Write(respFrame); err != nil {
			return fmt.Errorf("client went away during handshake: %w", err)
		}
		return nil
	}
	return fmt.Errorf("%w: %w", errNoMember, errors.Join(errs...))
}

// dialMember connects to member, sends the client's ConnectRequest bytes unchanged and
// reads the member's ConnectResponse, decoded and as a frame for the client.
func (c *conn) dialMember(member string, raw []byte, deadline time.Time) (net.Conn, *jute.ConnectResponse, []byte, error) {
	d := net.Dialer{Timeout: c.srv.cfg.DialTimeout, Deadline: deadline}
	server, err := d.Dial("tcp", member)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("member %s: %w", member, err)
	}
	server.SetDeadline(deadline)
	fail := func(err error) (net.Conn, *jute.ConnectResponse, []byte, error) {
		server.Close()
		return nil, nil, nil, fmt.Errorf("member %s: %w", member, err)
	}
	if _, err := server.Write(raw); err != nil {
		return fail(err)
	}
	var lenb [4]byte
	if _, err := io.ReadFull(server, lenb[:]); err != nil {
		// A member closes without a reply when the client's zxid is ahead of it, or when
		// it does not serve: try the next one.
		return fail(fmt.Errorf("closed without a ConnectResponse: %w", err))
	}
	n := int(int32(uint32(lenb[0])<<24 | uint32(lenb[1])<<16 | uint32(lenb[2])<<8 | uint32(lenb[3])))
	if n < 0 || n > 1024 {
		return fail(fmt.Errorf("ConnectResponse length %d", n))
	}
	buf := make([]byte, 4+n)
	copy(buf, lenb[:])
	if _, err := io.ReadFull(server, buf[4:]); err != nil {
		return fail(fmt.Errorf("short ConnectResponse: %w", err))
	}
	var resp jute.ConnectResponse
	if err := jute.Decode(buf[4:], &resp); err != nil {
		return fail(fmt.Errorf("bad ConnectResponse: %w", err))
	}
	return server, &resp, buf, nil
}

func describeRead(err error) error {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("client sent nothing complete before the handshake deadline: %w", err)
	}
	return err
}

// fromClient relays the whole client frames at the start of data to the member and
// returns how many bytes they took. It decodes each request header and records the
// request in the session's FIFO before the loop sends it (so the reply cannot overtake
// it); the frames of one read enter the FIFO together and share one arrival time.
func (c *conn) fromClient(l *loop, data []byte, now time.Time) (used int, err error) {
	batch := l.batch[:0]
	defer func() { l.batch = c.enqueue(l, batch) }()
	for {
		frame, _, err := jute.NextFrame(data[used:], c.srv.cfg.MaxFrame)
		if err != nil {
			return used, protocolError{fmt.Errorf("client frame: %w", err)}
		}
		if frame == nil {
			return used, nil
		}
		payload := frame[4:]
		h, err := jute.ParseRequestHeader(payload)
		if err != nil {
			return used, protocolError{fmt.Errorf("client request header: %w", err)}
		}
		used += len(frame)
		f := c.note(h, payload[jute.RequestHeaderLen:], now)
		c.srv.obs.Request(h.Type)
		c.sess.bytesIn.Add(uint64(len(frame)))
		allowed := true
		if needsPermit(h) {
			f.permit, allowed = c.srv.brk.Acquire()
		}
		if allowed {
			batch = append(batch, f)
			l.toMember = append(l.toMember, frame...)
			continue
		}
		batch = c.enqueue(l, batch) // the FIFO keeps the client's order
		c.reject(l, f)
	}
}

// enqueue records requests sent to the member in the session's FIFO and in the in-flight
// counts (coalescing reads them), and returns the batch emptied for reuse.
func (c *conn) enqueue(l *loop, batch []inflight) []inflight {
	if len(batch) > 0 {
		c.sess.pushAll(batch)
		c.sent += len(batch)
		l.flight += len(batch)
	}
	clear(batch)
	return batch[:0]
}

// note builds the FIFO entry for a request, decoding the body only where the session
// must remember something: a watch, an auth packet, re-registered watches.
func (c *conn) note(h jute.RequestHeader, body []byte, start time.Time) inflight {
	f := inflight{xid: h.Xid, op: h.Type, start: start}
	switch h.Type {
	case jute.OpExists, jute.OpGetData, jute.OpGetChildren, jute.OpGetChildren2:
		// The watch flag is the body's last byte; decode the path only when it is set.
		if len(body) > 0 && body[len(body)-1] != 0 {
			var r jute.PathWatchRequest
			if jute.Decode(body, &r) == nil {
				f.path, f.watch = r.Path, watchData
				switch h.Type {
				case jute.OpExists:
					f.watch = watchExist
				case jute.OpGetChildren, jute.OpGetChildren2:
					f.watch = watchChild
				}
			}
		}
	case jute.OpAddWatch:
		var r jute.AddWatchRequest
		if jute.Decode(body, &r) == nil {
			f.path, f.watch = r.Path, watchPersistent
			if r.Type == jute.AddWatchPersistentRecursive {
				f.watch = watchRecursive
			}
		}
	case jute.OpAuth:
		c.sess.addAuth(body)
	case jute.OpSetWatches:
		var r jute.SetWatches
		if jute.Decode(body, &r) == nil {
			c.sess.addWatches(r.DataWatches, watchData)
			c.sess.addWatches(r.ExistWatches, watchExist)
			c.sess.addWatches(r.ChildWatches, watchChild)
		}
	case jute.OpSetWatches2:
		var r jute.SetWatches2
		if jute.Decode(body, &r) == nil {
			c.sess.addWatches(r.DataWatches, watchData)
			c.sess.addWatches(r.ExistWatches, watchExist)
			c.sess.addWatches(r.ChildWatches, watchChild)
			c.sess.addWatches(r.PersistentWatches, watchPersistent)
			c.sess.addWatches(r.PersistentRecursiveWatches, watchRecursive)
		}
	}
	return f
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

// fromMember relays the whole member frames at the start of data to the client, matching
// each reply with the oldest request in flight and reporting its latency and outcome, and
// returns how many bytes they took. Replies of one read share one arrival time.
func (c *conn) fromMember(l *loop, data []byte, now time.Time) (used int, err error) {
	for {
		frame, _, err := jute.NextFrame(data[used:], c.srv.cfg.MaxFrame)
		if err != nil {
			return used, protocolError{fmt.Errorf("member frame: %w", err)}
		}
		if frame == nil {
			return used, nil
		}
		if err := c.reply(l, frame, now); err != nil {
			return used, err
		}
		used += len(frame)
	}
}

// reply forwards one member frame to the client, followed by zkgate's answers to any
// rejected requests queued right behind it.
func (c *conn) reply(l *loop, frame []byte, now time.Time) error {
	payload := frame[4:]
	h, err := jute.ParseReplyHeader(payload)
	if err != nil {
		return protocolError{fmt.Errorf("member reply header: %w", err)}
	}
	forward := true
	if h.Xid == jute.XidNotification {
		var ev jute.WatcherEvent
		if jute.Decode(payload[jute.ReplyHeaderLen:], &ev) == nil {
			c.sess.fired(ev.Type, ev.Path)
			c.srv.obs.Event(ev.Type)
		}
	} else {
		var f inflight
		var err error
		f, forward, err = c.sess.pop(h, now)
		if err != nil {
			return protocolError{err}
		}
		c.sent--
		l.flight--
		latency := now.Sub(f.start)
		if f.xid >= 0 && !f.held {
			l.latency += (latency - l.latency) / 64 // a moving average over about 64 replies
		}
		memberLatency := latency
		if f.held { // it waited on the client, not on the member
			memberLatency = 0
		}
		if f.permit {
			c.srv.brk.Release(h.Err, memberLatency, false)
		}
		if f.xid >= 0 && !f.reported {
			c.srv.ej.Reply(c.member, h.Err, memberLatency)
		}
		c.srv.obs.Reply(c.member, f.op, h.Err, latency)
		if forward && f.watch != watchNone && (h.Err == jute.ErrOK || f.watch == watchExist && h.Err == jute.ErrNoNode) {
			c.sess.addWatch(f.path, f.watch)
		}
	}
	if !forward { // zkgate answered it already, while the breaker was open
		return nil
	}
	c.sess.bytesOut.Add(uint64(len(frame)))
	l.toClient = append(l.toClient, frame...)
	l.toClient, _ = c.answer(l.toClient, false, false)
	return nil
}
