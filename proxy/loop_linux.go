//go:build linux

package proxy

import (
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/zkgate/zkgate/breaker"
	"github.com/zkgate/zkgate/jute"
	"golang.org/x/sys/unix"
)

// loop is one epoll event loop. Both sockets of a placed session belong to one loop, which
// does all their I/O and runs all their relay code: a request costs what it costs in
// HAProxy (one epoll_wait, one read and one write per direction), no goroutine is parked
// or woken per frame, and an idle session holds no stack and no buffer, only its state.
//
// Other goroutines reach a session through post: the loop runs the task between events.
type loop struct {
	srv     *Server
	epfd    int
	efd     int    // eventfd that wakes the loop for posted tasks
	ends    []*end // by file descriptor
	conns   map[*conn]struct{}
	events  []unix.EpollEvent
	yielded time.Time // the last runtime.Gosched
	// With GOMAXPROCS=1 the loop waits in Go's poller (parkWait):
	park      *os.File           // the epoll descriptor
	parkRaw   syscall.RawConn    // park's
	parkUntil time.Time          // park's read deadline
	poll      func(uintptr) bool // tryPoll
	ready     int                // tryPoll's results
	pollErr   error
	now       time.Time // when the last epoll_wait returned: the arrival time of what it reported
	rbuf      []byte    // every read lands here first
	// scratch for one read's output: frames for the member, answers for the client
	toMember, toClient []byte
	batch              []inflight
	nextSweep          time.Time
	gen                int32 // registrations, for end.gen
	// for coalescing (window):
	flight  int           // requests sent to members and not answered yet
	latency time.Duration // moving average of the members' reply latency

	sessions atomic.Int32 // placed here, for choosing a loop

	mu      sync.Mutex
	tasks   []func()
	spare   []func()
	woken   bool
	stopped bool
	done    chan struct{}
}

// end is one socket of a session, owned by its loop.
type end struct {
	fd       int
	c        *conn
	member   bool   // the member's socket; else the client's
	in       []byte // the start of a frame kept between reads
	out      []byte // bytes the socket did not take yet, in order
	outSince time.Time
	events   uint32 // EPOLLIN and EPOLLOUT as registered with epoll (with edge)
	gen      int32  // registration number, in the epoll data with fd: events for an
	// earlier socket with the same number are told apart
}

const (
	readChunk = 64 << 10 // one read: HAProxy's tune.bufsize is 16 KiB; frames up to 64 KiB come in one
	// highWater: past this much unsent to one side, the other side is not read until it
	// drains, so a client that floods a slow member (or a member whose client does not
	// read) cannot grow zkgate's memory without bound.
	highWater   = 256 << 10
	sweepPeriod = 100 * time.Millisecond
	// coalesceFrom: fewer requests in flight on a loop than this leave little to gather,
	// and one sequential client's latency is left alone.
	coalesceFrom  = 8
	coalesceFloor = 200 * time.Microsecond
	yieldEvery    = 8 * time.Millisecond
	// edge: session sockets are edge-triggered (readable reads them empty), so epoll does
	// not poll every socket it reported again at the next wait; a peer's shutdown is
	// reported even while reads are paused.
	edge = unix.EPOLLET | unix.EPOLLRDHUP
)

// window is how long the loop waits before its next epoll_wait, so that more frames
// arrive per read and per write (zero: wait for events as they come). Coalescing costs
// latency, so it only starts where requests already queue at the ensemble: with at least
// coalesceFrom in flight on the loop, the wait is the configured share of their average
// reply latency, at most Coalesce. Below coalesceFloor the extra wakeups cost more CPU
// than the batching saves (BENCHMARKS.md).
func (l *loop) window() time.Duration {
	cfg := &l.srv.cfg
	if cfg.Coalesce <= 0 || l.flight < coalesceFrom {
		return 0
	}
	w := min(cfg.Coalesce, time.Duration(float64(l.latency)*cfg.CoalesceShare))
	if w < coalesceFloor {
		return 0
	}
	return w
}

