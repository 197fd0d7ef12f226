//go:build linux

package proxy

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// epollBuilt: this build has the epoll driver.
const epollBuilt = true

// loop is one epoll event loop, the Linux driver. Both sockets of a placed session belong
// to one loop, which does all their I/O and feeds the session's relay: a request costs
// what it costs in HAProxy (one epoll_wait, one read and one write per direction), no
// goroutine is parked or woken per frame, and an idle session holds no stack and no
// buffer, only its state.
//
// Other goroutines reach a session through post: the loop runs the task between events.
type loop struct {
	srv     *Server
	epfd    int
	efd     int    // eventfd that wakes the loop for posted tasks
	ends    []*end // by file descriptor
	conns   map[*conn]struct{}
	pending map[*conn]struct{} // sessions moving or draining: swept every time (sweep)
	sweeps  int
	events  []unix.EpollEvent
	yielded time.Time // the last runtime.Gosched
	idle    bool      // the last wait saw nothing: the next one parks (parkIdle)
	// With GOMAXPROCS=1 the loop waits in Go's poller (parkWait):
	park      *os.File           // the epoll descriptor
	parkRaw   syscall.RawConn    // park's
	parkUntil time.Time          // park's read deadline
	poll      func(uintptr) bool // tryPoll
	ready     int                // tryPoll's results
	pollErr   error
	now       time.Time // when the last epoll_wait returned: the arrival time of what it reported
	rbuf      []byte    // every read lands here first
	o         out       // what the relays produce, for every session of the loop
	nextSweep time.Time
	gen       int32 // registrations, for end.gen
	// The loop's arrival rate, for the coalescing window: frames relayed since
	// rateSince, and a moving average of frames per second over rateTerm periods.
	frames    int
	rateSince time.Time
	rate      float64

	tls tlsScratch // the TLS record layer's buffers (tlsloop_linux.go)

	sessions atomic.Int32 // placed here, for choosing a loop

	mu      sync.Mutex
	tasks   []func()
	spare   []func()
	woken   bool
	stopped bool
	done    chan struct{}
}

// loopSession is a session's part of the loop: its two sockets.
type loopSession struct {
	ce, me   end // client and member sockets
	closed   bool
	lastRead time.Time
	waiting  *lobbyEntry // while the connection waits in the lobby; under the lobby's lock
}

// end is one socket of a session, owned by its loop; fd -1 once closed.
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
	tls *tlsRec // the record layer of a TLS connection (nil: plain); in and out are its plaintext and records
}

