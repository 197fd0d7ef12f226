//go:build linux

package proxy

import (
	"errors"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/zkgate/zkgate/health"
	"golang.org/x/sys/unix"
)

// socketPair returns the two ends of a connected stream socket pair.
func socketPair(t *testing.T) (int, int) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	return fds[0], fds[1]
}

func fdOpen(fd int) bool {
	_, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
	return err == nil
}

// testLoopServer is a Server with one relay loop and no listener.
func testLoopServer(t *testing.T) (*Server, *loop) {
	t.Helper()
	view := &health.View{Members: []health.MemberState{{Address: "m1", Status: health.StatusServing, Mode: "leader", Serving: true}},
		Leader: "m1", Quorum: true, At: time.Now()}
	s := NewServer(Config{Loops: 1}, staticView{view}, zerolog.Nop())
	s.maint.Do(s.start)
	if s.lerr != nil {
		t.Fatal(s.lerr)
	}
	t.Cleanup(func() { s.Close() })
	return s, s.loops[0]
}

// placed returns a conn tracked by s with a session, as the handshake leaves it.
func placed(s *Server) *conn {
	c := &conn{srv: s, addr: "test", ip: "test"}
	s.mu.Lock()
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	s.wg.Add(1)
	s.attach(c, &Session{Client: "test", member: "m1", id: 1, timeout: 4 * time.Second, started: time.Now()})
	return c
}

// placedPair is a placed session bound for l, with socket pairs for its client and member
// sockets (their peers closed when the test ends).
func placedPair(t *testing.T, s *Server, l *loop) (c *conn, cfd, mfd int) {
	t.Helper()
	c = placed(s)
	cfd, cpeer := socketPair(t)
	mfd, mpeer := socketPair(t)
	t.Cleanup(func() { unix.Close(cpeer); unix.Close(mpeer) })
	l.sessions.Add(1)
	return c, cfd, mfd
}

// settled waits until the loop has run every task posted before it.
func settled(t *testing.T, l *loop) {
	t.Helper()
	done := make(chan struct{})
	if !l.post(func() { close(done) }) {
		t.Fatal("loop stopped")
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("loop did not run its tasks")
	}
}

// A session aborted before its register ran must not come back to life when register
// runs: its sockets are closed and the loop does not keep it.
func TestRegisterAfterAbort(t *testing.T) {
	s, l := testLoopServer(t)
	c, cfd, mfd := placedPair(t, s, l)
	l.post(func() { l.finish(c, ending{side: "zkgate", reason: "aborted in the gap"}) })
	l.post(func() { l.register(c, cfd, mfd, nil, nil, nil) })
	settled(t, l)
	if fdOpen(cfd) || fdOpen(mfd) {
		t.Error("the aborted session's sockets are open")
	}
	if _, kept := l.conns[c]; kept {
		t.Error("the loop keeps the aborted session")
	}
	if n := len(s.connList(false)); n != 0 {
		t.Errorf("the server tracks %d connections", n)
	}
}

// A loop whose epoll_wait fails ends its sessions, refuses later posts, and does not
// keep Server.Close waiting.
func TestLoopFailureEndsSessions(t *testing.T) {
	s, l := testLoopServer(t)
	c, cfd, mfd := placedPair(t, s, l)
	if reason := c.handOver(l, func() bool { return l.post(func() { l.register(c, cfd, mfd, nil, nil, nil) }) }); reason != "" {
		t.Fatal(reason)
	}
	settled(t, l)
	// The epoll descriptor now names something that is not an epoll instance: the next
	// epoll_wait fails with EINVAL.
	null, err := unix.Open(os.DevNull, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Dup2(null, l.epfd); err != nil {
		t.Fatal(err)
	}
	unix.Close(null)
	l.wake()
	select {
	case <-l.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the loop did not stop")
	}
	if l.post(func() {}) {
		t.Error("a dead loop took a task")
	}
	if fdOpen(cfd) || fdOpen(mfd) {
		t.Error("the dead loop's session sockets are open")
	}
	closed := make(chan struct{})
	go func() { s.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Server.Close waits for the dead loop's sessions")
	}
}

// flakyListener fails its first Accepts with errors other than a timeout.
type flakyListener struct {
	net.Listener
	fails []error
}

func (f *flakyListener) Accept() (net.Conn, error) {
	if len(f.fails) > 0 {
		err := f.fails[0]
		f.fails = f.fails[1:]
		return nil, err
	}
	return f.Listener.Accept()
}

// Accept errors such as ENFILE and ENOBUFS back off; zkgate keeps serving.
func TestAcceptErrorsBackOff(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	view := &health.View{Members: []health.MemberState{{Address: "m1", Status: health.StatusServing, Mode: "leader", Serving: true}},
		Leader: "m1", Quorum: true, At: time.Now()}
	s := NewServer(Config{}, staticView{view}, zerolog.Nop())
	flaky := &flakyListener{Listener: ln, fails: []error{
		&net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.ENFILE)},
		&net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.ENOBUFS)},
		&net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.ECONNABORTED)},
	}}
	served := make(chan error, 1)
	go func() { served <- s.Serve(flaky) }()
	defer func() {
		s.Close()
		if err := <-served; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	c.Write([]byte("ruok"))
	buf := make([]byte, 4)
	if _, err := c.Read(buf); err != nil || string(buf) != "imok" {
		t.Fatalf("after accept errors: %q %v", buf, err)
	}
	select {
	case err := <-served:
		t.Fatalf("Serve returned %v", err)
	default:
	}
}