func newLoop(s *Server) (*loop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	efd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, efd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(efd)}); err != nil {
		unix.Close(epfd)
		unix.Close(efd)
		return nil, fmt.Errorf("epoll_ctl eventfd: %w", err)
	}
	l := &loop{srv: s, epfd: epfd, efd: efd, conns: map[*conn]struct{}{}, events: make([]unix.EpollEvent, 256),
		rbuf: make([]byte, readChunk), done: make(chan struct{})}
	if runtime.GOMAXPROCS(0) == 1 {
		// The only P must not sit in epoll_wait: every other goroutine (handshakes,
		// health, admin) would wait for sysmon to take it back. The loop parks in Go's
		// poller on the epoll descriptor instead.
		if err := unix.SetNonblock(epfd, true); err != nil {
			unix.Close(epfd)
			unix.Close(efd)
			return nil, err
		}
		l.park = os.NewFile(uintptr(epfd), "epoll")
		if l.parkRaw, err = l.park.SyscallConn(); err != nil {
			l.park.Close()
			unix.Close(efd)
			return nil, err
		}
		l.poll = l.tryPoll
	}
	go l.run()
	return l, nil
}

// post runs f on the loop. It reports false when the loop has stopped.
func (l *loop) post(f func()) bool {
	l.mu.Lock()
	if l.stopped {
		l.mu.Unlock()
		return false
	}
	l.tasks = append(l.tasks, f)
	wake := !l.woken
	l.woken = true
	l.mu.Unlock()
	if wake {
		l.wake()
	}
	return true
}

// wake makes the loop's epoll_wait return and run its tasks.
func (l *loop) wake() {
	one := [8]byte{1} // the eventfd counter is a host-order uint64; little endian here
	unix.Write(l.efd, one[:])
}

// stop ends the loop once its sessions are gone (the server waits for them first).
func (l *loop) stop() {
	l.mu.Lock()
	already := l.stopped
	l.stopped = true
	l.mu.Unlock()
	if !already {
		l.wake()
	}
	<-l.done
}

func (l *loop) run() {
	defer close(l.done)
	defer unix.Close(l.efd)
	defer func() {
		if l.park != nil {
			l.park.Close() // the epoll descriptor
		} else {
			unix.Close(l.epfd)
		}
	}()
	for {
		n, err := l.wait()
		if err != nil {
			l.srv.log.Error().Err(err).Msg("epoll_wait failed: relay loop stopped")
			return
		}
		for i := 0; i < n; i++ {
			ev := &l.events[i]
			fd := int(ev.Fd)
			if fd == l.efd {
				if !l.runTasks() {
					return
				}
				continue
			}
			if fd >= len(l.ends) || l.ends[fd] == nil || l.ends[fd].gen != ev.Pad {
				continue // closed earlier in this batch (its number may be reused already)
			}
			e := l.ends[fd]
			if ev.Events&unix.EPOLLOUT != 0 {
				l.drain(e)
			}
			if e.c.closed {
				continue
			}
			hup := ev.Events&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0
			switch {
			case e.events&unix.EPOLLIN != 0 && (ev.Events&unix.EPOLLIN != 0 || hup):
				l.readable(e, hup)
			case ev.Events&(unix.EPOLLHUP|unix.EPOLLERR) != 0:
				// Reads are paused (the other side is backed up) and the socket failed:
				// nothing more can be relayed on this session.
				l.finish(e.c, ending{side: e.side(), err: errors.New("connection reset while its reads were paused")})
			}
		}
		if l.now.After(l.nextSweep) {
			l.sweep(l.now)
			l.nextSweep = l.now.Add(sweepPeriod)
		}
	}
}

// wait returns the number of ready events in l.events, blocking in epoll_wait until one
// is ready or the next sweep is due.
//
// A goroutine blocked in a system call keeps its P; the runtime's sysmon takes it back
// (and then polls every 20 µs for a while) once the same goroutine has held the P for
// 10 ms without being rescheduled. Yielding every few milliseconds keeps sysmon asleep:
// measured, this costs less per request than parking in Go's poller on the epoll
// descriptor (BENCHMARKS.md).
func (l *loop) wait() (int, error) {
	if l.park != nil {
		return l.parkWait()
	}
	if l.now.Sub(l.yielded) > yieldEvery {
		runtime.Gosched()
		l.yielded = l.now
	}
	if w := l.window(); w > 0 {
		// Coalescing: take everything that arrives meanwhile in one batch; block as
		// usual only when nothing did.
		l.doze(w)
		if n, err := l.epollWait(0); n > 0 || err != nil {
			return n, err
		}
	}
	return l.epollWait(int(sweepPeriod / time.Millisecond))
}

