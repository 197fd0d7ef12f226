package proxy

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// gsession is the goroutine driver of one session, used where there is no epoll (every
// OS but Linux), for TLS connections a loop cannot take from crypto/tls (planTLS), and
// when Config.Driver asks for it. Two goroutines read, one per socket, and feed the relay
// under mu; two more write, one per socket, so that a reader never blocks on the other
// side's socket while it holds the relay. A side whose queue passes highWater stops the reads that feed it.
type gsession struct {
	c    *conn
	srv  *Server
	mu   sync.Mutex // guards below, and every call into c.r
	cond *sync.Cond // on mu: queues drained, a move done, the session closed
	o    out
	cq   outbox // to the client
	mq   outbox // to the member; conn nil while the session moves
	// closed: the session ended; readers and writers stop.
	closed bool
	// flushing: the session ended cleanly (the member closed after closeSession) with
	// replies still queued for the client; its writer sends them, then closes it.
	flushing bool
	loseWhy  string // why zkgate closed the member connection (lose)
}

// outbox is one socket's queue of bytes to write and its writer's state.
type outbox struct {
	conn  net.Conn
	buf   []byte
	spare []byte
}

func (s *Server) adoptGoroutines(c *conn, server net.Conn, early []byte) {
	settleTLS(c.client) // crypto/tls keeps its connections here
	settleTLS(server)
	g := &gsession{c: c, srv: s, cq: outbox{conn: c.client}, mq: outbox{conn: server}}
	g.cond = sync.NewCond(&g.mu)
	c.client.SetDeadline(time.Time{})
	server.SetDeadline(time.Time{})
	if reason := c.handOver(g, func() bool { return true }); reason != "" {
		c.client.Close()
		server.Close()
		c.ended(ending{side: "zkgate", reason: reason})
		return
	}
	s.wg.Add(4)
	go g.readClient(early)
	go g.readMember(server)
	go g.write(&g.cq, false)
	go g.write(&g.mq, true)
}

func (g *gsession) abort(_ *conn, reason string) {
	g.finish(ending{side: "zkgate", reason: reason})
}

func (g *gsession) lose(_ *conn, why string) { g.loseConn(nil, why) }

func (g *gsession) drainOff(_ *conn, why string, until time.Time) {
	g.mu.Lock()
	if !g.closed {
		g.c.r.drain(until, why)
	}
	g.mu.Unlock()
	g.drainDone()
	// Past until the session moves whatever the member still owes.
	time.AfterFunc(time.Until(until), g.drainDone)
}

// drainDone moves a draining session whose member owes it nothing more (or whose drain
// is past its time): its member connection is closed, and its reader moves it.
func (g *gsession) drainDone() {
	g.mu.Lock()
	done := !g.closed && g.c.r.drained(time.Now())
	why := g.c.r.drainWhy
	g.mu.Unlock()
	if done {
		g.loseConn(nil, why)
	}
}

// loseConn closes the member connection (nc, or whichever it is when nil) for why; its
// reader moves the session.
func (g *gsession) loseConn(nc net.Conn, why string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed || g.mq.conn == nil || nc != nil && g.mq.conn != nc {
		return // gone already, or replaced by a move
	}
	g.loseWhy = why
	g.mq.conn.Close() // its reader moves the session
}

func (g *gsession) answerOpen(*conn) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.closed {
		g.c.r.answerOpen(&g.o)
		g.queue()
	}
}

// queue moves what the relay produced to the writers. The caller holds mu.
func (g *gsession) queue() {
	if len(g.o.client) > 0 {
		g.cq.buf = append(g.cq.buf, g.o.client...)
	}
	if len(g.o.member) > 0 && g.mq.conn != nil {
		g.mq.buf = append(g.mq.buf, g.o.member...)
	}
	g.o.reset()
	g.cond.Broadcast()
}

// readClient reads the client until it goes away or is silent for 1.5 session timeouts.
func (g *gsession) readClient(early []byte) {
	defer g.srv.wg.Done()
	buf := make([]byte, readChunk)
	var in []byte
	data := early
	for {
		if len(data) > 0 && !g.feed(&in, data, false) {
			return
		}
		g.mu.Lock()
		for !g.closed && (len(g.mq.buf) > highWater || len(g.cq.buf) > highWater || g.c.r.heldBytes() > highWater) {
			g.cond.Wait()
		}
		closed := g.closed
		g.mu.Unlock()
		if closed {
			return
		}
		g.c.client.SetReadDeadline(time.Now().Add(g.c.idle))
		n, err := g.c.client.Read(buf)
		if n > 0 {
			data = buf[:n]
			continue
		}
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			err = fmt.Errorf("%w (%v)", errClientSilent, g.c.idle)
		case errors.Is(err, io.EOF):
			err = eofErr(len(in))
		}
		g.finish(ending{side: "client", err: err})
		return
	}
}

