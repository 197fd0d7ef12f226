package proxy

import (
	"time"

	"github.com/zkgate/zkgate/jute"
)

// Observer receives the outcome of every request the relay sees. Calls come from the
// session's relay goroutines and must not block; implementations are shared by all
// sessions, so they must be safe for concurrent use.
type Observer interface {
	// Reply: a reply to op arrived from member after latency, with err (0 = OK).
	Reply(member string, op jute.OpCode, err jute.ErrCode, latency time.Duration)
	// Lost: the connection to member died with inFlight requests unanswered.
	Lost(member string, inFlight int)
	// ConnectFailed: member refused or dropped a handshake.
	ConnectFailed(member string, err error)
}

// Admitter decides whether a new session may start (the ensemble breaker). Admit returns
// a function that must be called with the handshake's outcome.
type Admitter interface {
	Admit() (done func(ok bool), allowed bool)
}

type nopObserver struct{}

func (nopObserver) Reply(string, jute.OpCode, jute.ErrCode, time.Duration) {}
func (nopObserver) Lost(string, int)                                       {}
func (nopObserver) ConnectFailed(string, error)                            {}

type allowAll struct{}

func (allowAll) Admit() (func(bool), bool) { return func(bool) {}, true }