// doze is the coalescing wait: a nanosleep that holds the P, as epoll_wait does, or with
// a single P (park mode) a time.Sleep that leaves it to the other goroutines.
func (l *loop) doze(w time.Duration) {
	if l.park != nil {
		time.Sleep(w)
	} else {
		ts := unix.NsecToTimespec(int64(w))
		unix.RawSyscall(unix.SYS_NANOSLEEP, uintptr(unsafe.Pointer(&ts)), 0, 0)
	}
	l.srv.coalesced.Add(1)
	l.srv.coalescedFor.Add(int64(w))
}

func (l *loop) epollWait(msec int) (int, error) {
	n, err := unix.EpollWait(l.epfd, l.events, msec)
	l.now = time.Now()
	if errors.Is(err, unix.EINTR) {
		return 0, nil
	}
	return max(n, 0), err
}

// parkWait is wait with a single P: when nothing is ready it parks the goroutine in Go's
// poller until the epoll descriptor is readable (events are ready) or the sweep is due.
func (l *loop) parkWait() (int, error) {
	if w := l.window(); w > 0 {
		l.doze(w)
	}
	n, err := unix.EpollWait(l.epfd, l.events, 0)
	l.now = time.Now()
	if n > 0 || err != nil && !errors.Is(err, unix.EINTR) {
		return max(n, 0), err
	}
	if !l.parkUntil.Equal(l.nextSweep) {
		l.park.SetReadDeadline(l.nextSweep)
		l.parkUntil = l.nextSweep
	}
	l.ready, l.pollErr = 0, nil
	err = l.parkRaw.Read(l.poll)
	l.now = time.Now()
	if l.ready > 0 || l.pollErr != nil {
		return l.ready, l.pollErr
	}
	if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		return 0, nil
	}
	return 0, err
}

// tryPoll runs whenever Go's poller reports the epoll descriptor readable: true once
// events are ready (or epoll_wait failed), false to park again. It is bound once (l.poll)
// so that parking allocates nothing.
func (l *loop) tryPoll(uintptr) bool {
	n, err := unix.EpollWait(l.epfd, l.events, 0)
	if errors.Is(err, unix.EINTR) {
		return false
	}
	l.ready, l.pollErr = max(n, 0), err
	return n > 0 || err != nil
}

// runTasks runs the posted tasks; false means the loop must stop.
func (l *loop) runTasks() bool {
	var b [8]byte
	unix.Read(l.efd, b[:])
	l.mu.Lock()
	tasks := l.tasks
	l.tasks = l.spare[:0]
	l.woken = false
	stopped := l.stopped
	l.mu.Unlock()
	for i, f := range tasks {
		f()
		tasks[i] = nil
	}
	l.spare = tasks[:0]
	return !stopped
}

// register adds a placed session's two sockets and relays what the client sent along with
// its ConnectRequest.
func (l *loop) register(c *conn, cfd, mfd int, early []byte) {
	l.gen++
	c.ce = end{fd: cfd, c: c, gen: l.gen}
	c.me = end{fd: mfd, c: c, member: true, gen: l.gen}
	l.conns[c] = struct{}{}
	for _, e := range []*end{&c.ce, &c.me} {
		for e.fd >= len(l.ends) {
			l.ends = append(l.ends, make([]*end, len(l.ends)+1024)...)
		}
		l.ends[e.fd] = e
		e.events = unix.EPOLLIN
		if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, e.fd, &unix.EpollEvent{Events: e.events | edge, Fd: int32(e.fd), Pad: e.gen}); err != nil {
			l.finish(c, ending{side: "zkgate", reason: "epoll_ctl: " + err.Error()})
			return
		}
	}
	c.lastRead = l.now
	if len(early) > 0 {
		l.relay(&c.ce, early)
	}
}

