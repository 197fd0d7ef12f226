//go:build linux

package proxy

import (
	"encoding/binary"
	"errors"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/zkgate/zkgate/jute"
	"golang.org/x/sys/unix"
)

// The lobby holds accepted connections until their first request has arrived whole, with
// no goroutine and no buffer: a client that connects and sends nothing, or half a
// ConnectRequest, costs its socket and one small entry, not a goroutine's stack and a read
// buffer (about 7.4 KB per connection before, measured with 15,000 stalled ones).
//
// It watches each socket in its own epoll set with SO_RCVLOWAT, so the kernel wakes it
// only when enough bytes wait: first 4 (a four-letter word, or a frame length), then the
// whole ConnectRequest. Then the connection's handshake goroutine starts and finds every
// byte it needs. A connection still incomplete at its handshake deadline starts its
// goroutine too, which refuses it as before (one place logs and counts refusals).
type lobby struct {
	srv  *Server
	epfd int
	efd  int      // wakes the lobby to stop
	file *os.File // epfd, parked in Go's poller: no thread sits in epoll_wait
	raw  syscall.RawConn

	mu      sync.Mutex
	waiting map[int]*lobbyEntry // by descriptor
	queue   []*lobbyEntry       // by deadline (the handshake timeout is one for all)
	stopped bool
	done    chan struct{}
	closed  sync.Once
}

type lobbyEntry struct {
	c        *conn
	fd       int
	deadline time.Time
	left     bool // handed to its goroutine
}

// lobbyMaxRequest: a first frame longer than this is not waited for in the lobby (a
// ConnectRequest is about 50 bytes); the handshake reads or refuses it.
const lobbyMaxRequest = 1 << 10

func newLobby(s *Server) (*lobby, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	efd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return nil, err
	}
	fail := func(err error) (*lobby, error) {
		unix.Close(epfd)
		unix.Close(efd)
		return nil, err
	}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, efd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(efd)}); err != nil {
		return fail(err)
	}
	if err := unix.SetNonblock(epfd, true); err != nil {
		return fail(err)
	}
	lb := &lobby{srv: s, epfd: epfd, efd: efd, waiting: map[int]*lobbyEntry{}, done: make(chan struct{})}
	lb.file = os.NewFile(uintptr(epfd), "lobby-epoll")
	if lb.raw, err = lb.file.SyscallConn(); err != nil {
		lb.file.Close()
		unix.Close(efd)
		return nil, err
	}
	go lb.run()
	return lb, nil
}

// firstNeed says how many bytes the socket's first request takes in all, when more than
// have arrived; 0 when it is whole, or is not for the lobby to judge (a four-letter word,
// a length out of range, an error): the handshake takes it now.
func firstNeed(fd int) int {
	avail, err := unix.IoctlGetInt(fd, unix.SIOCINQ)
	if err != nil {
		return 0
	}
	if avail < 4 {
		return 4
	}
	var first [4]byte
	if n, _, err := unix.Recvfrom(fd, first[:], unix.MSG_PEEK|unix.MSG_DONTWAIT); err != nil || n < 4 {
		return 0
	}
	if _, ok := jute.FourLetterWord(first[:]); ok {
		return 0
	}
	length := int32(binary.BigEndian.Uint32(first[:]))
	if length <= 0 || length > lobbyMaxRequest || avail >= 4+int(length) {
		return 0
	}
	return 4 + int(length)
}

// admit parks c until its first request is in; it reports false when c need not or
// cannot wait here (its request is in already, the lobby has stopped, the socket has no
// descriptor), and the caller starts c's goroutine itself.
func (lb *lobby) admit(c *conn) bool {
	if lb == nil {
		return false
	}
	sc, ok := c.client.(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	lb.mu.Lock()
	defer lb.mu.Unlock()
	if lb.stopped {
		return false
	}
	admitted := false
	raw.Control(func(f uintptr) {
		fd := int(f)
		need := firstNeed(fd)
		if need == 0 || unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVLOWAT, need) != nil {
			return
		}
		ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT, Fd: int32(fd)}
		if unix.EpollCtl(lb.epfd, unix.EPOLL_CTL_ADD, fd, &ev) != nil {
			unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVLOWAT, 1)
			return
		}
		e := &lobbyEntry{c: c, fd: fd, deadline: c.accepted.Add(lb.srv.conf().HandshakeTimeout)}
		c.waiting = e
		lb.waiting[fd] = e
		lb.queue = append(lb.queue, e)
		if len(lb.queue) == 1 {
			lb.file.SetReadDeadline(e.deadline) // the lobby may be waiting without one
		}
		admitted = true
	})
	return admitted
}

