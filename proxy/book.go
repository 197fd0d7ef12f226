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
	// maxWatchBytes bounds the watched paths a move replays (their bytes together): 16
	// SetWatches batches of 128 KiB. A session past it is not moved (its client is closed
	// and re-registers its watches itself, as after any reconnect). The server's own
	// bound is jute.maxbuffer per packet, which the Java client's batching stays under.
	maxWatchBytes = 16 * maxWatchBatch
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

// timeoutOf is the session's negotiated timeout.
func (s *Session) timeoutOf() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.timeout
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

// listKind is the kind of watch in SetWatches2.Lists()[i] (replayList's inverse).
func listKind(i int) watchKind { return watchData + watchKind(i) }

func (s *Session) addWatch(path string, k watchKind) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.watchOverflow {
		return
	}
	if s.watches == nil {
		s.watches = map[string]watchSet{}
	}
	s.setWatchLocked(path, s.watches[path]|1<<k)
	if s.watchBytes > maxWatchBytes {
		// Past the bound zkgate stops keeping the book (its memory stays bounded) and
		// the session is no longer moved: its client re-registers its own watches.
		s.watchOverflow, s.watches, s.watchBytes = true, nil, 0
	}
}

// errMissedEvents: a moved session's persistent watches may have missed changes.
var errMissedEvents = errors.New("persistent watches may have missed changes made while the session moved; closed the client so that it resyncs, as after any reconnect")

// caughtUp checks a moved session's re-registered watches against the new member's
// zxid at the replay (its reply to SetWatches). Standard watches get their catch-up
// events from the server (DataTree.setWatches, relativeZxid = lastZxid); persistent ones
// get none, so the move holds only if the new member has nothing past what the old one
// had delivered on the session (deliveredZxid). Otherwise a change may have happened
// unseen, and the client is closed: its library resyncs, as after any reconnect.
func (s *Session) caughtUp(memberZxid int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if memberZxid <= s.deliveredZxid {
		return nil
	}
	for _, w := range s.watches {
		if w&noCatchUp != 0 {
			return fmt.Errorf("%w (the new member is at zxid 0x%x, the old one had delivered up to 0x%x)", errMissedEvents, memberZxid, s.deliveredZxid)
		}
	}
	return nil
}

// unmovable reports why the session cannot move without losing what it was promised:
// more watched paths than a replay may carry. "" when it can move. (Persistent watches
// are checked once the new member answers the replay: caughtUp.)
func (s *Session) unmovable() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.watchOverflow {
		return fmt.Sprintf("its watched paths went over the %d bytes zkgate keeps for a move's replay", maxWatchBytes)
	}
	return ""
}

// applyWatch records what a request that could set or remove a watch did, once its
// reply came with err (the rules are watchrules.go's).
func (s *Session) applyWatch(op jute.OpCode, path string, mode int32, err jute.ErrCode) {
	if op == jute.OpRemoveWatches {
		if err == jute.ErrOK {
			s.dropWatches(path, removal[mode])
		}
		return
	}
	if k := registered(op, mode, err); k != watchNone {
		s.addWatch(path, k)
	}
}

// dropWatches forgets the kinds in drop on path.
func (s *Session) dropWatches(path string, drop watchSet) {
	s.mu.Lock()
	defer s.mu.Unlock()
	w, ok := s.watches[path]
	if !ok || drop == 0 {
		return
	}
	s.setWatchLocked(path, w&^drop)
}

func (s *Session) setWatchLocked(path string, w watchSet) {
	if w == 0 {
		if _, ok := s.watches[path]; ok {
			delete(s.watches, path)
			s.watchBytes -= len(path)
		}
		return
	}
	if _, ok := s.watches[path]; !ok {
		s.watchBytes += len(path)
	}
	s.watches[path] = w
}

// fired removes the one-shot watches a notification consumes, as the server does.
func (s *Session) fired(ev jute.EventType, path string) {
	drop := consumed[ev]
	if drop == 0 {
		return
	}
	s.dropWatches(path, drop)
}

// Watches lists the watched paths by kind, as SetWatches2 would carry them.
func (s *Session) Watches() jute.SetWatches2 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := jute.SetWatches2{RelativeZxid: s.lastZxid}
	lists := out.Lists()
	for p, w := range s.watches {
		for k := watchData; k <= watchRecursive; k++ {
			if w.has(k) {
				l := lists[replayList(k)]
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
