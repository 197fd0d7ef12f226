package proxy

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zkgate/zkgate/hotspot"
	"github.com/zkgate/zkgate/jute"
)

// inflight is one request between the client and its answer. The FIFO keeps them in the
// order the client sent them, which is the order the client must get answers in.
//
// A request is sent to the member, or rejected (zkgate answers it with the breaker's
// reject code). A sent request is normally answered by the member's reply; while the
// breaker is open zkgate may answer it early, and then swallows the member's late reply.
type inflight struct {
	xid      int32
	op       jute.OpCode
	start    time.Time
	path     string       // only for watch registrations and removals
	hot      string       // its path prefix, as the hot spot tracker keeps it ("" when not counted)
	mode     int32        // addWatch: its mode; removeWatches: its watcher type; -1 for the others
	watched  bool         // it may register or remove a watch, by its reply (watchrules.go)
	config   bool         // getData of /zookeeper/config: its reply loses the members' client addresses (zkconfig.go)
	frame    []byte       // the request as sent, until push keeps it (repeatable requests only)
	kept     int64        // where push kept frame, in Session.keep's running offsets
	keptLen  int32        // 0: nothing kept (the request is not repeated on a move)
	permit   bool         // holds an ensemble breaker permit (in copies handed out: release it now)
	rejected bool         // not sent: zkgate answers it
	code     jute.ErrCode // a rejected request's answer when not the breaker's reject code
	answered bool         // the client has its answer
	replied  bool         // the member's reply came (sent requests)
	released bool         // the permit was released
	reported bool         // reported as stalled
	held     bool         // zkgate held its reply back (the client was not reading): its latency is not the member's
	// service is the member's part of its latency (pop sets it): from when it became its
	// session's oldest request waiting at the member, the later of its start and the
	// session's previous reply, to its reply.
	service time.Duration
}

// finished entries leave the FIFO: the client has its answer and no member reply is due.
func (f *inflight) finished() bool { return f.answered && (f.rejected || f.replied) }

// waiting: sent to the member and not replied to.
func (f *inflight) waiting() bool { return !f.rejected && !f.replied }

// handOut marks the permit released and returns a copy whose permit field says whether
// the caller must release it now.
func (f *inflight) handOut() inflight {
	out := *f
	out.permit = f.permit && !f.released
	if f.permit {
		f.released = true
	}
	return out
}

// errXidMismatch is a reply that does not answer the oldest request in flight.
var errXidMismatch = errors.New("reply xid does not match the request in flight")

// Session is what zkgate knows of one client session: the requests in flight, what a
// move must replay (auth packets, watches, lastZxid), and counters for status pages. Its
// fields are guarded by mu: the relay writes them, status pages and the stall sweep
// read them from other goroutines.
type Session struct {
	Client string // client address

	mu          sync.Mutex
	member      string // the member the session is on
	id          int64
	passwd      []byte
	timeout     time.Duration
	readOnly    bool // the client's ConnectRequest asked for read-only, and
	hasReadOnly bool // carried the optional byte at all
	roServed    bool // the member answered read-only: it has no quorum, and the session is its own
	lastZxid    int64
	// deliveredZxid is the highest zxid in the member's replies, pings included: the
	// member had sent every watch event up to it (what a persistent watch's move checks).
	deliveredZxid int64
	fifo          []inflight // requests in flight, oldest first
	backing       []inflight // fifo's whole array, so the space freed at its front is reused
	scanned       int        // fifo[:scanned] was already examined by stalls
	owed          int        // fifo[:owed] all have their answers; the client is owed fifo[owed]
	keep          *[]byte    // frames of repeatable requests in flight (pooled; nil when none)
	keepOff       int64      // running offset of (*keep)[0]
	keptWaiting   int        // FIFO entries with kept bytes that wait for a reply
	auth          [][]byte   // distinct auth packets (AuthPacket bodies), for a move's replay
	authBytes     int
	sasl          bool // the session used SASL: a move cannot replay it
	watches       map[string]watchSet
	watchBytes    int  // the watched paths' bytes together
	watchOverflow bool // they went over maxWatchBytes: the book is dropped, the session cannot move
	requests      uint64
	replies       uint64
	errors        uint64          // replies with an error code
	hotPrev       hotspot.Figures // the figures at the last hot spot sample; maintain's
	moves         int
	started       time.Time

	bytesIn, bytesOut atomic.Uint64 // frames as relayed, length prefix included
	limited           atomic.Uint64 // requests over the limits (Config.Limits)
	moving            bool          // its member is lost and its reads wait to be sent again; under mu

	// held: zkgate stopped reading the member because the client does not read its
	// replies; requests outstanding then (or before heldEnd) have no member latency.
	held    bool
	heldEnd time.Time

	lat latencyStats // member replies, for srvr, mntr and cons
	// lastReply is when the member last answered the session (any matched reply): the
	// member is making progress on the session's pipeline while it keeps answering.
	lastReply time.Time
	lastOp    jute.OpCode
	lastResp  time.Time
}

