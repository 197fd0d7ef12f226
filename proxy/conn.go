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

// conn is one client connection and, once placed, its member connection.
type conn struct {
	srv    *Server
	client net.Conn
	ip     string // client IP, for the per-address limit
	member string // set once by attach, under srv.mu
	server net.Conn
	sess   *Session // set once by attach, under srv.mu; read by Sessions under it

	// wmu serializes writes to the client: member replies from serverToClient, and
	// zkgate's own answers to rejected requests, which keep the FIFO's order.
	wmu     sync.Mutex
	cw      *batchWriter
	scratch []inflight // reused under wmu

	abortOnce sync.Once
	reason    string // why it was aborted, set once
}

// abort closes both sockets; the relay goroutines then end on their own.
func (c *conn) abort(reason string) {
	c.abortOnce.Do(func() {
		c.reason = reason
		c.client.Close()
		if c.server != nil {
			c.server.Close()
		}
	})
}

var (
	errClientSilent = errors.New("client sent nothing for 1.5 session timeouts")
	errNoMember     = errors.New("no member can take the session")
)

// serve runs the handshake; a placed session's relay continues in a fresh goroutine, so
// the stack the handshake grew (dialing, logging) is given back, and an idle session
// holds only the small stacks of its two relay goroutines.
func (c *conn) serve() {
	fr, err := c.handshake()
	if err != nil {
		defer c.srv.wg.Done()
		defer c.srv.untrack(c)
		defer c.client.Close()
		c.refused(err)
		return
	}
	go c.relay(fr)
}

// refused logs and counts a connection that ended in the handshake.
func (c *conn) refused(err error) {
	switch {
	case errors.Is(err, errRefused):
		c.srv.obs.Refused("breaker")
		c.srv.rlog.Warn().Str("client", c.client.RemoteAddr().String()).Str("breaker", c.srv.brk.State().String()).
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
		c.srv.log.Warn().Str("client", c.client.RemoteAddr().String()).Err(err).Msg("refused client")
	}
}

// relay runs a placed session until either side ends, then settles what was in flight.
func (c *conn) relay(fr *jute.FrameReader) {
	defer c.srv.wg.Done()
	defer c.srv.untrack(c)
	defer c.client.Close()
	if e := c.srv.log.Debug(); e.Enabled() {
		e.Str("client", c.client.RemoteAddr().String()).Str("member", c.member).Str("session", fmt.Sprintf("0x%x", c.sess.id)).Msg("session placed")
	}
	c.wmu.Lock()
	c.cw = newBatchWriter(c.client, &c.srv.bufs, c.srv.cfg.BufferSize)
	c.wmu.Unlock()

	var wg sync.WaitGroup
	var upErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		upErr = c.clientToServer(fr)
		c.abort("client side ended")
	}()
	downErr := c.serverToClient()
	// downErr is net.ErrClosed when zkgate closed the member socket (the client left or
	// the session was aborted); anything else means the member side broke first.
	memberBroke := !errors.Is(downErr, net.ErrClosed)
	answered := 0
	if memberBroke && c.srv.brk.State() != breaker.Closed {
		// The breaker is not closed: answer what was in flight with the reject code, in
		// order, before the client sees the connection close.
		answered = c.rejectInFlight()
	}
	c.abort("member side ended")
	wg.Wait()
	// Sent requests without a member reply, those just answered by rejectInFlight included.
	lost := c.release(c.sess.drain(), memberBroke)
	// The session's logger is made here, not held for its whole life.
	log := c.srv.log.With().Str("client", c.client.RemoteAddr().String()).
		Str("member", c.member).Str("session", fmt.Sprintf("0x%x", c.sess.id)).Logger()
	switch {
	case isProtocolError(upErr) || isProtocolError(downErr):
		c.srv.obs.ProtocolError()
		log.Warn().AnErr("client_side", upErr).AnErr("member_side", downErr).Msg("session closed: protocol error")
	case errors.Is(upErr, errClientSilent):
		log.Warn().Err(upErr).Msg("closed silent client")
	case memberBroke:
		// The member closed the session's connection: it expired the session, it stopped
		// serving, or it died. The client reconnects through zkgate.
		log.Info().AnErr("member_side", downErr).Int("in_flight", lost).Int("answered_with_reject_code", answered).
			Msg("member closed the session connection; closed the client")
	case c.reason != "client side ended" && c.reason != "member side ended":
		log.Info().Str("reason", c.reason).Msg("session connection closed by zkgate; client will reconnect")
	default:
		log.Debug().AnErr("member_side", downErr).Msg("session connection ended")
	}
}

