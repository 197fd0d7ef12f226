package proxy

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/zkgate/zkgate/jute"
)

// conn is one client connection and, once placed, its member connection.
type conn struct {
	srv    *Server
	client net.Conn
	member string // set once by attach, under srv.mu
	server net.Conn
	sess   *Session // set once by attach, under srv.mu; read by Sessions under it

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
	errNotAdmitted  = errors.New("ensemble breaker refuses new sessions")
)

func (c *conn) serve() {
	defer c.srv.wg.Done()
	defer c.srv.untrack(c)
	defer c.client.Close()
	log := c.srv.log.With().Str("client", c.client.RemoteAddr().String()).Logger()

	fr, err := c.handshake()
	if err != nil {
		if !errors.Is(err, errFourLetterDone) {
			log.Warn().Err(err).Msg("refused client")
		}
		return
	}
	log = log.With().Str("member", c.member).Str("session", fmt.Sprintf("0x%x", c.sess.id)).Logger()
	log.Debug().Msg("session placed")

	var wg sync.WaitGroup
	var upErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		upErr = c.clientToServer(fr)
		c.abort("client side ended")
	}()
	downErr := c.serverToClient()
	c.abort("member side ended")
	wg.Wait()

	// downErr is net.ErrClosed when zkgate closed the member socket (the client left or
	// the session was aborted); anything else means the member side broke first.
	memberBroke := !errors.Is(downErr, net.ErrClosed)
	lost := c.sess.inFlight()
	if lost > 0 && memberBroke {
		c.srv.obs.Lost(c.member, lost)
	}
	switch {
	case isProtocolError(upErr) || isProtocolError(downErr):
		log.Warn().AnErr("client_side", upErr).AnErr("member_side", downErr).Msg("session closed: protocol error")
	case errors.Is(upErr, errClientSilent):
		log.Warn().Err(upErr).Msg("closed silent client")
	case memberBroke:
		// The member closed the session's connection: it expired the session, it stopped
		// serving, or it died. The client reconnects through zkgate.
		log.Info().AnErr("member_side", downErr).Int("in_flight", lost).Msg("member closed the session connection; closed the client")
	case c.reason != "client side ended" && c.reason != "member side ended":
		log.Info().Str("reason", c.reason).Msg("session connection closed by zkgate; client will reconnect")
	default:
		log.Debug().AnErr("member_side", downErr).Msg("session connection ended")
	}
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
	c.client.SetDeadline(deadline)
	fr := jute.NewFrameReaderSize(c.client, cfg.MaxFrame, cfg.BufferSize)
	first, err := fr.Reader().Peek(4)
	if err != nil {
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
			return nil, fmt.Errorf("handshake: not a ZooKeeper ConnectRequest (first bytes %q): %w", first, err)
		}
		return nil, fmt.Errorf("handshake: reading ConnectRequest: %w", describeRead(err))
	}
	var req jute.ConnectRequest
	if err := jute.Decode(frame[4:], &req); err != nil {
		return nil, fmt.Errorf("handshake: bad ConnectRequest (%d bytes): %w", len(frame)-4, err)
	}
	raw := append([]byte(nil), frame...)

	done, ok := c.srv.adm.Admit()
	if !ok {
		return nil, errNotAdmitted
	}
	err = c.place(raw, &req, deadline)
	done(err == nil)
	if err != nil {
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
			errs = append(errs, err)
			continue
		}
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
	bw := bufio.NewWriterSize(c.server, c.srv.cfg.BufferSize)
	idle := c.sess.timeout + c.sess.timeout/2
	var armed time.Time
	for {
		if idle > 0 {
			if now := time.Now(); now.Sub(armed) > idle/4 {
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
		payload := frame[4:]
		h, err := jute.ParseRequestHeader(payload)
		if err != nil {
			return protocolError{fmt.Errorf("client request header: %w", err)}
		}
		c.sess.push(c.note(h, payload[jute.RequestHeaderLen:]))
		c.srv.received.Add(1)
		if _, err := bw.Write(frame); err != nil {
			return err
		}
		if fr.Buffered() == 0 {
			if err := bw.Flush(); err != nil {
				return err
			}
		}
	}
}

// note builds the FIFO entry for a request, decoding the body only where the session
// must remember something: a watch, an auth packet, re-registered watches.
func (c *conn) note(h jute.RequestHeader, body []byte) inflight {
	f := inflight{xid: h.Xid, op: h.Type, start: time.Now()}
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

// serverToClient relays member frames to the client, matching each reply with the
// oldest request in flight and reporting its latency and outcome.
func (c *conn) serverToClient() error {
	fr := jute.NewFrameReaderSize(c.server, c.srv.cfg.MaxFrame, c.srv.cfg.BufferSize)
	bw := bufio.NewWriterSize(c.client, c.srv.cfg.BufferSize)
	for {
		frame, err := fr.Next()
		if err != nil {
			var tl *jute.FrameTooLargeError
			if errors.As(err, &tl) || errors.Is(err, jute.ErrBadLength) {
				return protocolError{fmt.Errorf("member frame: %w", err)}
			}
			return err
		}
		payload := frame[4:]
		h, err := jute.ParseReplyHeader(payload)
		if err != nil {
			return protocolError{fmt.Errorf("member reply header: %w", err)}
		}
		if h.Xid == jute.XidNotification {
			var ev jute.WatcherEvent
			if jute.Decode(payload[jute.ReplyHeaderLen:], &ev) == nil {
				c.sess.fired(ev.Type, ev.Path)
			}
		} else {
			f, err := c.sess.pop(h)
			if err != nil {
				return protocolError{err}
			}
			c.srv.obs.Reply(c.member, f.op, h.Err, time.Since(f.start))
			if f.watch != watchNone && (h.Err == jute.ErrOK || f.watch == watchExist && h.Err == jute.ErrNoNode) {
				c.sess.addWatch(f.path, f.watch)
			}
		}
		c.srv.sent.Add(1)
		if _, err := bw.Write(frame); err != nil {
			return err
		}
		if fr.Buffered() == 0 {
			if err := bw.Flush(); err != nil {
				return err
			}
		}
	}
}
