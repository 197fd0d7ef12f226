package proxy

import (
	"fmt"
	"strings"
	"time"

	"github.com/zkgate/zkgate/hotspot"
	"github.com/zkgate/zkgate/jute"
)

// Hotspots finds the heaviest clients, sessions and path prefixes (Config.Hotspots).
// Paths are counted as requests go by: a request's path prefix when it is sent, its
// reply's bytes and error when it comes back. Clients and sessions cost nothing per
// request: once a second zkgate adds up what each session's counters moved.
type Hotspots struct {
	Enabled   bool
	PathDepth int           // path components kept: /a/b/c at depth 2 counts as /a/b
	Capacity  int           // keys per sketch (one per dimension and figure)
	Window    time.Duration // rates are over the last complete window
}

// Hot spot defaults.
const (
	DefaultHotPathDepth = 2
	DefaultHotCapacity  = 64
	DefaultHotWindow    = 10 * time.Second
	hotTop              = 10 // keys listed per dimension and figure
	hotSample           = time.Second
)

// DefaultHotspots is on: the cost is small (BENCHMARKS.md), and the figures are wanted
// in the middle of an incident, too late to turn them on.
func DefaultHotspots() Hotspots {
	return Hotspots{Enabled: true, PathDepth: DefaultHotPathDepth, Capacity: DefaultHotCapacity, Window: DefaultHotWindow}
}

func newHotTracker(c Hotspots) *hotspot.Tracker {
	if !c.Enabled {
		return nil
	}
	return hotspot.NewTracker(hotspot.Config{Capacity: c.Capacity, Window: c.Window, Top: hotTop}, time.Now())
}

// Hotspots returns the last complete window's heaviest keys; ok is false when hot spots
// are off.
func (s *Server) Hotspots() (r hotspot.Report, ok bool) {
	t := s.hotTracker()
	if t == nil {
		return r, false
	}
	return t.Report(), true
}

// hotRequest counts a request's path prefix and returns a copy of it that lasts, for
// its reply: the batch's (a relay loop's) or the tracker's.
func (r *relay) hotRequest(o *out, h jute.RequestHeader, frame []byte) string {
	t := r.srv.hotTracker()
	if t == nil {
		return ""
	}
	path, ok := jute.RequestPath(h.Type, frame[4+jute.RequestHeaderLen:])
	if !ok {
		return ""
	}
	prefix := hotspot.Prefix(path, r.srv.conf().Hotspots.PathDepth)
	f := hotspot.Figures{Requests: 1, Bytes: uint64(len(frame))}
	if o.hot != nil {
		return o.hot.add(prefix, f)
	}
	return t.Add(hotspot.Paths, prefix, f)
}

// hotReply counts a reply's bytes, and its error, against its request's path prefix.
func (r *relay) hotReply(o *out, f *inflight, code jute.ErrCode, n int) {
	var errs uint64
	if code != jute.ErrOK {
		errs = 1
	}
	t := r.srv.hotTracker()
	if t == nil {
		return
	}
	g := hotspot.Figures{Errors: errs, Bytes: uint64(n)}
	if o.hot != nil {
		o.hot.addString(f.hot, g)
		return
	}
	t.AddString(hotspot.Paths, f.hot, g)
}

// hotBatch gathers a relay loop's path figures between two of its sweeps: a request and
// its reply then cost a lookup in a map the loop owns, where the tracker takes a lock
// and updates three sketches (six lookups) for each. The tracker gets the sums at the
// sweep, 100 ms late at most, which its 10 s windows do not notice.
type hotBatch struct {
	srv  *Server
	m    map[string]*hotCount
	sums []hotspot.Keyed // flush's, reused
}

type hotCount struct {
	key string
	f   hotspot.Figures
}

// hotBatchKeys bounds the keys a batch holds; a batch that has this many goes to the
// tracker at once.
const hotBatchKeys = 4096

func newHotBatch(s *Server) *hotBatch { return &hotBatch{srv: s, m: make(map[string]*hotCount)} }

