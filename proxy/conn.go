package proxy

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/zkgate/zkgate/jute"
)

// conn is one client connection. The handshake runs on the connection's own goroutine
// with net.Conns; a placed session then goes to a driver (an epoll loop, or the goroutine
// driver), which owns both sockets and runs the session's relay.
type conn struct {
	srv      *Server
	client   net.Conn  // until the driver takes the socket
	addr     string    // client address
	ip       string    // client IP, for the per-address limit
	accepted time.Time // the handshake deadline runs from here
	member   string    // the member counted in srv.perMember; under srv.mu
	sess     *Session  // set once by attach, under srv.mu; read by Sessions under it
	r        *relay    // set by attach; only the driver calls it
	idle     time.Duration

	amu     sync.Mutex // guards below: abort comes from any goroutine
	server  net.Conn   // the member connection, until the driver takes the socket
	drv     driver     // set when the session goes to its driver
	aborted string     // why zkgate ended it before it reached a driver

	loopSession // the epoll driver's part (empty where there is none)
}

// driver runs placed sessions: it owns their sockets and feeds their relays. Its methods
// may be called from any goroutine and return at once; the work runs where the session's
// relay runs.
type driver interface {
	abort(c *conn, reason string) // end the session for zkgate's reason
	lose(c *conn, why string)     // the member is lost: close its connection and move the session
	// drain moves the session once the member has answered what is in flight (or at until)
	drainOff(c *conn, why string, until time.Time)
	answerOpen(c *conn) // the breaker opened: answer what the session is owed
}

// ending says how a session ended: which side, with what error, or zkgate's reason.
type ending struct {
	side   string // "client", "member" or "zkgate"
	err    error
	reason string
	quiet  bool // already logged (a move that could not be made)
}

var (
	errClientSilent = errors.New("client sent nothing for 1.5 session timeouts")
	errNoMember     = errors.New("no member can take the session")
)

// abort ends the session: through its driver once it has one, else by closing the
// handshake's sockets.
func (c *conn) abort(reason string) {
	c.amu.Lock()
	d := c.drv
	if d == nil {
		if c.aborted == "" {
			c.aborted = reason
		}
		server := c.server
		c.amu.Unlock()
		c.srv.lobby.release(c)
		c.client.Close()
		if server != nil {
			server.Close()
		}
		return
	}
	c.amu.Unlock()
	d.abort(c, reason)
}

// drain moves the session off its member once the member has answered the requests in
// flight (Server.DrainOff).
func (c *conn) drain(why string, until time.Time) {
	c.amu.Lock()
	d := c.drv
	c.amu.Unlock()
	if d == nil {
		c.abort(why) // still in the handshake: the client reconnects through zkgate
		return
	}
	d.drainOff(c, why, until)
}

// lose moves the session off its member (ejected, down, not serving).
func (c *conn) lose(why string) {
	c.amu.Lock()
	d := c.drv
	c.amu.Unlock()
	if d == nil {
		c.abort(why) // still in the handshake: the client reconnects through zkgate
		return
	}
	d.lose(c, why)
}

// serve runs the handshake; a placed session goes to its driver, and this goroutine
// (with the stack the handshake grew) ends.
func (c *conn) serve() {
	err := c.tlsHandshake()
	var fr *jute.FrameReader
	if err == nil {
		fr, err = c.handshake()
	}
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
		discardUnread(c.client)
		return
	}
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
	c.srv.drive(c, server, early)
}

// handOver gives the session to d unless zkgate aborted it meanwhile; start runs under
// the lock abort takes, so that an abort after it reaches the driver after start's work.
func (c *conn) handOver(d driver, start func() bool) string {
	c.amu.Lock()
	defer c.amu.Unlock()
	if c.aborted != "" {
		return c.aborted
	}
	if !start() {
		return "zkgate shutting down"
	}
	c.drv = d
	return ""
}

// resume attaches the member connection a move made to the session.
func (c *conn) resume(o *out, res moveResult, now time.Time) *ending {
	end := c.r.attached(o, res.member, res.resp, now)
	if end == nil {
		c.srv.rehome(c, res.member)
	}
	return end
}

// refused logs and counts a connection that ended in the handshake.
func (c *conn) refused(err error) {
	switch {
	case errors.Is(err, errRefused):
		c.srv.obs.Refused("breaker")
		c.srv.rlog.Warn().Str("client", c.addr).Str("breaker", c.srv.brk.State().String()).
			Msg("refused client: ensemble breaker refuses new sessions")
	case errors.Is(err, errFourLetterDone):
	case errors.Is(err, errTLSHandshake):
		c.srv.obs.Refused("tls")
		c.srv.rlog.Warn().Str("client", c.addr).Err(err).Msg("refused client: TLS handshake failed")
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

// ended settles and logs a placed session once its driver has closed its sockets.
func (c *conn) ended(why ending) {
	defer c.srv.wg.Done()
	defer c.srv.untrack(c)
	if c.r.moving() {
		outcome := MoveClientGone
		if why.side == "zkgate" {
			outcome = MoveShutdown
		}
		c.r.abandoned(outcome, time.Now())
	}
	memberBroke := why.side == "member"
	// Sent requests without a member reply, those just answered with the reject code included.
	lost := c.r.settle(memberBroke)
	// The session's logger is made here, not held for its whole life.
	log := c.srv.log.With().Str("client", c.addr).
		Str("member", c.r.member).Str("session", fmt.Sprintf("0x%x", c.sess.id)).Logger()
	switch {
	case isProtocolError(why.err):
		c.srv.obs.ProtocolError()
		log.Warn().Str("side", why.side).Err(why.err).Int("in_flight", lost).Msg("session closed: protocol error")
	case errors.Is(why.err, errClientSilent):
		log.Warn().Err(why.err).Msg("closed silent client")
	case why.quiet:
		log.Debug().Int("in_flight", lost).Str("reason", why.reason).Msg("session connection closed")
	case why.side == "zkgate":
		log.Info().Str("reason", why.reason).Msg("session connection closed by zkgate; client will reconnect")
	default:
		log.Debug().Str("side", why.side).AnErr("err", why.err).Msg("session connection ended")
	}
}

type protocolError struct{ error }

func (p protocolError) Unwrap() error { return p.error }

func isProtocolError(err error) bool {
	var p protocolError
	return errors.As(err, &p)
}

// eofErr is what a peer closing its socket means, with a partial frame left or not.
func eofErr(partial int) error {
	if partial > 0 {
		return fmt.Errorf("%w (%d bytes of a frame unread)", errUnexpectedEOF, partial)
	}
	return errEOF
}

var (
	errEOF           = errors.New("EOF")
	errUnexpectedEOF = errors.New("unexpected EOF")
)

// keepPartial keeps the rest of a read that holds no whole frame for the next one, in
// buf (grown, or made): room for the whole frame when it is small; a large one grows as
// it arrives, so a peer that announces a large frame and stalls does not cost its size
// up front. An empty rest gives nil, so an idle session keeps no buffer.
func keepPartial(buf, rest []byte, maxFrame int) []byte {
	switch {
	case len(rest) == 0:
		return nil
	case len(buf) > 0:
		return buf[:copy(buf, rest)]
	}
	_, need, _ := jute.NextFrame(rest, maxFrame)
	return append(make([]byte, 0, max(min(need, readChunk), len(rest))), rest...)
}

// readChunk is one read: HAProxy's tune.bufsize is 16 KiB; frames up to 64 KiB come in one.
const readChunk = 64 << 10
