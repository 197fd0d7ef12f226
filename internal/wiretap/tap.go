// Package wiretap records the ZooKeeper frames that pass between clients and one server.
// It makes the golden frames in testdata/golden (see testdata/README.md) and checks the
// jute codec against them: every frame must decode, and re-encode to the same bytes.
//
// A Tap is a plain TCP relay on a loopback port that splits both directions into frames
// with jute.FrameReader and keeps a copy of each, in the order the tap saw them.
package wiretap

import (
	"net"
	"sync"
	"time"

	"github.com/zkgate/zkgate/jute"
)

// Dir is the direction of a frame.
type Dir byte

// The two directions, as they appear in a golden file.
const (
	ToServer Dir = '>'
	ToClient Dir = '<'
)

// Frame is one captured frame: the connection it came on (numbered from 1 in accept
// order), its direction and its bytes, length prefix included.
type Frame struct {
	Conn  int
	Dir   Dir
	Bytes []byte
}

// Tap relays every connection it accepts to target and records the frames.
type Tap struct {
	ln     net.Listener
	target string

	mu     sync.Mutex
	frames []Frame
	live   map[int][2]net.Conn
	n      int

	wg sync.WaitGroup
}

// Listen starts a tap on a free loopback port in front of target.
func Listen(target string) (*Tap, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	t := &Tap{ln: ln, target: target, live: map[int][2]net.Conn{}}
	t.wg.Add(1)
	go t.accept()
	return t, nil
}

// Addr is the tap's address, for the clients' connect string.
func (t *Tap) Addr() string { return t.ln.Addr().String() }

// Frames returns a copy of the frames recorded so far.
func (t *Tap) Frames() []Frame {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]Frame(nil), t.frames...)
}

// Drop closes every live connection, both sides, so that clients reconnect (and resend
// their watches with setWatches).
func (t *Tap) Drop() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, pair := range t.live {
		pair[0].Close()
		pair[1].Close()
	}
}

// Close stops the tap and waits for its relays to end.
func (t *Tap) Close() {
	t.ln.Close()
	t.Drop()
	t.wg.Wait()
}

func (t *Tap) accept() {
	defer t.wg.Done()
	for {
		c, err := t.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.DialTimeout("tcp", t.target, 5*time.Second)
		if err != nil {
			c.Close()
			continue
		}
		t.mu.Lock()
		t.n++
		id := t.n
		t.live[id] = [2]net.Conn{c, s}
		t.mu.Unlock()
		t.wg.Add(2)
		go t.pump(id, ToServer, c, s)
		go t.pump(id, ToClient, s, c)
	}
}

func (t *Tap) pump(id int, dir Dir, from, to net.Conn) {
	defer t.wg.Done()
	defer func() {
		from.Close()
		to.Close()
		t.mu.Lock()
		delete(t.live, id)
		t.mu.Unlock()
	}()
	fr := jute.NewFrameReader(from, 0)
	for {
		frame, err := fr.Next()
		if err != nil {
			return // the end of the stream, or a Drop cutting it short
		}
		t.record(id, dir, frame)
		if _, err := to.Write(frame); err != nil {
			return
		}
	}
}

func (t *Tap) record(id int, dir Dir, frame []byte) {
	t.mu.Lock()
	t.frames = append(t.frames, Frame{Conn: id, Dir: dir, Bytes: append([]byte(nil), frame...)})
	t.mu.Unlock()
}
