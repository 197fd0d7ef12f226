package hotspot

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// The heavy hitters of a skewed stream are found in a sketch far smaller than the number
// of distinct keys, with their counts within the sketch's bound.
func TestSketchFindsHeavyHitters(t *testing.T) {
	s := NewSketch(32)
	rng := rand.New(rand.NewPCG(1, 2))
	truth := map[string]uint64{}
	total := 0
	add := func(k string) {
		s.Add([]byte(k), 1, Figures{Requests: 1})
		truth[k]++
		total++
	}
	for range 100_000 {
		switch r := rng.IntN(100); {
		case r < 20:
			add("/hot/a")
		case r < 30:
			add("/hot/b")
		case r < 35:
			add("/hot/c")
		default:
			add(fmt.Sprintf("/cold/%d", rng.IntN(50_000)))
		}
	}
	top := s.Top(3)
	for i, want := range []string{"/hot/a", "/hot/b", "/hot/c"} {
		if top[i].Key != want {
			t.Fatalf("top %d is %q, want %q (%+v)", i, top[i].Key, want, top)
		}
		if tr := truth[want]; top[i].Weight < tr || top[i].Weight > tr+uint64(total/32) {
			t.Errorf("%s counted %d, true %d: outside the bound N/capacity = %d", want, top[i].Weight, tr, total/32)
		}
	}
	if s.Len() != 32 {
		t.Fatalf("sketch holds %d keys, want its capacity 32", s.Len())
	}
}

func TestSketchKeepsFiguresAndKey(t *testing.T) {
	s := NewSketch(2)
	k1 := s.Add([]byte("/a"), 1, Figures{Requests: 1, Bytes: 100})
	k2 := s.Add([]byte("/a"), 1, Figures{Requests: 1, Errors: 1, Bytes: 50})
	if k1 != "/a" || k2 != "/a" {
		t.Fatalf("keys %q %q", k1, k2)
	}
	s.Add([]byte("/b"), 5, Figures{Requests: 5})
	s.Add([]byte("/c"), 1, Figures{Requests: 1}) // evicts /a (weight 2): /c inherits 2
	top := s.Top(10)
	if len(top) != 2 || top[0].Key != "/b" || top[1].Key != "/c" || top[1].Weight != 3 || top[1].Over != 2 || top[1].Requests != 1 {
		t.Fatalf("after eviction: %+v", top)
	}
}

func TestTrackerWindows(t *testing.T) {
	t0 := time.Unix(1000, 0)
	tr := NewTracker(Config{Capacity: 8, Window: 10 * time.Second, Top: 2}, t0)
	for range 100 {
		tr.Add(Paths, []byte("/app/locks"), Figures{Requests: 1, Bytes: 10})
	}
	tr.Add(Paths, []byte("/app/config"), Figures{Requests: 1, Errors: 1, Bytes: 5000})
	tr.AddString(Clients, "10.0.0.1", Figures{Requests: 101})
	tr.Rotate(t0.Add(5 * time.Second)) // not over yet
	if r := tr.Report(); len(r.Paths.ByRequests) != 0 {
		t.Fatalf("report before the first window ended: %+v", r)
	}
	tr.Rotate(t0.Add(10 * time.Second))
	r := tr.Report()
	if got := r.Paths.ByRequests; len(got) != 2 || got[0].Key != "/app/locks" || got[0].RequestsPerSec != 10 || !got[0].Since.Equal(t0) {
		t.Fatalf("paths by requests: %+v", got)
	}
	if got := r.Paths.ByErrors; len(got) != 1 || got[0].Key != "/app/config" || got[0].ErrorsPerSec != 0.1 {
		t.Fatalf("paths by errors: %+v", got)
	}
	if got := r.Paths.ByBytes; got[0].Key != "/app/config" || got[0].BytesPerSec != 500 {
		t.Fatalf("paths by bytes: %+v", got)
	}
	if got := r.Paths.ByRequests[1]; got.Key != "/app/config" || got.ErrorsPerSec != 0.1 {
		t.Fatalf("a key's errors show in the list by requests too: %+v", got)
	}
	if got := r.Clients.ByRequests; len(got) != 1 || got[0].RequestsPerSec != 10.1 {
		t.Fatalf("clients: %+v", got)
	}
	// A second window: /app/locks stays (its since stays t0); /app/config is gone.
	tr.Add(Paths, []byte("/app/locks"), Figures{Requests: 1})
	tr.Rotate(t0.Add(20 * time.Second))
	r = tr.Report()
	if got := r.Paths.ByRequests; len(got) != 1 || !got[0].Since.Equal(t0) || len(r.Paths.ByErrors) != 0 {
		t.Fatalf("second window: %+v", r.Paths)
	}
	tr.Rotate(t0.Add(30 * time.Second)) // an empty window: nothing listed
	tr.Add(Paths, []byte("/app/locks"), Figures{Requests: 1})
	tr.Rotate(t0.Add(40 * time.Second))
	if got := tr.Report().Paths.ByRequests; len(got) != 1 || !got[0].Since.Equal(t0.Add(30*time.Second)) {
		t.Fatalf("back after a gap, since the window it came back in: %+v", got)
	}
}

func TestPrefix(t *testing.T) {
	for _, c := range []struct {
		path  string
		depth int
		want  string
	}{
		{"/a/b/c", 2, "/a/b"}, {"/a/b/c", 1, "/a"}, {"/a/b", 2, "/a/b"}, {"/", 2, "/"},
		{"/a", 3, "/a"}, {"/a/b/c", 0, "/a/b/c"}, {"", 2, ""},
	} {
		if got := string(Prefix([]byte(c.path), c.depth)); got != c.want {
			t.Errorf("Prefix(%q, %d) = %q, want %q", c.path, c.depth, got, c.want)
		}
	}
}

func BenchmarkTrackerAdd(b *testing.B) {
	tr := NewTracker(Config{Capacity: 64, Window: 10 * time.Second, Top: 10}, time.Now())
	keys := make([][]byte, 1000)
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "/app/%d", i%50) // 50 prefixes in a sketch of 64
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		tr.Add(Paths, keys[i%len(keys)], Figures{Requests: 1, Bytes: 100})
	}
}

// A reply's error and bytes, counted apart from its request, show against the key in
// every list that holds it.
func TestTrackerReplyReachesEveryList(t *testing.T) {
	t0 := time.Unix(0, 0)
	tr := NewTracker(Config{Capacity: 4, Window: time.Second, Top: 4}, t0)
	k := tr.Add(Paths, []byte("/p"), Figures{Requests: 1, Bytes: 10})
	tr.AddString(Paths, k, Figures{Errors: 1, Bytes: 90})
	tr.Rotate(t0.Add(time.Second))
	r := tr.Report()
	for name, l := range map[string][]Entry{"requests": r.Paths.ByRequests, "errors": r.Paths.ByErrors, "bytes": r.Paths.ByBytes} {
		if len(l) != 1 || l[0].RequestsPerSec != 1 || l[0].BytesPerSec != 100 {
			t.Errorf("by %s: %+v", name, l)
		}
	}
	if got := r.Paths.ByRequests[0].ErrorsPerSec; got != 1 {
		t.Errorf("by requests: %v errors/s, want the reply's 1", got)
	}
}
