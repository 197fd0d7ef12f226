package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/zkgate/zkgate/jute"
)

// What a session keeps for a move's replay is bounded: a client controls it.
const (
	maxAuthPackets = 32      // distinct auth packets kept per session
	maxAuthBytes   = 1 << 20 // their bodies together
)

// errAuthBound: a client sent more distinct auth data than zkgate keeps for a replay.
var errAuthBound = errors.New("auth packets over the bound kept for a move's replay")

type watchKind uint8

const (
	watchNone watchKind = iota
	watchData
	watchExist
	watchChild
	watchPersistent
	watchRecursive
)

type watchSet uint8

func (w watchSet) has(k watchKind) bool { return w&(1<<k) != 0 }

// zxid is the last zxid the session saw.
func (s *Session) zxid() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastZxid
}

// Member is the member the session is on.
func (s *Session) Member() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.member
}

// addAuth keeps an auth packet for a move's replay: each distinct packet once, within
// maxAuthPackets and maxAuthBytes.
func (s *Session) addAuth(body []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range s.auth {
		if bytes.Equal(a, body) {
			return nil
		}
	}
	if len(s.auth) >= maxAuthPackets || s.authBytes+len(body) > maxAuthBytes {
		return fmt.Errorf("%w (%d packets, %d bytes kept; this one %d bytes)", errAuthBound, len(s.auth), s.authBytes, len(body))
	}
	s.auth = append(s.auth, append([]byte(nil), body...))
	s.authBytes += len(body)
	return nil
}

func (s *Session) usedSASL() {
	s.mu.Lock()
	s.sasl = true
	s.mu.Unlock()
}

// addWatchLists records the watches a client re-registers (SetWatches, SetWatches2).
func (s *Session) addWatchLists(w jute.SetWatches2) {
	for i, paths := range w.Lists() {
		for _, p := range *paths {
			s.addWatch(p, listKind(i))
		}
	}
}

// listKind is the kind of watch in SetWatches2.Lists()[i].
func listKind(i int) watchKind { return watchData + watchKind(i) }

func (s *Session) addWatch(path string, k watchKind) {
	s.mu.Lock()
	if s.watches == nil {
		s.watches = map[string]watchSet{}
	}
	s.watches[path] |= 1 << k
	s.mu.Unlock()
}

// removeWatches forgets what a successful removeWatches removed (type as in the request:
// children, data or any).
func (s *Session) removeWatches(path string, typ int32) {
	var drop watchSet
	switch typ {
	case jute.WatcherChildren:
		drop = 1 << watchChild
	case jute.WatcherData:
		drop = 1<<watchData | 1<<watchExist
	case jute.WatcherAny:
		drop = 1<<watchData | 1<<watchExist | 1<<watchChild
	default: // 4 persistent, 5 persistent recursive (3.6+)
		drop = 1<<watchPersistent | 1<<watchRecursive
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.setWatchLocked(path, s.watches[path]&^drop)
}

func (s *Session) setWatchLocked(path string, w watchSet) {
	if w == 0 {
		delete(s.watches, path)
	} else {
		s.watches[path] = w
	}
}

// fired removes the one-shot watches a notification consumes, as the server does.
func (s *Session) fired(ev jute.EventType, path string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	w := s.watches[path]
	if w == 0 {
		return
	}
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
	s.setWatchLocked(path, w)
}

// Watches lists the watched paths by kind, as SetWatches2 would carry them.
func (s *Session) Watches() jute.SetWatches2 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := jute.SetWatches2{RelativeZxid: s.lastZxid}
	lists := out.Lists()
	for p, w := range s.watches {
		for i, l := range lists {
			if w.has(listKind(i)) {
				*l = append(*l, p)
			}
		}
	}
	return out
}

// keepPool lends the buffers that hold in-flight repeatable requests: a session holds
// one only while such requests are in flight, so an idle session holds none.
var keepPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// keepFrame appends a request's bytes to the kept frames and returns their running
// offset. The caller holds mu.
func (s *Session) keepFrame(frame []byte) int64 {
	if s.keep == nil {
		s.keep = keepPool.Get().(*[]byte)
	}
	at := s.keepOff + int64(len(*s.keep))
	*s.keep = append(*s.keep, frame...)
	return at
}

// trimKept lets go of the kept bytes no FIFO entry refers to any more: all of them once
// no kept request waits (the buffer goes back to the pool), or, once the buffer is past
// keepShiftFrom and its dead front is at least half of it, that front. The caller holds
// mu.
func (s *Session) trimKept() {
	if s.keep == nil {
		return
	}
	buf := *s.keep
	if s.keptWaiting == 0 {
		s.keepOff += int64(len(buf))
		if cap(buf) <= 64<<10 {
			*s.keep = buf[:0]
			keepPool.Put(s.keep)
		}
		s.keep = nil
		return
	}
	if len(buf) < keepShiftFrom {
		return
	}
	for i := range s.fifo {
		if e := &s.fifo[i]; e.keptLen > 0 && e.waiting() {
			if cut := int(e.kept - s.keepOff); cut > 0 && cut >= len(buf)/2 {
				*s.keep = buf[:copy(buf, buf[cut:])]
				s.keepOff += int64(cut)
			}
			return
		}
	}
}

// keepShiftFrom: below this, kept bytes are not moved to let go of a dead front.
const keepShiftFrom = 4 << 10

// kept returns f's bytes as the client sent them. The caller holds mu.
func (s *Session) keptFrame(f *inflight) []byte {
	at := int(f.kept - s.keepOff)
	return (*s.keep)[at : at+int(f.keptLen)]
}

// latencyStats is min/avg/max of reply latencies, as ZooKeeper's srvr and cons show.
type latencyStats struct {
	Min, Max, Sum, Last time.Duration
	Count               uint64
}

func (l *latencyStats) add(d time.Duration) {
	if l.Count == 0 || d < l.Min {
		l.Min = d
	}
	l.Max = max(l.Max, d)
	l.Sum += d
	l.Last = d
	l.Count++
}

func (l *latencyStats) merge(o latencyStats) {
	if o.Count == 0 {
		return
	}
	if l.Count == 0 || o.Min < l.Min {
		l.Min = o.Min
	}
	l.Max = max(l.Max, o.Max)
	l.Sum += o.Sum
	l.Count += o.Count
}

// Avg is the mean latency.
func (l latencyStats) Avg() time.Duration {
	if l.Count == 0 {
		return 0
	}
	return l.Sum / time.Duration(l.Count)
}

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
	BytesIn  uint64
	BytesOut uint64
	Started  time.Time
	Latency  latencyStats
	LastOp   jute.OpCode
	LastResp time.Time
	Passwd   bool   // the member gave a session password (always, for an established session)
	Moves    int    // times zkgate moved the session to another member
	Limited  uint64 // requests over the client's limits, answered with the reject code
}

// Info returns a snapshot.
func (s *Session) Info() SessionInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	return SessionInfo{s.Client, s.member, s.id, s.timeout, s.lastZxid, s.inFlightLocked(), len(s.watches),
		s.requests, s.replies, s.bytesIn.Load(), s.bytesOut.Load(), s.started, s.lat, s.lastOp, s.lastResp,
		len(s.passwd) > 0, s.moves, s.limited.Load()}
}