// refuseWait bounds how long a client may take to show a four-letter word or its
// ConnectRequest while the breaker turns new sessions away.
const refuseWait = 30 * time.Millisecond

var errRefused = errors.New("ensemble breaker refuses new sessions")

// rejectInFlight answers every request still owed an answer with the reject code, in
// order, when the member connection broke while the breaker is not closed. It returns
// how many it answered.
func (c *conn) rejectInFlight() int {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	n := c.answerLocked(true, true)
	c.client.SetWriteDeadline(time.Now().Add(time.Second)) // the session is ending: don't wait on a client that doesn't read
	c.cw.Flush()
	return n
}

// answerLocked writes the reject code for the requests the session owes an answer (see
// Session.answerOwed: all of them with sentToo, else the rejected ones next in line), in
// FIFO order, and releases their permits (as lost when the member connection died). The
// caller holds wmu and flushes. It returns how many it answered.
func (c *conn) answerLocked(sentToo, memberLost bool) int {
	entries := c.sess.answerOwed(c.scratch[:0], sentToo)
	code := c.srv.brk.RejectCode()
	zxid := c.sess.zxid()
	for _, f := range entries {
		var b [4 + jute.ReplyHeaderLen]byte
		h := jute.ReplyHeader{Xid: f.xid, Zxid: zxid, Err: code}
		c.cw.Write(h.Append(jute.AppendInt(b[:0], jute.ReplyHeaderLen)))
		if !f.rejected { // a sent request answered early; rejected ones were counted when refused
			c.srv.obs.Rejected(f.op, code)
		}
	}
	c.releasePermits(entries, memberLost)
	c.scratch = entries[:0]
	return len(entries)
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
// maintenance loop calls it; it gives up on a client that does not read.
func (c *conn) answerOpen() {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.cw == nil || c.answerLocked(true, false) == 0 {
		return
	}
	c.client.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	err := c.cw.Flush()
	c.client.SetWriteDeadline(time.Time{})
	if err != nil {
		c.abort("client does not read its replies")
	}
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
func (c *conn) reject(f inflight) error {
	f.rejected = true
	c.srv.obs.Rejected(f.op, c.srv.brk.RejectCode())
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.sess.push(f)
	if c.answerLocked(c.srv.brk.State() == breaker.Open, false) > 0 {
		return c.cw.Flush()
	}
	return nil
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
	fr := jute.NewFrameReaderSize(c.client, cfg.MaxFrame, cfg.BufferSize)
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
	c.client.SetDeadline(time.Time{})
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
		server, resp, err := c.dialMember(member, raw, deadline)
		if err != nil {
			s.obs.ConnectFailed(member, err)
			s.brk.ConnectFailed()
			s.ej.ConnectFailed(member)
			errs = append(errs, err)
			continue
		}
		s.ej.Connected(member)
		c.server = server
		s.attach(c, &Session{Client: c.client.RemoteAddr().String(), Member: member, id: resp.SessionID,
			passwd: resp.Passwd, timeout: time.Duration(resp.TimeOut) * time.Millisecond,
			lastZxid: req.LastZxidSeen, started: time.Now()})
		return nil
	}
	return fmt.Errorf("%w: %w", errNoMember, errors.Join(errs...))
}

// dialMember connects to member, sends the client's ConnectRequest bytes unchanged and
// forwards the member's ConnectResponse to the client.
func (c *conn) dialMember(member string, raw []byte, deadline time.Time) (net.Conn, *jute.ConnectResponse, error) {
	d := net.Dialer{Timeout: c.srv.cfg.DialTimeout, Deadline: deadline}
	server, err := d.Dial("tcp", member)
	if err != nil {
		return nil, nil, fmt.Errorf("member %s: %w", member, err)
	}
	server.SetDeadline(deadline)
	fail := func(err error) (net.Conn, *jute.ConnectResponse, error) {
		server.Close()
		return nil, nil, fmt.Errorf("member %s: %w", member, err)
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
	if _, err := c.client.Write(buf); err != nil {
		server.Close()
		return nil, nil, fmt.Errorf("client went away during handshake: %w", err)
	}
	server.SetDeadline(time.Time{})
	return server, &resp, nil
}

func describeRead(err error) error {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("client sent nothing complete before the handshake deadline: %w", err)
	}
	return err
}

// clientToServer relays client frames to the member. It decodes each request header,
// records the request in the session's FIFO before forwarding (so the reply cannot
// overtake it), and flushes only when no more client bytes are waiting.
//
// A client pings at a third of its session timeout, so one silent for 1.5 timeouts is gone
// (a host that vanished without a FIN): its read deadline closes the session connection.
func (c *conn) clientToServer(fr *jute.FrameReader) error {
	bw := newBatchWriter(c.server, &c.srv.bufs, c.srv.cfg.BufferSize)
	idle := c.sess.timeout + c.sess.timeout/2
	var armed, batchStart time.Time
	// Requests read in one batch (until the client's bytes run out) enter the FIFO
	// together, under one lock, before any of them can reach the member: before a write
	// that would flush the buffer, and before the flush at the end of the batch. They
	// share one arrival time.
	batch := make([]inflight, 0, 16)
	push := func() {
		if len(batch) > 0 {
			c.sess.pushAll(batch)
			clear(batch)
			batch = batch[:0]
		}
	}
	for {
		if idle > 0 {
			if now := c.srv.coarseNow(); now.Sub(armed) > idle/4 {
				c.client.SetReadDeadline(now.Add(idle))
				armed = now
			}
		}
		frame, err := fr.Next()
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
				return err
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return fmt.Errorf("%w (%v)", errClientSilent, idle)
			}
			var tl *jute.FrameTooLargeError
			if errors.As(err, &tl) || errors.Is(err, jute.ErrBadLength) {
				return protocolError{fmt.Errorf("client frame: %w", err)}
			}
			return err
		}
		if batchStart.IsZero() {
			batchStart = time.Now()
		}
		payload := frame[4:]
		h, err := jute.ParseRequestHeader(payload)
		if err != nil {
			return protocolError{fmt.Errorf("client request header: %w", err)}
		}
		f := c.note(h, payload[jute.RequestHeaderLen:], batchStart)
		c.srv.obs.Request(h.Type)
		c.sess.bytesIn.Add(uint64(len(frame)))
		allowed := true
		if needsPermit(h) {
			f.permit, allowed = c.srv.brk.Acquire()
		}
		if allowed {
			batch = append(batch, f)
			if bw.Available() < len(frame) {
				push() // this write flushes
			}
			if _, err := bw.Write(frame); err != nil {
				return err
			}
		} else {
			push() // the FIFO keeps the client's order
			if err := c.reject(f); err != nil {
				return err
			}
		}
		if fr.Buffered() == 0 { // the end of what the client sent: everything goes out
			push()
			batchStart = time.Time{}
			if err := bw.Flush(); err != nil {
				return err
			}
		}
	}
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

