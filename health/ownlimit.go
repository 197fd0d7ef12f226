package health

import (
	"errors"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"
)

// IsOwnLimit reports an error that is zkgate's own resource exhaustion, not the member's
// answer: out of file descriptors (EMFILE: the process; ENFILE: the system) or of socket
// buffers (ENOBUFS) when creating a socket. No packet left zkgate, so the member said
// nothing: a probe or a connect failing so counts neither as the member's failure nor as
// a sign it is down, or zkgate's own exhaustion would eject members and open the breaker
// on "no quorum" (as it did at 20,000 descriptors under 9,900 sessions).
func IsOwnLimit(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) || errors.Is(err, syscall.ENOBUFS)
}

// OwnLimitLog logs zkgate's own resource exhaustion at most once per period, with how
// many times it happened since the last line. The zero value logs every 10 seconds.
type OwnLimitLog struct {
	Period time.Duration
	mu     sync.Mutex // guards what follows
	last   time.Time
	missed int
}

// Note records one failure of what (a member connect, a health probe) to member because
// of zkgate's own limit, and logs it unless a line went out within the period.
func (l *OwnLimitLog) Note(log zerolog.Logger, what, member string, err error, now time.Time) {
	period := l.Period
	if period <= 0 {
		period = 10 * time.Second
	}
	l.mu.Lock()
	if !l.last.IsZero() && now.Sub(l.last) < period {
		l.missed++
		l.mu.Unlock()
		return
	}
	missed := l.missed
	l.last, l.missed = now, 0
	l.mu.Unlock()
	log.Error().Err(err).Str("what", what).Str("member", member).Int("more_since_last_line", missed).
		Msg("zkgate is out of file descriptors or socket buffers (its own limit, not the member's fault): raise its RLIMIT_NOFILE (LimitNOFILE=) or lower max_connections; the member is not counted as failing")
}
