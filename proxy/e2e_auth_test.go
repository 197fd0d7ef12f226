package proxy_test

import (
	"bytes"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/zkgate/zkgate/internal/zktest"
	"github.com/zkgate/zkgate/jute"
	"github.com/zkgate/zkgate/proxy"
)

// rss is this process's resident set, after a collection that returns what it can.
// Under the race detector, whose shadow memory stays resident, it is the live heap.
func rss(t *testing.T) int64 {
	t.Helper()
	runtime.GC()
	debug.FreeOSMemory()
	if raceEnabled {
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return int64(m.HeapInuse)
	}
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		t.Skipf("no /proc/self/statm: %v", err)
	}
	pages, _ := strconv.ParseInt(strings.Fields(string(b))[1], 10, 64)
	return pages * int64(os.Getpagesize())
}

// One client sending 300 auth packets of 1 MB: zkgate keeps one copy for a move's
// replay, so its memory grows by about that, not by 300 MB.
func TestAuthPacketsBoundedMemory(t *testing.T) {
	ens := zktest.Require(t, shared)
	if err := ens.WaitReady(zktest.Ctx(t, 30*time.Second)); err != nil {
		t.Fatal(err)
	}
	g := startGate(t, ens, proxy.Config{})
	zktest.WaitFor(t, 10*time.Second, "zkgate can place a session", g.srv.CanServe)
	r := dialRaw(t, g.addr)
	frame := jute.AppendFrame(nil, &jute.RequestHeader{Xid: jute.XidAuth, Type: jute.OpAuth},
		&jute.AuthPacket{Scheme: "digest", Auth: append([]byte("user:"), bytes.Repeat([]byte("p"), 1_000_000)...)})
	// Auth packets do not keep a session alive on the server: a ping goes with each.
	ping := jute.AppendFrame(nil, &jute.RequestHeader{Xid: jute.XidPing, Type: jute.OpPing})
	frame = append(frame, ping...)
	before := rss(t)
	for range 300 {
		if _, err := r.conn.Write(frame); err != nil {
			t.Fatal(err)
		}
		hs, err := r.replies(2, 30*time.Second)
		if err != nil || hs[0].Xid != jute.XidAuth || hs[0].Err != jute.ErrOK {
			t.Fatalf("auth reply: %+v %v", hs, err)
		}
	}
	grew := rss(t) - before
	what := "RSS"
	if raceEnabled {
		what = "the live heap"
	}
	t.Logf("%s grew by %.1f MB over 300 auth packets of 1 MB", what, float64(grew)/(1<<20))
	if grew > 10<<20 {
		t.Errorf("%s grew by %d bytes, want at most 10 MB", what, grew)
	}
	r.send(getData("/"))
	if hs, err := r.replies(1, 10*time.Second); err != nil || hs[0].Err != jute.ErrOK {
		t.Fatalf("the session after the auth packets: %+v %v", hs, err)
	}
}
