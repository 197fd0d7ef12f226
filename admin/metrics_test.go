package admin

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/zkgate/zkgate/jute"
)

// The observer's series are resolved once per opcode; the counts land where they should.
func TestObserverCounts(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg, "test")
	o := m.Observer("e1", nil)
	for range 3 {
		o.Request(jute.OpGetData)
	}
	o.Reply("m1", jute.OpGetData, jute.ErrNoNode, time.Millisecond)
	o.Request(jute.OpCode(999))
	o.Rejected(jute.OpSetData, jute.ErrOperationTimeout)
	if got := testutil.ToFloat64(m.requests.WithLabelValues("e1", "getData")); got != 3 {
		t.Errorf("requests getData = %v", got)
	}
	if got := testutil.ToFloat64(m.requests.WithLabelValues("e1", "other")); got != 1 {
		t.Errorf("requests other = %v", got)
	}
	if got := testutil.ToFloat64(m.errors.WithLabelValues("e1", "NONODE")); got != 1 {
		t.Errorf("errors NONODE = %v", got)
	}
	if got := testutil.ToFloat64(m.rejected.WithLabelValues("e1", "setData")); got != 1 {
		t.Errorf("rejected setData = %v", got)
	}
	out, err := testutil.CollectAndLint(m.latency)
	if err != nil || len(out) > 0 {
		t.Errorf("lint: %v %v", out, err)
	}
	if n := testutil.CollectAndCount(m.latency); n != 1 {
		t.Errorf("%d latency series", n)
	}
	if !strings.HasPrefix(opName(jute.OpCode(999)), "other") {
		t.Error(opName(jute.OpCode(999)))
	}
}

// BenchmarkObserverReply is the metrics cost of one request and its reply.
func BenchmarkObserverReply(b *testing.B) {
	m := NewMetrics(prometheus.NewRegistry(), "bench")
	o := m.Observer("e", nil)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			o.Request(jute.OpGetData)
			o.Reply("m", jute.OpGetData, 0, 300*time.Microsecond)
		}
	})
}
