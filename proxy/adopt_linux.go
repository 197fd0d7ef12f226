//go:build linux

package proxy

import (
	"fmt"
	"net"

	"golang.org/x/sys/unix"
)

// How sessions and their sockets come to a relay loop: a placed session (adoptLoop,
// register), and a moved session's new member connection (moved). TLS connections are
// taken from crypto/tls on the way (tlshandoff.go).

// adoptLoop moves a placed session's sockets to the relay loop with the fewest sessions,
// with the bytes the client sent right behind its ConnectRequest. A TLS connection comes
// with its plan (planTLS): the loop takes it from crypto/tls.
func (s *Server) adoptLoop(c *conn, server net.Conn, early []byte, cp, mp *tlsPlan) {
	client := c.client
	var ct, mt *tlsHandoff
	var err error
	if cp != nil {
		if ct, err = cp.take(); err != nil {
			c.client.Close()
			server.Close()
			c.ended(ending{side: "zkgate", reason: "taking over the client's TLS: " + err.Error()})
			return
		}
		client, early = ct.nc, append(early, ct.plain...)
	}
	if mp != nil {
		if mt, err = mp.take(); err != nil {
			client.Close()
			server.Close()
			c.ended(ending{side: "zkgate", reason: "taking over the member's TLS: " + err.Error()})
			return
		}
		server = mt.nc
	}
	cfd, err := detach(client)
	if err != nil {
		server.Close()
		c.ended(ending{side: "zkgate", reason: "taking over the client socket: " + err.Error()})
		return
	}
	mfd, err := detach(server)
	if err != nil {
		closeFD(cfd)
		c.ended(ending{side: "zkgate", reason: "taking over the member socket: " + err.Error()})
		return
	}
	l := s.pickLoop()
	// register is posted before abort can see the loop: an abort's finish runs after it.
	reason := c.handOver(l, func() bool { return l.post(func() { l.register(c, cfd, mfd, early, ct, mt) }) })
	if reason == "" {
		return
	}
	l.sessions.Add(-1)
	closeFD(cfd)
	closeFD(mfd)
	c.ended(ending{side: "zkgate", reason: reason})
}

// pickLoop chooses the relay loop with the fewest sessions for a new one.
func (s *Server) pickLoop() *loop {
	best := s.loops[0]
	for _, l := range s.loops[1:] {
		if l.sessions.Load() < best.sessions.Load() {
			best = l
		}
	}
	best.sessions.Add(1)
	return best
}

// register adds a placed session's two sockets and relays what the client sent along with
// its ConnectRequest. A session that ended before it got here only has its sockets closed.
// A TLS connection taken from crypto/tls (ct, mt) gets its record layer, and what
// crypto/tls left unread is relayed first.
func (l *loop) register(c *conn, cfd, mfd int, early []byte, ct, mt *tlsHandoff) {
	if c.closed {
		closeFD(cfd)
		closeFD(mfd)
		return
	}
	l.conns[c] = struct{}{}
	if err := l.add(c, &c.ce, cfd, false); err != nil {
		closeFD(cfd)
		closeFD(mfd)
		l.finish(c, ending{side: "zkgate", reason: "epoll_ctl: " + err.Error()})
		return
	}
	if err := l.add(c, &c.me, mfd, true); err != nil {
		closeFD(mfd)
		l.finish(c, ending{side: "zkgate", reason: "epoll_ctl: " + err.Error()})
		return
	}
	if ct != nil {
		c.ce.tls = ct.rec
	}
	if mt != nil {
		c.me.tls = mt.rec
	}
	c.lastRead = l.now
	if len(early) > 0 {
		l.relay(&c.ce, early)
	}
	if ct != nil {
		l.feedTLS(&c.ce, ct.raw)
	}
	if mt != nil {
		l.handedOver(c, mt)
	}
}

// handedOver relays what crypto/tls left unread on a member connection it handed over.
func (l *loop) handedOver(c *conn, mt *tlsHandoff) {
	if len(mt.plain) > 0 && !c.closed && c.me.fd >= 0 {
		l.relay(&c.me, mt.plain)
	}
	l.feedTLS(&c.me, mt.raw)
}

// add registers one socket of c with epoll, as e.
func (l *loop) add(c *conn, e *end, fd int, member bool) error {
	l.gen++
	*e = end{fd: fd, c: c, member: member, gen: l.gen, events: unix.EPOLLIN}
	for fd >= len(l.ends) {
		l.ends = append(l.ends, make([]*end, len(l.ends)+1024)...)
	}
	l.ends[fd] = e
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: e.events | edge, Fd: int32(fd), Pad: e.gen}); err != nil {
		l.ends[fd] = nil
		e.fd = -1
		return err
	}
	return nil
}

// moved takes the member connection a move made, or ends the session without one. A
// member connection over TLS is taken from crypto/tls as at the session's start; one
// that cannot be (a CBC suite, say) fails the move: a loop has no other way to relay it.
func (l *loop) moved(c *conn, res moveResult) {
	if c.closed || !c.r.moving() {
		res.close()
		return
	}
	var end *ending
	var mt *tlsHandoff
	if res.err == nil {
		nc := res.conn
		if isTLS(nc) {
			if mt, res.err = handoffTLS(nc); res.err != nil {
				res.close()
				res.err = fmt.Errorf("member %s: taking over its TLS: %w", res.member, res.err)
			} else {
				nc = mt.nc
			}
		}
		if res.err == nil {
			var fd int
			if fd, res.err = detach(nc); res.err == nil {
				if res.err = l.add(c, &c.me, fd, true); res.err != nil {
					closeFD(fd)
				} else if mt != nil {
					c.me.tls = mt.rec
				}
			}
		}
	}
	if res.err != nil {
		end = c.r.moveFailed(&l.o, res.err, l.now)
	} else {
		end = c.resume(&l.o, res, l.now)
	}
	l.flush(c)
	if end != nil {
		l.finish(c, *end)
		return
	}
	if mt != nil {
		l.handedOver(c, mt)
		if c.closed {
			return
		}
	}
	l.flow(c)
}
