// Package hotspot keeps the heaviest keys of a stream (client addresses, sessions, path
// prefixes) in fixed memory: a Space-Saving sketch per figure (Metwally, Agrawal and El
// Abbadi, "Efficient computation of frequent and top-k elements in data streams", 2005),
// and a Tracker that turns them into rates over rolling windows.
package hotspot

import (
	"cmp"
	"slices"
)

// Sketch is a Space-Saving sketch: it counts at most Capacity keys. A new key arriving
// when it is full takes the place of the key with the smallest count, and inherits that
// count as its possible overestimate (Over). Any key whose true count exceeds the total
// divided by Capacity is guaranteed to be in it. Not safe for concurrent use.
type Sketch struct {
	capacity int
	idx      map[string]int32 // key to its position in heap
	heap     []entry          // a min-heap by weight
}

type entry struct {
	key    string
	weight uint64 // what the sketch ranks by
	over   uint64 // weight inherited from the evicted key: the possible overestimate
	f      Figures
}

// Figures are what is counted for a key: requests, of them errors, and bytes (both
// directions, length prefixes included).
type Figures struct {
	Requests, Errors, Bytes uint64
}

func (f *Figures) add(g Figures) {
	f.Requests += g.Requests
	f.Errors += g.Errors
	f.Bytes += g.Bytes
}

// NewSketch returns a sketch of capacity keys (at least 1).
func NewSketch(capacity int) *Sketch {
	capacity = max(capacity, 1)
	return &Sketch{capacity: capacity, idx: make(map[string]int32, capacity), heap: make([]entry, 0, capacity)}
}

// Add counts f for key, ranked by weight. It returns the sketch's copy of the key (the
// same string while the key stays in), so callers can keep it without allocating.
func (s *Sketch) Add(key []byte, weight uint64, f Figures) string {
	if i, ok := s.idx[string(key)]; ok { // no allocation for the lookup
		e := &s.heap[i]
		e.weight += weight
		e.f.add(f)
		s.down(int(i))
		return e.key
	}
	return s.insert(string(key), weight, f)
}

// AddString is Add for a key already a string.
func (s *Sketch) AddString(key string, weight uint64, f Figures) string {
	if i, ok := s.idx[key]; ok {
		e := &s.heap[i]
		e.weight += weight
		e.f.add(f)
		s.down(int(i))
		return e.key
	}
	return s.insert(key, weight, f)
}

func (s *Sketch) insert(key string, weight uint64, f Figures) string {
	if len(s.heap) < s.capacity {
		s.heap = append(s.heap, entry{key: key, weight: weight, f: f})
		i := len(s.heap) - 1
		s.idx[key] = int32(i)
		s.up(i)
		return key
	}
	// Evict the smallest: the newcomer takes its weight as the possible overestimate. Its
	// other figures start from what it brings: the evicted key's are not its.
	e := &s.heap[0]
	delete(s.idx, e.key)
	*e = entry{key: key, weight: e.weight + weight, over: e.weight, f: f}
	s.idx[key] = 0
	s.down(0)
	return key
}

// touch adds f to key's figures if the sketch holds it, without changing its rank: a
// reply's error and bytes reach the key in the sketch ranked by requests, too.
func (s *Sketch) touch(key []byte, f Figures) {
	if i, ok := s.idx[string(key)]; ok {
		s.heap[i].f.add(f)
	}
}

func (s *Sketch) has(key []byte) bool {
	_, ok := s.idx[string(key)]
	return ok
}

// figures returns key's figures, if the sketch holds it.
func (s *Sketch) figures(key []byte) (Figures, bool) {
	if i, ok := s.idx[string(key)]; ok {
		return s.heap[i].f, true
	}
	return Figures{}, false
}

// Len is the number of keys kept.
func (s *Sketch) Len() int { return len(s.heap) }

// Reset forgets every key, keeping the memory.
func (s *Sketch) Reset() {
	clear(s.idx)
	s.heap = s.heap[:0]
}

// Item is one key of a Top list.
type Item struct {
	Key    string
	Weight uint64 // the ranked figure, as counted (true count ≤ Weight ≤ true + Over)
	Over   uint64
	Figures
}

// Top returns up to n keys, heaviest first (ties by key).
func (s *Sketch) Top(n int) []Item {
	items := make([]Item, len(s.heap))
	for i, e := range s.heap {
		items[i] = Item{Key: e.key, Weight: e.weight, Over: e.over, Figures: e.f}
	}
	slices.SortFunc(items, func(a, b Item) int {
		if c := cmp.Compare(b.Weight, a.Weight); c != 0 {
			return c
		}
		return cmp.Compare(a.Key, b.Key)
	})
	return items[:min(n, len(items))]
}

func (s *Sketch) less(i, j int) bool { return s.heap[i].weight < s.heap[j].weight }

func (s *Sketch) swap(i, j int) {
	s.heap[i], s.heap[j] = s.heap[j], s.heap[i]
	s.idx[s.heap[i].key] = int32(i)
	s.idx[s.heap[j].key] = int32(j)
}

func (s *Sketch) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !s.less(i, p) {
			return
		}
		s.swap(i, p)
		i = p
	}
}

func (s *Sketch) down(i int) {
	n := len(s.heap)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		m := l
		if r := l + 1; r < n && s.less(r, l) {
			m = r
		}
		if !s.less(m, i) {
			return
		}
		s.swap(i, m)
		i = m
	}
}
