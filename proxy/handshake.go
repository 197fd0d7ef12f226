package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/zkgate/zkgate/health"
	"github.com/zkgate/zkgate/jute"
)

// refuseWait bounds how long a client may take to show a four-letter word or its
// ConnectRequest while the breaker turns new sessions away.
const refuseWait = 30 * time.Millisecond

var (
	errRefused        = errors.New("ensemble breaker refuses new sessions")
	errFourLetterDone = errors.New("four-letter word answered")
)

// handshakeBuffer is the client read buffer during the handshake: a ConnectRequest is
// about 50 bytes; a larger one goes through the frame reader's pool.
const handshakeBuffer = 1 << 10

// handshake reads the client's first bytes under the handshake deadline: a four-letter
// word is answered here; a ConnectRequest is routed to a member whose ConnectResponse
// goes back to the client. On success the client's frame reader is returned for the relay.
func (c *conn) handshake() (*jute.FrameReader, error) {
	cfg := c.srv.conf()
	deadline := c.accepted.Add(cfg.HandshakeTimeout)
	refusing := c.srv.brk.Refusing() && !c.srv.ServesReadOnly()
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
	if !c.srv.brk.AdmitSession(req.SessionID != 0) && !(req.ReadOnly && c.srv.ServesReadOnly()) {
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
	// A reconnecting client is often ahead of health's last poll (it had just written):
	// the members health saw behind are tried after the others, as for a move.
	cands, caught := routeCaughtUpFirst(RouteInput{
		View: s.view(), Policy: s.conf().Policy, Sessions: s.SessionsPerMember(),
		LastZxidSeen: req.LastZxidSeen, ReadOnly: req.ReadOnly, Counter: s.rr.Add(1),
		Excluded: s.ejector().Excluded(),
	})
	if len(cands) == 0 {
		return fmt.Errorf("session 0x%x lastZxid 0x%x: %w", req.SessionID, req.LastZxidSeen, errNoMember)
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	var errs []error
	for i, member := range cands {
		if time.Now().After(deadline) {
			errs = append(errs, errors.New("handshake deadline passed"))
			break
		}
		server, resp, respFrame, err := s.dialBounded(ctx, s.placing, member, raw, s.conf().DialTimeout)
		if err != nil {
			if ctx.Err() != nil {
				// The client's handshake deadline, not the member's failure.
				errs = append(errs, err)
				break
			}
			if health.IsOwnLimit(err) {
				// zkgate is out of descriptors: the member was never asked. Nor is the
				// next one likely to be; the client retries as it would after any refusal.
				s.ownLimit.Note(s.log, "placing a session", member, err, time.Now())
				errs = append(errs, err)
				break
			}
			s.obs.ConnectFailed(member, err)
			// One health saw behind may close on the client's zxid, and a member that
			// answered sessions lately but not this ConnectRequest in time is busy
			// committing a backlog (a new session waits on the quorum): not its fault.
			busy := health.IsTimeout(err) && time.Since(s.LastAnswer(member)) < s.conf().DialTimeout
			if i < caught && !busy {
				s.brk.ConnectFailed()
				s.ejector().ConnectFailed(member)
			}
			errs = append(errs, err)
			continue
		}
		s.ejector().Connected(member)
		c.amu.Lock()
		c.server = server
		c.amu.Unlock()
		// Attached before the client has its ConnectResponse: once the client sees its
		// session, zkgate's status and cons list it.
		s.attach(c, &Session{Client: c.addr, member: member, id: resp.SessionID,
			passwd: resp.Passwd, timeout: time.Duration(resp.TimeOut) * time.Millisecond,
			readOnly: req.ReadOnly, hasReadOnly: req.HasReadOnly, roServed: resp.ReadOnly,
			lastZxid: req.LastZxidSeen, started: time.Now()})
		if _, err := c.client.Write(respFrame); err != nil {
			return fmt.Errorf("client went away during handshake: %w", err)
		}
		return nil
	}
	return fmt.Errorf("%w: %w", errNoMember, errors.Join(errs...))
}

// dialMember connects to member, sends a ConnectRequest's bytes unchanged and reads the
// member's ConnectResponse, decoded and as a frame for the client. ctx bounds it all.
//
// One attempt takes at most attempt, the ConnectResponse included (the TCP connect at
// most DialTimeout): a member that is frozen (SIGSTOP, a long GC) accepts in the kernel
// and then answers nothing, and must not hold a move (or a placement) until its own
// deadline while another member could take the session (see patientAttempt). connected
// is called once the TCP connect is over, whatever its outcome.
func (s *Server) dialMember(ctx context.Context, member string, raw []byte, attempt time.Duration, connected func()) (net.Conn, *jute.ConnectResponse, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, attempt)
	defer cancel()
	d := net.Dialer{Timeout: s.conf().DialTimeout}
	server, err := d.DialContext(ctx, "tcp", member)
	connected()
	if err != nil {
		return nil, nil, nil, fmt.Errorf("member %s: %w", member, err)
	}
	if server, err = s.dialTLS(ctx, server, member); err != nil {
		return nil, nil, nil, fmt.Errorf("member %s: %w", member, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		server.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { server.SetDeadline(time.Unix(1, 0)) })
	defer stop()
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
	if !stop() { // the attempt's time ran out as the answer came: the deadline is set in the past
		return fail(fmt.Errorf("ConnectResponse at the attempt's deadline: %w", context.DeadlineExceeded))
	}
	server.SetDeadline(time.Time{})
	return server, &resp, buf, nil
}

func describeRead(err error) error {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("client sent nothing complete before the handshake deadline: %w", err)
	}
	return err
}
