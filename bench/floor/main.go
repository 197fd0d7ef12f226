//go:build linux

// Command floor is the bench harness's floor target: the cheapest relay that could carry
// zkgate's traffic, so that zkgate's CPU per operation can be read against a limit and
// not only against HAProxy.
//
//	floor -listen 127.0.0.1:2181 -members 127.0.0.1:2182,127.0.0.1:2183 [-loops 1]
//
// It uses the sockets and batching of zkgate's epoll driver (proxy/loop_linux.go): each
// client connection gets one connection to a member chosen round-robin; both descriptors
// leave Go's poller and belong to one epoll loop, edge-triggered, read with recvfrom
// into one 64 KiB buffer until a read comes back short, and every read is written at
// once with sendto to the other side (what a socket does not take waits for EPOLLOUT,
// and its feeder is not read meanwhile). The loop yields every 8 ms as zkgate's does.
// What it leaves out is everything zkgate does with the bytes: no framing, no decoding,
// no FIFO, no breaker, no hot spots, no held copies, no coalescing wait, no handshake
// handling (the ConnectRequest is relayed like any other bytes), no moves.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	readChunk  = 64 << 10 // zkgate's read buffer
	highWater  = 256 << 10
	yieldEvery = 8 * time.Millisecond
	edge       = unix.EPOLLET | unix.EPOLLRDHUP
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to accept clients on")
	members := flag.String("members", "", "comma-separated member addresses")
	loops := flag.Int("loops", max(1, runtime.GOMAXPROCS(0)-1), "epoll loops (zkgate's default: GOMAXPROCS-1)")
	flag.Parse()
	addrs := strings.Split(*members, ",")
	if *members == "" {
		fmt.Fprintln(os.Stderr, "floor: -members is required")
		os.Exit(2)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		os.Exit(1)
	}
	ls := make([]*loop, *loops)
	for i := range ls {
		if ls[i], err = newLoop(); err != nil {
			fmt.Fprintln(os.Stderr, "floor:", err)
			os.Exit(1)
		}
	}
	var next atomic.Uint64
	for {
		c, err := ln.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, "floor: accept:", err)
			os.Exit(1)
		}
		n := next.Add(1) - 1
		go pair(c, addrs[n%uint64(len(addrs))], ls[n%uint64(len(ls))])
	}
}

// pair dials the member for one client and hands both sockets to a loop.
func pair(c net.Conn, member string, l *loop) {
	m, err := net.DialTimeout("tcp", member, 5*time.Second)
	if err != nil {
		c.Close()
		return
	}
	cfd, err1 := detach(c)
	mfd, err2 := detach(m)
	if err1 != nil || err2 != nil {
		if cfd >= 0 {
			unix.Close(cfd)
		}
		if mfd >= 0 {
			unix.Close(mfd)
		}
		return
	}
	l.post(cfd, mfd)
}

// detach takes a socket out of Go's poller: the loop owns a non-blocking duplicate.
func detach(nc net.Conn) (int, error) {
	defer nc.Close()
	raw, err := nc.(*net.TCPConn).SyscallConn()
	if err != nil {
		return -1, err
	}
	fd, derr := -1, error(nil)
	if err := raw.Control(func(f uintptr) { fd, derr = unix.FcntlInt(f, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return -1, err
	}
	if derr != nil {
		return -1, derr
	}
	return fd, unix.SetNonblock(fd, true)
}

// end is one socket; peer is the other socket of its pair.
type end struct {
	fd     int
	peer   *end
	out    []byte // what the socket did not take yet
	events uint32
	dead   bool
}

type loop struct {
	epfd, efd int
	ends      []*end // by descriptor
	buf       []byte
	yielded   time.Time

	mu      sync.Mutex
	pending [][2]int
}

func newLoop() (*loop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	efd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return nil, err
	}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, efd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(efd)}); err != nil {
		return nil, err
	}
	l := &loop{epfd: epfd, efd: efd, buf: make([]byte, readChunk)}
	go l.run()
	return l, nil
}

func (l *loop) post(cfd, mfd int) {
	l.mu.Lock()
	l.pending = append(l.pending, [2]int{cfd, mfd})
	l.mu.Unlock()
	one := [8]byte{1}
	unix.Write(l.efd, one[:])
}