// readMember reads the member connection; when it fails, the session moves and reading
// goes on from the new member.
func (g *gsession) readMember(nc net.Conn) {
	defer g.srv.wg.Done()
	buf := make([]byte, readChunk)
	var in []byte
	for nc != nil {
		n, err := nc.Read(buf)
		if n > 0 {
			if !g.feed(&in, buf[:n], true) {
				return
			}
			g.drainDone()
			g.waitClient()
			continue
		}
		nc.Close()
		in = nil
		nc = g.move(fmt.Errorf("%s%w", connLost, err))
	}
}

// waitClient holds the member's replies while the client does not read them.
func (g *gsession) waitClient() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.cq.buf) <= highWater || g.closed {
		return
	}
	g.c.r.readMember(false, time.Now())
	for !g.closed && len(g.cq.buf) > highWater {
		g.cond.Wait()
	}
	g.c.r.readMember(true, time.Now())
}

// move moves the session off its lost member and returns the new member connection, or
// nil when the session ended.
func (g *gsession) move(err error) net.Conn {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return nil
	}
	why := err.Error()
	if g.loseWhy != "" {
		why = g.loseWhy
	}
	g.mq.conn, g.mq.buf, g.loseWhy = nil, nil, ""
	order, end := g.c.r.lose(&g.o, time.Now(), why)
	g.queue()
	g.mu.Unlock()
	if end != nil {
		g.finish(*end)
		return nil
	}
	res := g.srv.redial(g.srv.ctx, order)
	settleTLS(res.conn)
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		res.close()
		return nil
	}
	if res.err != nil {
		end = g.c.r.moveFailed(&g.o, res.err, time.Now())
	} else {
		g.mq.conn = res.conn
		end = g.c.resume(&g.o, res, time.Now())
	}
	g.queue()
	g.mu.Unlock()
	if end != nil {
		res.close()
		g.finish(*end)
		return nil
	}
	return res.conn
}

// feed hands what a socket read to the relay, keeping a partial frame in *in. It reports
// false once the session has ended.
func (g *gsession) feed(in *[]byte, data []byte, member bool) bool {
	if len(*in) > 0 {
		*in = append(*in, data...)
		data = *in
	}
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return false
	}
	var used int
	var end *ending
	if member {
		used, end = g.c.r.fromMember(&g.o, data, time.Now())
	} else {
		used, end = g.c.r.fromClient(&g.o, data, time.Now())
	}
	*in = keepPartial(*in, data[used:], g.srv.conf().MaxFrame)
	g.queue()
	g.mu.Unlock()
	if end != nil {
		g.finish(*end)
		return false
	}
	return true
}

// write is one socket's writer. A client that takes nothing for 1.5 session timeouts
// ends the session; a member that does not is lost.
func (g *gsession) write(ob *outbox, member bool) {
	defer g.srv.wg.Done()
	for {
		g.mu.Lock()
		for !g.closed && (len(ob.buf) == 0 || ob.conn == nil) {
			g.cond.Wait()
		}
		if g.closed {
			data, flush := ob.buf, g.flushing && ob == &g.cq
			ob.buf = nil
			g.mu.Unlock()
			if flush {
				if len(data) > 0 {
					g.c.client.SetWriteDeadline(time.Now().Add(time.Second))
					g.c.client.Write(data)
				}
				g.c.client.Close()
			}
			return
		}
		data, nc := ob.buf, ob.conn
		ob.buf = ob.spare[:0]
		g.mu.Unlock()
		nc.SetWriteDeadline(time.Now().Add(g.c.idle))
		_, err := nc.Write(data)
		g.mu.Lock()
		ob.spare = data[:0]
		g.cond.Broadcast()
		g.mu.Unlock()
		if err == nil {
			continue
		}
		if member {
			g.loseConn(nc, "writing to the member: "+err.Error())
			continue
		}
		g.finish(ending{side: "client", err: err})
		return
	}
}

// finish ends the session once: both connections closed, every goroutine released.
func (g *gsession) finish(why ending) {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return
	}
	g.closed = true
	// After closeSession the member's reply and its close come together: the reply
	// still goes out (lost, the client would see a broken connection, not a closed
	// session). The writer sends it and closes the client.
	g.flushing = why.side == "member" && g.c.r.bye
	if !g.flushing {
		g.c.client.Close()
		g.cq.buf = nil
	}
	if g.mq.conn != nil {
		g.mq.conn.Close()
	}
	g.mq.buf = nil
	g.cond.Broadcast()
	g.mu.Unlock()
	g.c.ended(why)
}