// serverToClient relays member frames to the client, matching each reply with the
// oldest request in flight and reporting its latency and outcome.
func (c *conn) serverToClient() error {
	fr := jute.NewFrameReaderSize(c.server, c.srv.cfg.MaxFrame, c.srv.cfg.BufferSize)
	var batchAt time.Time // replies read in one batch share one arrival time
	for {
		frame, err := fr.Next()
		if err != nil {
			var tl *jute.FrameTooLargeError
			if errors.As(err, &tl) || errors.Is(err, jute.ErrBadLength) {
				return protocolError{fmt.Errorf("member frame: %w", err)}
			}
			return err
		}
		if batchAt.IsZero() {
			batchAt = time.Now()
		}
		last := fr.Buffered() == 0
		if err := c.relayReply(frame, batchAt, last); err != nil {
			return err
		}
		if last {
			batchAt = time.Time{}
		}
	}
}

// relayReply forwards one member frame to the client under wmu, followed by zkgate's
// answers to any rejected requests queued right behind it.
func (c *conn) relayReply(frame []byte, now time.Time, flush bool) error {
	payload := frame[4:]
	h, err := jute.ParseReplyHeader(payload)
	if err != nil {
		return protocolError{fmt.Errorf("member reply header: %w", err)}
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
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
		latency := now.Sub(f.start)
		if f.permit {
			c.srv.brk.Release(h.Err, latency, false)
		}
		if f.xid >= 0 && !f.reported {
			c.srv.ej.Reply(c.member, h.Err, latency)
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
	if _, err := c.cw.Write(frame); err != nil {
		return err
	}
	c.answerLocked(false, false)
	if flush {
		return c.cw.Flush()
	}
	return nil
}
