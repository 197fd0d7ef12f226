//go:build linux

package proxy

import (
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// The driver interface: each runs on the loop.

func (l *loop) abort(c *conn, reason string) {
	l.post(func() { l.finish(c, ending{side: "zkgate", reason: reason}) })
}

func (l *loop) lose(c *conn, why string) { l.post(func() { l.loseMember(c, why) }) }

func (l *loop) drainOff(c *conn, why string, until time.Time) {
	l.post(func() {
		if c.closed {
			return
		}
		c.r.drain(until, why)
		l.pending[c] = struct{}{}
		l.drainDone(c)
	})
}

// drainDone moves a draining session whose member owes it nothing more (or whose drain
// is past its time).
func (l *loop) drainDone(c *conn) {
	if !c.closed && c.r.drained(time.Now()) {
		l.loseMember(c, c.r.drainWhy)
	}
}

func (l *loop) answerOpen(c *conn) {
	l.post(func() {
		if !c.closed {
			c.r.answerOpen(&l.o)
			l.flush(c)
		}
	})
}

// drop closes one socket of a session; it leaves the epoll set with its last descriptor.
func (l *loop) drop(e *end) {
	if e.c == nil || e.fd < 0 { // never registered, or closed already
		return
	}
	if e.fd < len(l.ends) && l.ends[e.fd] == e {
		l.ends[e.fd] = nil
	}
	if e.tls != nil {
		l.closeTLS(e)
	}
	unix.Close(e.fd)
	e.fd, e.in, e.out, e.events = -1, nil, nil, 0
}

// readable reads what e's socket holds and relays the whole frames. Sockets are
// edge-triggered: the next event comes only with new bytes, so reading goes on until a
// read comes back short (the socket is empty), or until reads are paused (resuming them
// re-arms the socket, and epoll reports what is already there). A hang-up is read through
// to the end of the stream.
func (l *loop) readable(e *end, hup bool) {
	for {
		buf := l.rbuf
		if e.tls != nil {
			buf = l.tlsReadBuf()
		}
		n, err := sockRead(e.fd, buf)
		switch {
		case again(err):
			return
		case err != nil:
			l.broken(e, osErr("read", err))
			return
		case n == 0:
			partial := len(e.in)
			if e.tls != nil {
				partial += len(e.tls.part)
			}
			l.broken(e, eofErr(partial))
			return
		}
		if !e.member {
			e.c.lastRead = l.now
		}
		if e.tls != nil {
			l.openTLS(e, n)
		} else {
			l.relay(e, buf[:n])
		}
		if e.c.closed || e.fd < 0 || e.events&unix.EPOLLIN == 0 || n < len(buf) && !hup {
			return
		}
	}
}

// broken handles a socket that failed or closed: the client's ends the session, the
// member's moves it.
func (l *loop) broken(e *end, err error) {
	if e.member {
		l.loseMember(e.c, connLost+err.Error())
		return
	}
	l.finish(e.c, ending{side: "client", err: err})
}

// relay hands the whole frames of e's pending bytes and data to the relay, keeps a
// partial frame for the next read, and sends what the frames produced. The frames arrived
// when the last epoll_wait returned (l.now).
func (l *loop) relay(e *end, data []byte) {
	if len(e.in) > 0 {
		e.in = append(e.in, data...)
		data = e.in
	}
	c := e.c
	var used int
	var end *ending
	before := l.o.flight
	if e.member {
		used, end = c.r.fromMember(&l.o, data, l.now)
	} else {
		used, end = c.r.fromClient(&l.o, data, l.now)
	}
	l.arrivals(before)
	e.in = keepPartial(e.in, data[used:], l.srv.conf().MaxFrame)
	l.flush(c)
	if end != nil {
		l.finish(c, *end)
		return
	}
	if e.member {
		l.drainDone(c)
	} else if c.r.holding() {
		l.flow(c) // held bytes count against the client
	}
}

// flush sends what the relay produced for c.
func (l *loop) flush(c *conn) {
	l.send(&c.me, l.o.member)
	l.send(&c.ce, l.o.client)
	l.o.reset()
}

// send writes data to e, or queues it behind what e has not taken yet; a TLS end's data
// is sealed into records first (e.out holds records only).
func (l *loop) send(e *end, data []byte) {
	if len(data) == 0 || e.c.closed || e.fd < 0 {
		return
	}
	if e.tls != nil {
		if data = l.sealTLS(e, data); data == nil { // queued behind e.out
			l.flow(e.c)
			return
		}
	}
	l.put(e, data)
}

// put writes bytes as they go on the wire to e, or queues them behind what e has not
// taken yet.
func (l *loop) put(e *end, data []byte) {
	if len(e.out) > 0 {
		e.out = append(e.out, data...)
		l.flow(e.c)
		return
	}
	n, ok := l.write(e, data)
	if !ok || n == len(data) {
		return
	}
	e.out = append(e.out, data[n:]...)
	e.outSince = l.now
	l.watch(e, e.events|unix.EPOLLOUT)
	l.flow(e.c)
}

// flow reads a session's sockets only while what they feed is not backed up: the client
// feeds the member (requests), itself (zkgate's answers) and, during a move, zkgate's
// hold; the member feeds the client (replies). A client that floods a slow member, or
// does not read its replies, then waits in its own socket buffers, not in zkgate's memory.
func (l *loop) flow(c *conn) {
	if c.closed {
		return
	}
	clientOK := len(c.ce.out) <= highWater
	l.readIf(&c.ce, clientOK && len(c.me.out) <= highWater && c.r.heldBytes() <= highWater)
	if c.me.fd < 0 {
		return
	}
	l.readIf(&c.me, c.r.readMember(clientOK, l.now))
}

func (l *loop) readIf(e *end, on bool) {
	if on {
		l.watch(e, e.events|unix.EPOLLIN)
	} else {
		l.watch(e, e.events&^unix.EPOLLIN)
	}
}

// drain writes what e holds; once it is all out, e's feeder is read again.
func (l *loop) drain(e *end) {
	if len(e.out) == 0 || e.c.closed || e.fd < 0 {
		return
	}
	n, ok := l.write(e, e.out)
	if !ok || n == 0 {
		return
	}
	if n < len(e.out) {
		e.out = e.out[:copy(e.out, e.out[n:])]
		e.outSince = l.now
		return
	}
	e.out = nil
	l.watch(e, e.events&^unix.EPOLLOUT)
	l.flow(e.c)
}

// write writes p to e's socket and returns how much it took (0 when it is full); false
// means the write failed and the socket is gone.
func (l *loop) write(e *end, p []byte) (int, bool) {
	n, err := sockWrite(e.fd, p)
	switch {
	case err == nil:
		return n, true
	case again(err):
		return 0, true
	}
	l.broken(e, osErr("write", err))
	return 0, false
}

func (l *loop) watch(e *end, events uint32) {
	if events == e.events || e.c.closed || e.fd < 0 {
		return
	}
	e.events = events
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_MOD, e.fd, &unix.EpollEvent{Events: events | edge, Fd: int32(e.fd), Pad: e.gen}); err != nil {
		l.finish(e.c, ending{side: "zkgate", reason: "epoll_ctl: " + err.Error()})
	}
}