// push records a request the client sent. The FIFO reuses its array: popping advances
// its start, and a push that finds no room at the end moves the live entries back to the
// front instead of growing, so a session in steady state allocates nothing.
func (s *Session) push(f inflight) {
	s.mu.Lock()
	s.pushLocked(f)
	s.mu.Unlock()
}

// pushAll records a batch of requests under one lock.
func (s *Session) pushAll(fs []inflight) {
	s.mu.Lock()
	for i := range fs {
		s.pushLocked(fs[i])
	}
	s.mu.Unlock()
}

func (s *Session) pushLocked(f inflight) {
	if f.frame != nil {
		f.kept, f.keptLen = s.keepFrame(f.frame), int32(len(f.frame))
		f.frame = nil
		s.keptWaiting++
	}
	if n := len(s.fifo); n == cap(s.fifo) && n > 0 && cap(s.backing)-cap(s.fifo) >= n {
		old := s.fifo // disjoint from backing[:n]: the gap in front is at least n
		copy(s.backing[:n], old)
		clear(old)
		s.fifo = s.backing[:n]
	}
	s.fifo = append(s.fifo, f)
	if cap(s.fifo) > cap(s.backing) {
		s.backing = s.fifo[:0]
	}
	s.requests++
}

// compact drops finished entries from the head. The caller holds mu.
func (s *Session) compact() {
	n := 0
	for n < len(s.fifo) && s.fifo[n].finished() {
		n++
	}
	if n == 0 {
		return
	}
	clear(s.fifo[:n])
	s.fifo = s.fifo[n:]
	s.scanned = max(0, s.scanned-n)
	s.owed = max(0, s.owed-n)
	if len(s.fifo) == 0 {
		s.fifo = s.backing[:0]
	}
	s.trimKept()
}

