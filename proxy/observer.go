package proxy

import (
	"time"

	"github.com/zkgate/zkgate/jute"
)

// Observer receives the outcome of every request the relay sees (metrics). Calls come
// from the relay drivers (loops and goroutines) and must not block; implementations are shared by
// all sessions, so they must be safe for concurrent use. The ensemble breaker and the
// member ejector get the same events from the Server directly.
type Observer interface {
	// Request: the client sent op (counted before the breaker decides on it).
	Request(op jute.OpCode)
	// Event: a watch notification went to a client.
	Event(t jute.EventType)
	// ProtocolError: a frame that could not be decoded closed one connection.
	ProtocolError()
	// Reply: a reply to op arrived from member after latency, with err (0 = OK).
	Reply(member string, op jute.OpCode, err jute.ErrCode, latency time.Duration)
	// Stalled: a request to member has waited longer than the slow-call threshold.
	Stalled(member string, op jute.OpCode, age time.Duration)
	// Rejected: zkgate answered op itself with the reject code (breaker not closed).
	Rejected(op jute.OpCode, code jute.ErrCode)
	// Lost: the connection to member died with inFlight requests unanswered.
	Lost(member string, inFlight int)
	// ConnectFailed: member refused or dropped a handshake.
	ConnectFailed(member string, err error)
	// Moved: a session on member from was moved (outcome MovedOK, to the member to) or
	// could not be and its client was closed (outcome one of the Move* constants), d
	// after the member was lost.
	Moved(from, to, outcome string, d time.Duration)
	// Refused: a new client was turned away before reaching a member; reason is short
	// and fixed ("breaker", "no-member", "limit", "handshake").
	Refused(reason string)
	// Limited: a request over one of Config.Limits was answered with the reject code;
	// scope is LimitClient, LimitSession or LimitInFlight.
	Limited(scope string)
}

type nopObserver struct{}

func (nopObserver) Request(jute.OpCode)  {}
func (nopObserver) Event(jute.EventType) {}
func (nopObserver) ProtocolError()       {}

func (nopObserver) Reply(string, jute.OpCode, jute.ErrCode, time.Duration) {}
func (nopObserver) Stalled(string, jute.OpCode, time.Duration)             {}
func (nopObserver) Rejected(jute.OpCode, jute.ErrCode)                     {}
func (nopObserver) Lost(string, int)                                       {}
func (nopObserver) ConnectFailed(string, error)                            {}
func (nopObserver) Refused(string)                                         {}
func (nopObserver) Limited(string)                                         {}
func (nopObserver) Moved(string, string, string, time.Duration)            {}