// sweep closes clients silent for 1.5 session timeouts (a host that vanished without a
// FIN), sockets that took no bytes for as long (a peer that stopped reading), and moves
// past their deadline. Moves and drains are looked at every sweep (l.pending); the
// silences, which count in seconds, every fullSweep sweeps: a pass over ten thousand
// idle sessions ten times a second was most of an idle zkgate's CPU.
func (l *loop) sweep(now time.Time) {
	l.o.hot.flush()
	l.sweeps++
	if l.sweeps%fullSweep == 0 {
		for c := range l.conns {
			l.sweepOne(c, now, true)
		}
		return
	}
	for c := range l.pending {
		l.sweepOne(c, now, false)
	}
}

// fullSweep: every session is looked at once a second.
const fullSweep = int(time.Second / sweepPeriod)

func (l *loop) sweepOne(c *conn, now time.Time, full bool) {
	if !c.r.holding() {
		delete(l.pending, c)
	}
	if end := c.r.overdue(&l.o, now); end != nil {
		l.flush(c)
		l.finish(c, *end)
		return
	}
	l.drainDone(c)
	if c.closed || !full || c.idle <= 0 {
		return
	}
	switch {
	// Before silence: a client held back because it does not read has not been read
	// either, and "sent nothing" would blame the wrong side.
	case len(c.ce.out) > 0 && now.Sub(c.ce.outSince) > c.idle:
		l.finish(c, ending{side: "zkgate", reason: "client does not read its replies"})
	case now.Sub(c.lastRead) > c.idle:
		l.finish(c, ending{side: "client", err: fmt.Errorf("%w (%v)", errClientSilent, c.idle)})
	case len(c.me.out) > 0 && now.Sub(c.me.outSince) > c.idle:
		l.loseMember(c, "member does not read the session's requests")
	}
}

// loseMember closes c's member socket and starts the session's move.
func (l *loop) loseMember(c *conn, why string) {
	if c.closed || c.r.moving() {
		return
	}
	l.drop(&c.me)
	order, end := c.r.lose(&l.o, l.now, why)
	l.flush(c)
	if end != nil {
		l.finish(c, *end)
		return
	}
	l.pending[c] = struct{}{} // its deadline, at each sweep
	l.srv.goMove(order, func(res moveResult) {
		if !l.post(func() { l.moved(c, res) }) {
			res.close()
		}
	})
}

// finish ends a session on its loop: both sockets closed, what it was owed settled.
func (l *loop) finish(c *conn, why ending) {
	if c.closed {
		return
	}
	c.closed = true
	l.drop(&c.ce)
	l.drop(&c.me)
	delete(l.conns, c)
	delete(l.pending, c)
	c.r.addSent(&l.o, -c.r.sent)
	l.sessions.Add(-1)
	c.ended(why)
}
