package proxy

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/zkgate/zkgate/jute"
)

// inflight is one request waiting for its reply.
type inflight struct {
	xid   int32
	op    jute.OpCode
	start time.Time
	watch watchKind // registered when the reply succeeds
	path  string    // only for watch registrations
}

type watchKind uint8

const (
	watchNone watchKind = iota
	watchData
	watchExist
	watchChild
	watchPersistent
	watchRecursive
)

// errXidMismatch is a reply that does not answer the oldest request in flight.
var errXidMismatch = errors.New("reply xid does not match the request in flight")

// Session is what zkgate knows of one client session. Its fields are guarded by mu; the
// two relay goroutines share it.
type Session struct {
	Client string // client address
	Member string // member address

	mu       sync.Mutex
	id       int64
	passwd   []byte
	timeout  time.Duration
	lastZxid int64
	fifo     []inflight // requests in flight, oldest first
	auth     [][]byte   // auth packets as sent (AuthPacket bodies)
	watches  map[string]watchSet
	requests uint64
	replies  uint64
	started  time.Time
}

type watchSet uint8

func (w watchSet) has(k watchKind) bool { return w&(1<<k) != 0 }

// SessionInfo is a snapshot of a Session for status pages and 4lw cons.
type SessionInfo struct {
	Client   string
	Member   string
	ID       int64
	Timeout  time.Duration
	LastZxid int64
	InFlight int
	Watches  int
	Requests uint64
	Replies  uint64
	Started  time.Time
}

// Info returns a snapshot.
func (s *Session) Info() SessionInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	return SessionInfo{s.Client, s.Member, s.id, s.timeout, s.lastZxid, len(s.fifo), len(s.watches), s.requests, s.replies, s.started}
}

// push records a request the client sent.
func (s *Session) push(f inflight) {
	s.mu.Lock()
	s.fifo = append(s.fifo, f)
	s.requests++
	s.mu.Unlock()
}

// pop matches a reply with its request. Replies come in request order, except that the
// server answers auth (xid -4) in its I/O thread, ahead of requests still in the
// pipeline; that one is matched wherever it sits.
func (s *Session) pop(h jute.ReplyHeader) (inflight, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if h.Zxid > 0 && h.Xid != jute.XidPing && h.Xid != jute.XidAuth {
		s.lastZxid = max(s.lastZxid, h.Zxid)
	}
	if len(s.fifo) > 0 && s.fifo[0].xid == h.Xid {
		f := s.fifo[0]
		s.fifo[0] = inflight{}
		s.fifo = s.fifo[1:]
		s.replies++
		return f, nil
	}
	if h.Xid == jute.XidAuth {
		for i := range s.fifo {
			if s.fifo[i].xid == jute.XidAuth {
				f := s.fifo[i]
				s.fifo = append(s.fifo[:i], s.fifo[i+1:]...)
				s.replies++
				return f, nil
			}
		}
	}
	want := int32(0)
	if len(s.fifo) > 0 {
		want = s.fifo[0].xid
	}
	return inflight{}, fmt.Errorf("%w: got xid %d, oldest in flight %d (%d in flight)", errXidMismatch, h.Xid, want, len(s.fifo))
}

// inFlight is the number of unanswered requests.
func (s *Session) inFlight() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.fifo)
}

func (s *Session) addAuth(body []byte) {
	s.mu.Lock()
	s.auth = append(s.auth, append([]byte(nil), body...))
	s.mu.Unlock()
}

func (s *Session) addWatches(paths []string, k watchKind) {
	for _, p := range paths {
		s.addWatch(p, k)
	}
}

func (s *Session) addWatch(path string, k watchKind) {
	s.mu.Lock()
	if s.watches == nil {
		s.watches = map[string]watchSet{}
	}
	s.watches[path] |= 1 << k
	s.mu.Unlock()
}

// fired removes the one-shot watches a notification consumes, as the server does.
func (s *Session) fired(ev jute.EventType, path string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	w := s.watches[path]
	switch ev {
	case jute.EventNodeCreated, jute.EventNodeDataChanged:
		w &^= 1<<watchData | 1<<watchExist
	case jute.EventNodeDeleted:
		w &^= 1<<watchData | 1<<watchExist | 1<<watchChild
	case jute.EventNodeChildrenChanged:
		w &^= 1 << watchChild
	case jute.EventPersistentWatchRemoved:
		w &^= 1<<watchPersistent | 1<<watchRecursive
	case jute.EventDataWatchRemoved:
		w &^= 1<<watchData | 1<<watchExist
	case jute.EventChildWatchRemoved:
		w &^= 1 << watchChild
	}
	if w == 0 {
		delete(s.watches, path)
	} else {
		s.watches[path] = w
	}
}

// Watches lists the watched paths by kind, as SetWatches2 would carry them.
func (s *Session) Watches() jute.SetWatches2 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := jute.SetWatches2{RelativeZxid: s.lastZxid}
	for p, w := range s.watches {
		if w.has(watchData) {
			out.DataWatches = append(out.DataWatches, p)
		}
		if w.has(watchExist) {
			out.ExistWatches = append(out.ExistWatches, p)
		}
		if w.has(watchChild) {
			out.ChildWatches = append(out.ChildWatches, p)
		}
		if w.has(watchPersistent) {
			out.PersistentWatches = append(out.PersistentWatches, p)
		}
		if w.has(watchRecursive) {
			out.PersistentRecursiveWatches = append(out.PersistentRecursiveWatches, p)
		}
	}
	return out
}
