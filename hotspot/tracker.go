package hotspot

import (
	"sync"
	"time"
	"unsafe"
)

// Dim is what keys are: client IP addresses, session ids, or path prefixes.
type Dim int

// The dimensions.
const (
	Clients Dim = iota
	Sessions
	Paths
	dims
)

func (d Dim) String() string { return [...]string{"clients", "sessions", "paths"}[d] }

// by is the figure a sketch ranks by.
type by int

const (
	byRequests by = iota
	byErrors
	byBytes
	bys
)

// Config sizes a Tracker.
type Config struct {
	// Capacity is the keys each sketch keeps (one sketch per dimension and figure); the
	// memory is about Capacity × 9 × 100 bytes plus the keys.
	Capacity int
	// Window is how long each report covers; rates are over the last complete window.
	Window time.Duration
	// Top is how many keys a report lists per dimension and figure.
	Top int
}

// Tracker counts requests, errors and bytes per key in three dimensions and reports the
// heaviest keys of the last complete window as rates. Safe for concurrent use.
type Tracker struct {
	cfg Config

	mu     sync.Mutex
	cur    [dims][bys]*Sketch
	start  time.Time
	report Report
	since  map[sinceKey]time.Time // when each listed key entered its list (kept windows in a row)
}

type sinceKey struct {
	d   Dim
	b   by
	key string
}

// NewTracker returns a tracker whose first window starts at now.
func NewTracker(cfg Config, now time.Time) *Tracker {
	cfg.Capacity = max(cfg.Capacity, cfg.Top, 1)
	if cfg.Window <= 0 {
		cfg.Window = 10 * time.Second
	}
	t := &Tracker{cfg: cfg, start: now, since: map[sinceKey]time.Time{}}
	for d := range dims {
		for b := range bys {
			t.cur[d][b] = NewSketch(cfg.Capacity)
		}
	}
	return t
}

// Config returns the tracker's settings.
func (t *Tracker) Config() Config { return t.cfg }

// Add counts f for key in dimension d. It returns the tracker's copy of the key while
// the key is kept ("" when f counts nothing), which a caller may keep without allocating.
func (t *Tracker) Add(d Dim, key []byte, f Figures) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.add(d, key, f)
}

// add counts f for key in each of d's sketches: ranked where f has weight, and in the
// figures of a sketch that already holds the key. A key new to a sketch starts from the
// figures a sibling sketch has for it this window, so its lists agree (a key that enters
// the errors list brings its requests along).
func (t *Tracker) add(d Dim, key []byte, f Figures) string {
	weights := [bys]uint64{f.Requests, f.Errors, f.Bytes}
	var start [bys]Figures // what a sketch new to the key starts from, as of before f
	for b, w := range weights {
		if w == 0 || t.cur[d][b].has(key) {
			continue
		}
		for o, sib := range t.cur[d] {
			if seed, ok := sib.figures(key); ok && o != b {
				start[b] = seed
				break
			}
		}
	}
	var kept string
	for b, w := range weights {
		if w == 0 {
			t.cur[d][b].touch(key, f)
			continue
		}
		g := start[b]
		g.add(f)
		kept = t.cur[d][b].Add(key, w, g)
	}
	return kept
}

// AddString is Add for a key already a string.
func (t *Tracker) AddString(d Dim, key string, f Figures) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.add(d, unsafe.Slice(unsafe.StringData(key), len(key)), f) // read only
}

// Keyed is one key's figures, for AddBatch.
type Keyed struct {
	Key string
	Figures
}

// AddBatch counts each key's figures in dimension d under one lock: what a caller
// gathered for its keys since its last batch.
func (t *Tracker) AddBatch(d Dim, batch []Keyed) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, k := range batch {
		t.add(d, unsafe.Slice(unsafe.StringData(k.Key), len(k.Key)), k.Figures) // read only
	}
}

// Report is the heaviest keys of one window.
type Report struct {
	From     time.Time `json:"from"`
	Seconds  float64   `json:"seconds"`
	Clients  Lists     `json:"clients"`
	Sessions Lists     `json:"sessions"`
	Paths    Lists     `json:"paths"`
}

// Lists ranks a dimension's keys by each figure.
type Lists struct {
	ByRequests []Entry `json:"by_requests"`
	ByErrors   []Entry `json:"by_errors"`
	ByBytes    []Entry `json:"by_bytes"`
}

// Entry is one key's rates over the window. Since is when it entered this list (it has
// been in it every window since). Approx says the sketch may overcount it (another key's
// count was handed down to it), by up to ApproxBy of the ranked figure per second.
type Entry struct {
	Key            string    `json:"key"`
	RequestsPerSec float64   `json:"requests_per_sec"`
	ErrorsPerSec   float64   `json:"errors_per_sec"`
	BytesPerSec    float64   `json:"bytes_per_sec"`
	Since          time.Time `json:"since"`
	ApproxBy       float64   `json:"approx_by,omitempty"`
}

// Rotate closes the window if it is over at now: its heaviest keys become the report,
// and the sketches start again. Call it every second or so.
func (t *Tracker) Rotate(now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if now.Sub(t.start) < t.cfg.Window {
		return
	}
	secs := now.Sub(t.start).Seconds()
	r := Report{From: t.start, Seconds: secs}
	since := make(map[sinceKey]time.Time, len(t.since))
	for d := range dims {
		var ls [bys][]Entry
		for b := range bys {
			for _, it := range t.cur[d][b].Top(t.cfg.Top) {
				k := sinceKey{d, b, it.Key}
				s, ok := t.since[k]
				if !ok {
					s = t.start
				}
				since[k] = s
				ls[b] = append(ls[b], Entry{Key: it.Key, RequestsPerSec: float64(it.Requests) / secs,
					ErrorsPerSec: float64(it.Errors) / secs, BytesPerSec: float64(it.Bytes) / secs,
					Since: s, ApproxBy: float64(it.Over) / secs})
			}
			t.cur[d][b].Reset()
		}
		l := Lists{ByRequests: ls[byRequests], ByErrors: ls[byErrors], ByBytes: ls[byBytes]}
		switch d {
		case Clients:
			r.Clients = l
		case Sessions:
			r.Sessions = l
		case Paths:
			r.Paths = l
		}
	}
	t.report, t.since, t.start = r, since, now
}

// Report returns the last complete window's report (empty before the first is over).
func (t *Tracker) Report() Report {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.report
}

// Prefix returns path cut to its first depth components ("/a/b/c", 2: "/a/b"); "/" stays
// "/". The result shares path's memory.
func Prefix(path []byte, depth int) []byte {
	if depth <= 0 || len(path) == 0 {
		return path
	}
	seen := 0
	for i := 1; i < len(path); i++ {
		if path[i] == '/' {
			seen++
			if seen == depth {
				return path[:i]
			}
		}
	}
	return path
}