func (l *loop) run() {
	events := make([]unix.EpollEvent, 256)
	for {
		if now := time.Now(); now.Sub(l.yielded) > yieldEvery {
			runtime.Gosched() // as zkgate's loop does, so sysmon does not take the P back
			l.yielded = now
		}
		n, err := unix.EpollWait(l.epfd, events, 100)
		if err != nil && err != unix.EINTR {
			fmt.Fprintln(os.Stderr, "floor: epoll_wait:", err)
			os.Exit(1)
		}
		for i := 0; i < n; i++ {
			ev := &events[i]
			fd := int(ev.Fd)
			if fd == l.efd {
				l.adopt()
				continue
			}
			e := l.ends[fd]
			if e == nil || e.dead {
				continue
			}
			if ev.Events&unix.EPOLLOUT != 0 {
				l.drain(e)
			}
			if !e.dead && e.events&unix.EPOLLIN != 0 && ev.Events&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
				l.readable(e)
			}
		}
	}
}

func (l *loop) adopt() {
	var b [8]byte
	unix.Read(l.efd, b[:])
	l.mu.Lock()
	p := l.pending
	l.pending = nil
	l.mu.Unlock()
	for _, fds := range p {
		c, m := &end{fd: fds[0]}, &end{fd: fds[1]}
		c.peer, m.peer = m, c
		for max(c.fd, m.fd) >= len(l.ends) {
			l.ends = append(l.ends, make([]*end, len(l.ends)+1024)...)
		}
		for _, e := range []*end{c, m} {
			l.ends[e.fd] = e
			e.events = unix.EPOLLIN
			if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, e.fd, &unix.EpollEvent{Events: e.events | edge, Fd: int32(e.fd)}); err != nil {
				l.close(c)
				break
			}
		}
	}
}

// readable reads e until a short read and writes each read to its peer.
func (l *loop) readable(e *end) {
	for {
		n, err := sockRead(e.fd, l.buf)
		if err == unix.EAGAIN || err == unix.EINTR {
			return
		}
		if err != nil || n == 0 {
			l.close(e)
			return
		}
		l.send(e.peer, l.buf[:n])
		if e.dead || e.events&unix.EPOLLIN == 0 || n < len(l.buf) {
			return
		}
	}
}

func (l *loop) send(e *end, p []byte) {
	if e.dead {
		return
	}
	if len(e.out) > 0 {
		e.out = append(e.out, p...)
	} else {
		n, err := sockWrite(e.fd, p)
		if err != nil && err != unix.EAGAIN && err != unix.EINTR {
			l.close(e)
			return
		}
		if n == len(p) {
			return
		}
		e.out = append(e.out, p[max(n, 0):]...)
		l.watch(e, e.events|unix.EPOLLOUT)
	}
	if len(e.out) > highWater {
		l.watch(e.peer, e.peer.events&^unix.EPOLLIN) // the feeder waits in its own buffers
	}
}

func (l *loop) drain(e *end) {
	if len(e.out) == 0 {
		return
	}
	n, err := sockWrite(e.fd, e.out)
	if err != nil && err != unix.EAGAIN && err != unix.EINTR {
		l.close(e)
		return
	}
	if n <= 0 {
		return
	}
	if n < len(e.out) {
		e.out = e.out[:copy(e.out, e.out[n:])]
		return
	}
	e.out = nil
	l.watch(e, e.events&^unix.EPOLLOUT)
	l.watch(e.peer, e.peer.events|unix.EPOLLIN)
}

func (l *loop) watch(e *end, events uint32) {
	if e.dead || events == e.events {
		return
	}
	e.events = events
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_MOD, e.fd, &unix.EpollEvent{Events: events | edge, Fd: int32(e.fd)}); err != nil {
		l.close(e)
	}
}

// close ends a pair: both sockets.
func (l *loop) close(e *end) {
	for _, x := range []*end{e, e.peer} {
		if x.dead {
			continue
		}
		x.dead = true
		if l.ends[x.fd] == x {
			l.ends[x.fd] = nil
		}
		unix.Close(x.fd)
	}
}

// sockRead and sockWrite are recvfrom(2) and sendto(2), as zkgate's loop calls them.
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