// readable reads what e's socket holds and relays the whole frames. Sockets are
// edge-triggered: the next event comes only with new bytes, so reading goes on until a
// read comes back short (the socket is empty), or until reads are paused (resuming them
// re-arms the socket, and epoll reports what is already there). A hang-up is read through
// to the end of the stream.
func (l *loop) readable(e *end, hup bool) {
	for {
		n, err := sockRead(e.fd, l.rbuf)
		switch {
		case again(err):
			return
		case err != nil:
			l.finish(e.c, ending{side: e.side(), err: osErr("read", err)})
			return
		case n == 0:
			l.finish(e.c, ending{side: e.side(), err: eofErr(e)})
			return
		}
		if !e.member {
			e.c.lastRead = l.now
		}
		l.relay(e, l.rbuf[:n])
		if e.c.closed || e.events&unix.EPOLLIN == 0 || n < len(l.rbuf) && !hup {
			return
		}
	}
}

// eofErr is what a peer closing its socket means, as the goroutine relay reported it.
func eofErr(e *end) error {
	if len(e.in) > 0 {
		return fmt.Errorf("%w (%d bytes of a frame unread)", errUnexpectedEOF, len(e.in))
	}
	return errEOF
}

var (
	errEOF           = errors.New("EOF")
	errUnexpectedEOF = errors.New("unexpected EOF")
)

// relay hands the whole frames of e's pending bytes and data to the session code, keeps a
// partial frame for the next read, and sends what the frames produced. The frames arrived
// when the last epoll_wait returned (l.now).
func (l *loop) relay(e *end, data []byte) {
	if len(e.in) > 0 {
		e.in = append(e.in, data...)
		data = e.in
	}
	c := e.c
	var used int
	var err error
	if e.member {
		used, err = c.fromMember(l, data, l.now)
	} else {
		used, err = c.fromClient(l, data, l.now)
	}
	rest := data[used:]
	switch {
	case len(rest) == 0:
		e.in = nil // an idle session keeps no buffer
	case len(e.in) > 0:
		e.in = e.in[:copy(e.in, rest)]
	default:
		// Room for the whole frame when it is small; a large one grows as it arrives, so a
		// peer that announces a large frame and stalls does not cost its size up front.
		_, need, _ := jute.NextFrame(rest, c.srv.cfg.MaxFrame)
		e.in = append(make([]byte, 0, max(min(need, readChunk), len(rest))), rest...)
	}
	l.send(&c.me, l.toMember)
	l.send(&c.ce, l.toClient)
	l.toMember, l.toClient = l.toMember[:0], l.toClient[:0]
	if err != nil {
		l.finish(c, ending{side: e.side(), err: err})
	}
}

