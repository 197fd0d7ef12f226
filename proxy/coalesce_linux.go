package proxy

import "time"

// Coalescing: how long a relay loop lets frames gather before it waits again, from the
// arrival rate it observes (the coalesce* constants are in loop_linux.go).

// window is how long the loop lets frames gather after an epoll_wait returned before it
// waits again, so that more frames arrive per read, per write and per wakeup (zero: wait
// for events as they come). Every frame that arrives meanwhile waits for the window's
// end, so the loop holds only where holding costs little and saves system calls:
//   - only while requests queue at the members: the sessions with requests in flight
//     have coalesceDepth or more each on average. A held request then waits behind
//     requests of its own session that the member answers first, and a closed-loop
//     client's next request waits for replies anyway. A lone request, light or paced
//     traffic, and sequential clients (one request at a time per session, however many
//     sessions) are never held;
//   - about coalesceBatch frames of one session at the observed arrival rate per busy
//     session, so that each read and write carries several frames, and no longer;
//   - at most Coalesce, and at most CoalesceShare of the members' average reply latency,
//     a share of what requests already wait at the ensemble;
//   - not at all when fewer than coalesceGain frames would arrive on the whole loop
//     meanwhile (the wait's own wakeup would cost more than it saves).
func (l *loop) window() time.Duration {
	cfg := l.srv.conf()
	if cfg.Coalesce <= 0 || l.o.busy == 0 || l.rate <= 0 ||
		l.o.flight < coalesceDepth*l.o.busy {
		return 0
	}
	perSession := l.rate / float64(l.o.busy)
	w := min(cfg.Coalesce, time.Duration(float64(l.o.latency)*cfg.CoalesceShare),
		time.Duration(coalesceBatch/perSession*float64(time.Second)))
	if w < coalesceFloor || l.rate*w.Seconds() < coalesceGain {
		return 0
	}
	return w
}

// arrivals counts the frames a relay call took (requests add to the loop's flight,
// replies take from it); observe turns the count into the arrival rate. The rate is of
// frames, not of events or reads, so holding (which merges reads) does not feed back
// into the window.
func (l *loop) arrivals(flightBefore int) {
	if d := l.o.flight - flightBefore; d >= 0 {
		l.frames += d
	} else {
		l.frames -= d
	}
}

func (l *loop) observe(now time.Time) {
	d := now.Sub(l.rateSince)
	if d < ratePeriod {
		return
	}
	if l.rateSince.IsZero() {
		l.rateSince, l.frames = now, 0
		return
	}
	l.rate += (float64(l.frames)/d.Seconds() - l.rate) / rateTerm
	l.rateSince, l.frames = now, 0
}