// pop matches a member reply with the oldest sent request still waiting for one. Replies
// come in request order, except auth and SASL (see answeredOnArrival), matched by xid
// wherever they sit. forward
// says the client still needs the reply (false when zkgate answered it early).
func (s *Session) pop(h jute.ReplyHeader, now time.Time) (f inflight, forward bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if h.Zxid > 0 && h.Xid != jute.XidPing && h.Xid != jute.XidAuth {
		s.lastZxid = max(s.lastZxid, h.Zxid)
	}
	if h.Xid != jute.XidAuth {
		// A member answers in order after applying what came before: every change up to
		// this zxid has had its watch events sent on this connection already.
		s.deliveredZxid = max(s.deliveredZxid, h.Zxid)
	}
	first := slices.IndexFunc(s.fifo, func(e inflight) bool { return e.waiting() })
	idx := -1
	switch {
	case first >= 0 && s.fifo[first].xid == h.Xid:
		idx = first
	case first >= 0:
		// The server answers auth and SASL packets from its I/O thread as they arrive
		// (ZooKeeperServer.processPacket), ahead of requests still in its pipeline,
		// echoing their xid: -4 from most clients, an ordinary one from go-zookeeper.
		// Such a reply is matched with its own request; every other reply is FIFO.
		for i := first + 1; i < len(s.fifo); i++ {
			if e := &s.fifo[i]; e.waiting() && e.xid == h.Xid && answeredOnArrival(e.op) {
				idx = i
				break
			}
		}
	}
	if idx < 0 {
		want := int32(0)
		if first >= 0 {
			want = s.fifo[first].xid
		}
		return inflight{}, false, fmt.Errorf("%w: got xid %d, oldest in flight %d (%d in flight)", errXidMismatch, h.Xid, want, s.inFlightLocked())
	}
	e := &s.fifo[idx]
	s.replied(e)
	e.held = s.waitedOnClient(e.start)
	e.service = now.Sub(s.serviceStart(e))
	s.lastReply = now
	forward = !e.answered
	e.answered = true
	for s.owed < len(s.fifo) && s.fifo[s.owed].answered {
		s.owed++
	}
	f = e.handOut()
	if forward {
		s.replies++
		if h.Err != jute.ErrOK {
			s.errors++
		}
	}
	if f.xid >= 0 {
		s.lat.add(now.Sub(f.start))
		s.lastOp, s.lastResp = f.op, now
	}
	s.compact()
	return f, forward, nil
}

// answeredOnArrival: the requests a server answers as they arrive, outside the order of
// the others (ZooKeeperServer.processPacket: auth and sasl).
func answeredOnArrival(op jute.OpCode) bool { return op == jute.OpAuth || op == jute.OpSASL }

// replied marks e as having had its member reply (or as needing none now), and its kept
// bytes as no longer needed. The caller holds mu.
func (s *Session) replied(e *inflight) {
	e.replied = true
	if e.keptLen > 0 {
		s.keptWaiting--
	}
}

// answerOwed marks the requests still owed an answer as answered, in order, and appends
// copies to buf for the caller to answer with the reject code (permit set where it must
// release one). With sentToo false it stops at the first request sent to the member: only
// the rejected requests now next in line are answered. With sentToo true (the breaker is
// open) every request owed is answered, and the member's late replies to the sent ones are
// swallowed when they come.
func (s *Session) answerOwed(buf []inflight, sentToo bool) []inflight {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ; s.owed < len(s.fifo); s.owed++ {
		e := &s.fifo[s.owed]
		if e.answered {
			continue
		}
		if !e.rejected && !sentToo {
			break // a sent request answers first
		}
		e.answered = true
		s.replies++
		s.errors++ // answered with the reject code
		if !e.rejected {
			e.service = time.Since(s.serviceStart(e))
		}
		buf = append(buf, e.handOut())
	}
	s.compact()
	return buf
}

// owes reports whether some request still waits for its answer.
func (s *Session) owes() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.owed < len(s.fifo)
}

// inFlight is the number of requests sent to the member and not yet replied to.
func (s *Session) inFlight() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inFlightLocked()
}

func (s *Session) inFlightLocked() int {
	n := 0
	for i := range s.fifo {
		if s.fifo[i].waiting() {
			n++
		}
	}
	return n
}

// requestsInFlight counts the client's requests (not pings, auth or zkgate's own) sent to
// the member and not replied to: what Limits.MaxInFlight caps.
func (s *Session) requestsInFlight() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for i := range s.fifo {
		if e := &s.fifo[i]; e.waiting() && e.xid >= 0 {
			n++
		}
	}
	return n
}

// drain empties the FIFO when the session ends. It returns the sent requests that got
// no member reply, with permit set where one must still be released.
func (s *Session) drain() []inflight {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []inflight
	now := time.Now()
	for i := range s.fifo {
		if e := &s.fifo[i]; e.waiting() {
			e.service = now.Sub(s.serviceStart(e))
			out = append(out, e.handOut())
		}
	}
	s.fifo, s.scanned, s.owed, s.keptWaiting = nil, 0, 0, 0
	s.trimKept()
	return out
}