// run waits for the lobby's sockets in Go's poller (the epoll set is itself pollable),
// with the earliest handshake deadline as the read deadline.
func (lb *lobby) run() {
	defer close(lb.done)
	events := make([]unix.EpollEvent, 128)
	for {
		lb.mu.Lock()
		var next time.Time // none: wait for events only
		if len(lb.queue) > 0 {
			next = lb.queue[0].deadline
		}
		lb.file.SetReadDeadline(next) // under mu, as admit's, so neither undoes the other
		lb.mu.Unlock()
		n := 0
		var werr error
		err := lb.raw.Read(func(fd uintptr) bool {
			n, werr = unix.EpollWait(int(fd), events, 0)
			return n > 0 || (werr != nil && werr != unix.EINTR)
		})
		stop := false
		if werr != nil || (err != nil && !errors.Is(err, os.ErrDeadlineExceeded)) {
			lb.srv.log.Error().Err(errors.Join(werr, err)).Msg("handshake lobby failed; new connections get their goroutines at accept")
			n, stop = 0, true
		}
		lb.mu.Lock()
		for _, ev := range events[:max(n, 0)] {
			if int(ev.Fd) == lb.efd {
				stop = true
				continue
			}
			if e := lb.waiting[int(ev.Fd)]; e != nil {
				lb.ready(e, ev.Events)
			}
		}
		now := time.Now()
		for len(lb.queue) > 0 && (lb.queue[0].left || !now.Before(lb.queue[0].deadline)) {
			if e := lb.queue[0]; !e.left {
				lb.leave(e) // its handshake goroutine refuses it: the deadline has passed
			}
			lb.queue[0] = nil
			lb.queue = lb.queue[1:]
		}
		if stop {
			lb.stopped = true
			for _, e := range lb.waiting {
				lb.leave(e)
			}
			lb.queue = nil
			lb.mu.Unlock()
			return
		}
		lb.mu.Unlock()
	}
}

// ready looks at what has arrived on e's socket: its whole first request, and it leaves;
// less, and it waits (SO_RCVLOWAT) for the rest. Called under lb.mu.
func (lb *lobby) ready(e *lobbyEntry, events uint32) {
	if events&(unix.EPOLLERR|unix.EPOLLHUP|unix.EPOLLRDHUP) != 0 {
		lb.leave(e)
		return
	}
	need := firstNeed(e.fd)
	if need == 0 || unix.SetsockoptInt(e.fd, unix.SOL_SOCKET, unix.SO_RCVLOWAT, need) != nil {
		lb.leave(e)
		return
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT, Fd: int32(e.fd)}
	if unix.EpollCtl(lb.epfd, unix.EPOLL_CTL_MOD, e.fd, &ev) != nil {
		lb.leave(e)
	}
}

// leave hands e to its handshake goroutine. Called under lb.mu, while the descriptor is
// open: only the goroutine, or abort after release, closes it.
func (lb *lobby) leave(e *lobbyEntry) {
	e.left = true
	e.c.waiting = nil
	delete(lb.waiting, e.fd)
	unix.EpollCtl(lb.epfd, unix.EPOLL_CTL_DEL, e.fd, nil)
	unix.SetsockoptInt(e.fd, unix.SOL_SOCKET, unix.SO_RCVLOWAT, 1)
	go e.c.serve()
}

// release hands c to its goroutine if it waits here; abort calls it before closing the
// socket, so that the lobby never touches a closed (or reused) descriptor.
func (lb *lobby) release(c *conn) {
	if lb == nil {
		return
	}
	lb.mu.Lock()
	if e := c.waiting; e != nil && !e.left {
		lb.leave(e)
	}
	lb.mu.Unlock()
}

// stop hands every waiting connection to its goroutine and ends the lobby; later admits
// are refused. It is idempotent and waits for the lobby's goroutine.
func (lb *lobby) stop() {
	if lb == nil {
		return
	}
	lb.mu.Lock()
	running := !lb.stopped
	lb.stopped = true
	lb.mu.Unlock()
	if running {
		var one [8]byte
		binary.NativeEndian.PutUint64(one[:], 1)
		unix.Write(lb.efd, one[:])
	}
	<-lb.done
	lb.closed.Do(func() {
		lb.file.Close()
		unix.Close(lb.efd)
	})
}

// discardUnread reads what the client sent and zkgate did not read (a partial request the
// lobby left in the kernel), without waiting, so that closing the socket sends a FIN, not
// the reset that closing with unread bytes does.
func discardUnread(c net.Conn) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return
	}
	c.SetReadDeadline(time.Time{}) // RawConn.Read honours a passed deadline before calling f
	var buf [4 << 10]byte
	raw.Read(func(fd uintptr) bool {
		for range 16 { // at most 64 KiB
			if n, _, err := unix.Recvfrom(int(fd), buf[:], unix.MSG_DONTWAIT); err != nil || n < len(buf) {
				break
			}
		}
		return true
	})
}
