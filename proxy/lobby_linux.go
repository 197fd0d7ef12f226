//go:build linux

package proxy

import (
	"encoding/binary"
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
	efd  int // wakes the lobby to stop

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
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, efd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(efd)}); err != nil {
		unix.Close(epfd)
		unix.Close(efd)
		return nil, err
	}
	lb := &lobby{srv: s, epfd: epfd, efd: efd, waiting: map[int]*lobbyEntry{}, done: make(chan struct{})}
	go lb.run()
	return lb, nil
}

// admit parks c until its first request is in; it reports false when c cannot wait here
// (the lobby has stopped, or the socket has no descriptor), and the caller starts c's
// goroutine itself.
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
		if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVLOWAT, 4) != nil {
			return
		}
		ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT, Fd: int32(fd)}
		if unix.EpollCtl(lb.epfd, unix.EPOLL_CTL_ADD, fd, &ev) != nil {
			unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVLOWAT, 1)
			return
		}
		e := &lobbyEntry{c: c, fd: fd, deadline: c.accepted.Add(lb.srv.cfg.HandshakeTimeout)}
		c.waiting = e
		lb.waiting[fd] = e
		lb.queue = append(lb.queue, e)
		admitted = true
	})
	return admitted
}

func (lb *lobby) run() {
	defer close(lb.done)
	events := make([]unix.EpollEvent, 128)
	for {
		wait := time.Second
		lb.mu.Lock()
		if len(lb.queue) > 0 {
			wait = min(wait, time.Until(lb.queue[0].deadline)+time.Millisecond)
		}
		lb.mu.Unlock()
		n, err := unix.EpollWait(lb.epfd, events, int(max(wait, 0)/time.Millisecond))
		stop := false
		if err != nil && err != unix.EINTR {
			lb.srv.log.Error().Err(err).Msg("handshake lobby: epoll_wait failed; new connections go straight to their goroutines")
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

// ready looks at what has arrived on e's socket: enough for its first request, it leaves;
// a frame length, it waits (SO_RCVLOWAT) for the rest. Called under lb.mu.
func (lb *lobby) ready(e *lobbyEntry, events uint32) {
	var first [4]byte
	n, _, err := unix.Recvfrom(e.fd, first[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
	if err != nil || n < 4 || events&(unix.EPOLLERR|unix.EPOLLHUP|unix.EPOLLRDHUP) != 0 {
		lb.leave(e)
		return
	}
	if _, ok := jute.FourLetterWord(first[:]); ok {
		lb.leave(e)
		return
	}
	length := int32(binary.BigEndian.Uint32(first[:]))
	if length <= 0 || length > lobbyMaxRequest {
		lb.leave(e) // the handshake refuses it
		return
	}
	var avail int
	avail, err = unix.IoctlGetInt(e.fd, unix.SIOCINQ)
	if err != nil || avail >= 4+int(length) {
		lb.leave(e)
		return
	}
	if unix.SetsockoptInt(e.fd, unix.SOL_SOCKET, unix.SO_RCVLOWAT, 4+int(length)) != nil {
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
		unix.Close(lb.epfd)
		unix.Close(lb.efd)
	})
}