// add counts f for key and returns the batch's copy of key.
func (b *hotBatch) add(key []byte, f hotspot.Figures) string {
	c := b.m[string(key)] // no copy for the lookup
	if c == nil {
		c = b.insert(string(key))
	}
	c.f.Requests += f.Requests
	c.f.Errors += f.Errors
	c.f.Bytes += f.Bytes
	return c.key
}

// addString is add for a key the batch (or the tracker) handed out.
func (b *hotBatch) addString(key string, f hotspot.Figures) {
	c := b.m[key]
	if c == nil {
		c = b.insert(key)
	}
	c.f.Requests += f.Requests
	c.f.Errors += f.Errors
	c.f.Bytes += f.Bytes
}

func (b *hotBatch) insert(key string) *hotCount {
	if len(b.m) >= hotBatchKeys {
		b.flush() // too many keys for one sweep: the tracker takes them now
	}
	c := &hotCount{key: key}
	b.m[key] = c
	return c
}

// flush hands the sums to the tracker (none when hot spots were turned off meanwhile:
// the sums are dropped). Keys that counted nothing since the last flush leave the batch;
// the others stay, zeroed, so a steady key costs no allocation.
func (b *hotBatch) flush() {
	sums := b.sums[:0]
	for k, c := range b.m {
		if c.f == (hotspot.Figures{}) {
			delete(b.m, k)
			continue
		}
		sums = append(sums, hotspot.Keyed{Key: c.key, Figures: c.f})
		c.f = hotspot.Figures{}
	}
	if t := b.srv.hotTracker(); t != nil && len(sums) > 0 {
		t.AddBatch(hotspot.Paths, sums)
	}
	clear(sums)
	b.sums = sums[:0]
}

// sampleHot adds what each session did since the last sample to its client's and its own
// figures, and closes the window when it is over.
func (s *Server) sampleHot(now time.Time) {
	t := s.hotTracker()
	if t == nil {
		return
	}
	for _, cn := range s.connList(true) {
		ss := cn.sess
		ss.mu.Lock()
		f := hotspot.Figures{Requests: ss.requests, Errors: ss.errors, Bytes: ss.bytesIn.Load() + ss.bytesOut.Load()}
		id := ss.id
		ss.mu.Unlock()
		d := hotspot.Figures{Requests: f.Requests - ss.hotPrev.Requests, Errors: f.Errors - ss.hotPrev.Errors,
			Bytes: f.Bytes - ss.hotPrev.Bytes}
		ss.hotPrev = f
		if d == (hotspot.Figures{}) {
			continue
		}
		t.AddString(hotspot.Clients, cn.ip, d)
		t.AddString(hotspot.Sessions, fmt.Sprintf("0x%x %s", id, ss.Client), d)
	}
	t.Rotate(now)
}

// hotMntr is how many keys of each dimension mntr lists.
const hotMntr = 5

// writeHotMntr adds the heaviest keys by request rate to mntr, one line each, in the
// form zkgate_hot_paths_1	/app/locks 812.3 req/s 0.0 err/s 51234 B/s since 12:03:04:
// key first, so a script can split on the first space.
func (s *Server) writeHotMntr(kv func(string, any)) {
	rep, ok := s.Hotspots()
	if !ok {
		return
	}
	kv("zkgate_hot_window_seconds", fmt.Sprintf("%.0f", rep.Seconds))
	for _, d := range []struct {
		name string
		l    hotspot.Lists
	}{{"clients", rep.Clients}, {"sessions", rep.Sessions}, {"paths", rep.Paths}} {
		for i, e := range d.l.ByRequests[:min(hotMntr, len(d.l.ByRequests))] {
			key := strings.ReplaceAll(e.Key, " ", "@") // a session's key is "id client"
			kv(fmt.Sprintf("zkgate_hot_%s_%d", d.name, i+1), fmt.Sprintf("%s %.1f req/s %.1f err/s %.0f B/s since %s",
				key, e.RequestsPerSec, e.ErrorsPerSec, e.BytesPerSec, e.Since.UTC().Format(time.TimeOnly)))
		}
	}
}