// send writes data to e, or queues it behind what e has not taken yet.
func (l *loop) send(e *end, data []byte) {
	if len(data) == 0 || e.c.closed {
		return
	}
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
// feeds the member (requests) and itself (zkgate's answers to rejected requests); the
// member feeds the client (replies). A client that floods a slow member, or does not read
// its replies, then waits in its own socket buffers, not in zkgate's memory.
func (l *loop) flow(c *conn) {
	clientOK := len(c.ce.out) <= highWater
	l.readIf(&c.ce, clientOK && len(c.me.out) <= highWater)
	if memberOn := c.me.events&unix.EPOLLIN != 0; memberOn != clientOK {
		// Replies wait on the client now (or again on the member): requests in flight
		// meanwhile say nothing about the member's speed, for the breaker or the ejector.
		c.sess.hold(!clientOK, l.now)
		l.readIf(&c.me, clientOK)
	}
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
	if len(e.out) == 0 || e.c.closed {
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
// means the write failed and the session has ended.
func (l *loop) write(e *end, p []byte) (int, bool) {
	n, err := sockWrite(e.fd, p)
	switch {
	case err == nil:
		return n, true
	case again(err):
		return 0, true
	}
	l.finish(e.c, ending{side: e.side(), err: osErr("write", err)})
	return 0, false
}

// again reports a non-blocking read or write that should just be retried later.
func again(err error) bool { return errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) }

func (l *loop) watch(e *end, events uint32) {
	if events == e.events || e.c.closed {
		return
	}
	e.events = events
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_MOD, e.fd, &unix.EpollEvent{Events: events | edge, Fd: int32(e.fd), Pad: e.gen}); err != nil {
		l.finish(e.c, ending{side: "zkgate", reason: "epoll_ctl: " + err.Error()})
	}
}

func (e *end) side() string {
	if e.member {
		return "member"
	}
	return "client"
}

// sweep closes clients silent for 1.5 session timeouts (a host that vanished without a
// FIN) and sockets that took no bytes for as long (a peer that stopped reading).
func (l *loop) sweep(now time.Time) {
	for c := range l.conns {
		if c.idle <= 0 {
			continue
		}
		switch {
		case now.Sub(c.lastRead) > c.idle:
			l.finish(c, ending{side: "client", err: fmt.Errorf("%w (%v)", errClientSilent, c.idle)})
		case len(c.ce.out) > 0 && now.Sub(c.ce.outSince) > c.idle:
			l.finish(c, ending{side: "zkgate", reason: "client does not read its replies"})
		case len(c.me.out) > 0 && now.Sub(c.me.outSince) > c.idle:
			l.finish(c, ending{side: "zkgate", reason: "member does not read the session's requests"})
		}
	}
}

// finish ends a session on its loop: what it was owed is settled, both sockets closed.
func (l *loop) finish(c *conn, why ending) {
	if c.closed {
		return
	}
	c.closed = true
	memberBroke := why.side == "member"
	answered := 0
	if memberBroke && c.srv.brk.State() != breaker.Closed {
		// The breaker is not closed: answer what was in flight with the reject code, in
		// order, before the client sees the connection close. One write: the session is
		// ending, so a client that does not read is not waited for.
		var n int
		l.toClient, n = c.answer(append(l.toClient[:0], c.ce.out...), true, true)
		answered = n
		if len(l.toClient) > 0 {
			sockWrite(c.ce.fd, l.toClient)
		}
		l.toClient = l.toClient[:0]
	}
	for _, e := range []*end{&c.ce, &c.me} {
		if e.fd > 0 && e.fd < len(l.ends) && l.ends[e.fd] == e {
			l.ends[e.fd] = nil
		}
		if e.fd > 0 {
			unix.Close(e.fd) // leaves the epoll set with its last descriptor
		}
		e.in, e.out = nil, nil
	}
	delete(l.conns, c)
	l.flight -= c.sent
	l.sessions.Add(-1)
	c.ended(why, memberBroke, answered)
}

// osErr names a failed system call the way net errors read.
func osErr(op string, err error) error {
	var en syscall.Errno
	if errors.As(err, &en) && (en == unix.ECONNRESET || en == unix.EPIPE) {
		return &net.OpError{Op: op, Net: "tcp", Err: err}
	}
	return fmt.Errorf("%s: %w", op, err)
}

// detach takes a connected socket out of Go's poller: the relay loop owns a duplicate of
// its descriptor (non-blocking, like the original) and the net.Conn is closed.
func detach(nc net.Conn) (int, error) {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return -1, fmt.Errorf("%T has no descriptor", nc)
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	var derr error
	if err := raw.Control(func(f uintptr) { fd, derr = unix.FcntlInt(f, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return -1, err
	}
	if derr != nil {
		return -1, fmt.Errorf("dup: %w", derr)
	}
	nc.Close()
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// sockRead and sockWrite are recvfrom(2) and sendto(2) on a non-blocking socket, as
// HAProxy calls them: they go straight to the socket layer, without read(2)'s and
// write(2)'s file bookkeeping, and never block, so they skip the runtime's bookkeeping
// for system calls that might.
func sockRead(fd int, p []byte) (int, error) {
	r, _, e := unix.RawSyscall6(unix.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)),
		unix.MSG_DONTWAIT, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

func sockWrite(fd int, p []byte) (int, error) {
	r, _, e := unix.RawSyscall6(unix.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)),
		unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

// closeFD closes a descriptor that never reached a loop.
func closeFD(fd int) { unix.Close(fd) }
