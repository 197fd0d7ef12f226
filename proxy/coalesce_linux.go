package proxy

import "time"

// Coalescing: how long a relay loop lets frames gather before it waits again, from the
// arrival rate it observes (the coalesce* constants are in loop_linux.go).

// window is how long the loop lets frames gather after an epoll_wait returned before it
// waits again, so that more frames arrive per read, per write and per wakeup (zero: wait
// for events as they come). Every frame that arrives meanwhile waits for the window's
// end, so it is held only when it saves system calls: long enough to gather about
// coalesceBatch frames at the loop's observed arrival rate and no longer, and not at all
// when fewer than coalesceGain frames are expected in it (a request that arrives alone,
// light traffic, one sequential client) or when a lone request is in flight. It is at
// most Coalesce and at most CoalesceShare of the members' average reply latency, so
// that what it adds stays a small part of what requests wait at the ensemble.
func (l *loop) window() time.Duration {
	cfg := l.srv.conf()
	if cfg.Coalesce <= 0 || l.o.flight < coalesceFrom || l.rate <= 0 {
		return 0
	}
	w := min(cfg.Coalesce, time.Duration(float64(l.o.latency)*cfg.CoalesceShare),
		time.Duration(coalesceBatch/l.rate*float64(time.Second)))
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
