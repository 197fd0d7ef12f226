//go:build linux

package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	"github.com/zkgate/zkgate/jute"
)

// rawSession is one session in raw jute, pipelined: requests go out through a buffered
// writer and a reader matches the replies in order, freeing a slot for each. The reader
// runs from the handshake until the connection ends (after closeSession, or when the
// target drops it: the session is lost).
type rawSession struct {
	c     net.Conn
	slots chan struct{} // one token per request that may be put in flight
	ended chan struct{} // closed when the reader ends
	xid   int32         // owned by drive, then by close

	mu   sync.Mutex // guards fifo and res
	fifo []pending
	res  Result
}

type pending struct {
	start time.Time
	op    jute.OpCode
}

func openRawSession(addr string, concurrency int, cfg *tls.Config) (session, error) {
	c, fr, err := handshake(addr, 30*time.Second, cfg)
	if err != nil {
		return nil, err
	}
	s := &rawSession{c: c, slots: make(chan struct{}, concurrency), ended: make(chan struct{})}
	for range concurrency {
		s.slots <- struct{}{}
	}
	go s.read(fr)
	return s, nil
}

// read matches replies to the requests in flight until the connection ends.
func (s *rawSession) read(fr *jute.FrameReader) {
	defer close(s.ended)
	for {
		frame, err := fr.Next()
		if err != nil {
			return
		}
		h, _ := jute.ParseReplyHeader(frame[4:])
		if h.Xid < 0 {
			continue
		}
		now := time.Now()
		s.mu.Lock()
		if len(s.fifo) == 0 { // the closeSession reply
			s.mu.Unlock()
			continue
		}
		p := s.fifo[0]
		s.fifo = s.fifo[1:]
		s.res.Ops++
		if h.Err != 0 && !(p.op == jute.OpDelete && h.Err == jute.ErrNoNode) {
			s.res.Errors++
		}
		s.res.Latencies = append(s.res.Latencies, now.Sub(p.start))
		s.mu.Unlock()
		s.slots <- struct{}{}
	}
}

func (s *rawSession) drive(ctx context.Context, l Load, id int, start time.Time) (Result, error) {
	node := fmt.Sprintf("%s/s%d", l.Root, id)
	value := make([]byte, l.ValueSize)
	rng := rand.New(rand.NewPCG(uint64(id), 7))
	var created []string
	seq := 0
	pick := func() (jute.OpCode, jute.Record) {
		n := rng.IntN(100)
		switch {
		case n < l.Mix.Get:
			return jute.OpGetData, &jute.GetDataRequest{Path: node}
		case n < l.Mix.Get+l.Mix.Set:
			return jute.OpSetData, &jute.SetDataRequest{Path: node, Data: value, Version: -1}
		case n < l.Mix.Get+l.Mix.Set+l.Mix.Create || len(created) == 0:
			seq++
			p := fmt.Sprintf("%s/c%d", node, seq)
			created = append(created, p)
			return jute.OpCreate, &jute.CreateRequest{Path: p, Data: value, ACL: []jute.ACL{{Perms: jute.PermAll, ID: jute.ID{Scheme: "world", ID: "anyone"}}}}
		default:
			p := created[0]
			created = created[1:]
			return jute.OpDelete, &jute.PathVersionRequest{Path: p, Version: -1}
		}
	}
	bw := bufio.NewWriterSize(s.c, 64<<10)
	var buf []byte
	send := func() {
		s.xid++
		op, body := pick()
		buf = jute.AppendFrame(buf[:0], &jute.RequestHeader{Xid: s.xid, Type: op}, body)
		s.mu.Lock()
		s.fifo = append(s.fifo, pending{time.Now(), op})
		s.mu.Unlock()
		bw.Write(buf)
	}
	var lost bool
	if l.Rate > 0 {
		lost = s.paced(ctx, l.Rate, start, l.Duration, rng, send, bw)
	} else {
		lost = s.closed(ctx, send, bw)
	}
	// Let the requests in flight finish.
	deadline := time.After(10 * time.Second)
	for range cap(s.slots) {
		if lost {
			break
		}
		select {
		case <-s.slots:
		case <-s.ended:
			lost = true
		case <-deadline:
			return Result{}, errors.New("requests still in flight 10 s after the run")
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if lost { // what was in flight is lost with the session
		s.res.Lost = 1
		s.res.Errors += len(s.fifo)
	}
	return s.res, nil
}

// closed keeps every slot filled: it fills each free one, then flushes once. It reports
// whether the session was lost (its connection ended).
func (s *rawSession) closed(ctx context.Context, send func(), bw *bufio.Writer) (lost bool) {
	for {
		select {
		case <-ctx.Done():
			return false
		case <-s.ended:
			return true
		case <-s.slots:
		}
		for {
			send()
			select {
			case <-s.slots:
				continue
			default:
			}
			break
		}
		if bw.Flush() != nil {
			return true
		}
	}
}

// paced sends the requests scheduled before start+d, one every 1/rate seconds from start
// plus a random phase; with every slot in flight, the next request waits for a reply,
// and one still waiting when ctx ends (at start+d) is not sent. It reports whether the
// session was lost (its connection ended).
func (s *rawSession) paced(ctx context.Context, rate float64, start time.Time, d time.Duration, rng *rand.Rand, send func(), bw *bufio.Writer) (lost bool) {
	interval := time.Duration(float64(time.Second) / rate)
	next := start.Add(time.Duration(rng.Int64N(int64(max(interval, 1)))))
	end := start.Add(d)
	timer := time.NewTimer(time.Until(next))
	defer timer.Stop()
	for next.Before(end) {
		select {
		case <-s.ended:
			return true
		case <-timer.C:
		case <-ctx.Done():
			// The deadline and this request's timer fire together at the end: it is
			// due all the same, or every session's count would depend on the race.
			if ctx.Err() != context.DeadlineExceeded {
				return false
			}
		}
		select {
		case <-s.slots: // a free slot first: ctx may be done already
		default:
			select {
			case <-ctx.Done():
				return false
			case <-s.ended:
				return true
			case <-s.slots:
			}
		}
		send()
		if bw.Flush() != nil {
			return true
		}
		next = next.Add(interval)
		timer.Reset(time.Until(next))
	}
	return false
}

// close sends closeSession and waits (10 s at most) for the member to end the connection,
// so that the next run starts without this one's sessions.
func (s *rawSession) close() {
	s.xid++
	s.c.SetWriteDeadline(time.Now().Add(time.Second))
	if _, err := s.c.Write(jute.AppendFrame(nil, &jute.RequestHeader{Xid: s.xid, Type: jute.OpCloseSession})); err == nil {
		select {
		case <-s.ended:
		case <-time.After(10 * time.Second):
		}
	}
	s.c.Close()
}