const (
	// highWater: past this much unsent to one side, the other side is not read until it
	// drains, so a client that floods a slow member (or a member whose client does not
	// read) cannot grow zkgate's memory without bound.
	highWater   = 256 << 10
	sweepPeriod = 100 * time.Millisecond
	// coalesceDepth: the loop holds frames only while the sessions with requests in
	// flight have this many each on average (window).
	coalesceDepth = 2
	// coalesceBatch: a wait is sized to gather about this many frames of one session at
	// the observed arrival rate per busy session, and held only when it is expected to
	// gather coalesceGain or more on the whole loop (fewer would cost the wait's own
	// wakeup and save none).
	coalesceBatch = 16
	coalesceGain  = 3
	// coalesceFloor: a shorter wait is not worth its nanosleep; the loop's own work
	// between two epoll_wait calls gathers as much.
	coalesceFloor = 100 * time.Microsecond
	// ratePeriod and rateTerm: the arrival rate is measured over periods of at least 5 ms
	// and averaged over about 4 of them, so the window follows load within ~20 ms.
	ratePeriod = 5 * time.Millisecond
	rateTerm   = 4
	yieldEvery = 8 * time.Millisecond
	// edge: session sockets are edge-triggered (readable reads them empty), so epoll does
	// not poll every socket it reported again at the next wait; a peer's shutdown is
	// reported even while reads are paused.
	edge = unix.EPOLLET | unix.EPOLLRDHUP
)

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
	l := &loop{srv: s, epfd: epfd, efd: efd, conns: map[*conn]struct{}{}, pending: map[*conn]struct{}{}, events: make([]unix.EpollEvent, 256),
		rbuf: make([]byte, readChunk), done: make(chan struct{})}
	l.o.hot = newHotBatch(s)
	// Non-blocking (epoll_wait ignores it), so that Go's poller can wait on the epoll
	// descriptor: always with a single P (parkWait), and at a yield otherwise.
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(epfd)
		unix.Close(efd)
		return nil, err
	}
	l.poll = l.tryPoll
	if runtime.GOMAXPROCS(0) == 1 {
		// The only P must not sit in epoll_wait: every other goroutine (handshakes,
		// health, admin) would wait for sysmon to take it back. The loop parks in Go's
		// poller on the epoll descriptor instead.
		l.park = os.NewFile(uintptr(epfd), "epoll")
		if l.parkRaw, err = l.park.SyscallConn(); err != nil {
			l.park.Close()
			unix.Close(efd)
			return nil, err
		}
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
			l.srv.log.Error().Err(err).Int("sessions", len(l.conns)).Msg("epoll_wait failed: relay loop stopped, its sessions closed")
			l.die("relay loop failed: " + err.Error())
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
			if e.c.closed || e.fd < 0 {
				continue
			}
			hup := ev.Events&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0
			switch {
			case e.events&unix.EPOLLIN != 0 && (ev.Events&unix.EPOLLIN != 0 || hup):
				l.readable(e, hup)
			case ev.Events&(unix.EPOLLHUP|unix.EPOLLERR) != 0:
				// Reads are paused (the other side is backed up) and the socket failed.
				l.broken(e, errors.New("connection reset while its reads were paused"))
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
// 10 ms without being rescheduled. Yielding every few milliseconds keeps sysmon asleep
// while the loop works: measured, this costs less per request than parking in Go's
// poller on the epoll descriptor (BENCHMARKS.md). An idle loop (its last wait saw
// nothing) parks instead (parkIdle).
func (l *loop) wait() (int, error) {
	if l.park != nil {
		return l.parkWait()
	}
	if l.idle {
		n, err := l.parkIdle()
		l.idle = n == 0 && err == nil
		return n, err
	}
	if l.now.Sub(l.yielded) > yieldEvery {
		runtime.Gosched()
		l.yielded = l.now
	}
	if w := l.rest(); w > 0 {
		// Coalescing: take everything that arrives meanwhile in one batch; block as
		// usual only when nothing did.
		l.doze(w)
		if n, err := l.epollWait(0); n > 0 || err != nil {
			return n, err
		}
	}
	n, err := l.epollWait(int(sweepPeriod / time.Millisecond))
	l.idle = n == 0 && err == nil // nothing for a whole sweep period: park next time
	return n, err
}

// rest is what is left of the window since the last epoll_wait returned: frames have
// been gathering while the loop relayed its batch, so a busy loop holds less, or not at
// all.
func (l *loop) rest() time.Duration {
	w := l.window()
	if w <= 0 {
		return 0
	}
	if w -= time.Since(l.now); w < coalesceFloor/2 {
		return 0
	}
	return w
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
	l.observe(l.now)
	if errors.Is(err, unix.EINTR) {
		return 0, nil
	}
	return max(n, 0), err
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

// die ends a loop whose epoll_wait failed: later posts are refused, tasks already posted
// run (a register meets the dead loop and ends its session), and every session is
// closed, so that nothing waits for a loop that is gone.
func (l *loop) die(reason string) {
	l.mu.Lock()
	l.stopped = true
	tasks := l.tasks
	l.tasks = nil
	l.mu.Unlock()
	for _, f := range tasks {
		f()
	}
	for c := range l.conns {
		l.finish(c, ending{side: "zkgate", reason: reason})
	}
}
