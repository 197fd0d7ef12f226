// Package proxy is zkgate's data path: listeners, the handshake, routing, the relay,
// session bookkeeping, moving sessions between members, and zkgate's own
// four-letter-word answers.
//
// A Server accepts ZooKeeper clients on one listener for one ensemble. For each
// connection it reads the ConnectRequest under a handshake deadline (handshake.go), picks
// a member with Route (a pure function of the health View) and forwards the client's
// bytes unchanged. The placed session then goes to a driver, which owns its two sockets
// and feeds its relay:
//
//   - relay.go: the relay, a state machine per session that does no I/O. Client bytes,
//     member bytes, the clock, breaker decisions and member loss go in; bytes for each
//     side, outcomes (breaker, ejector, Observer) and actions (close, dial) come out.
//     It decodes only headers and keeps the in-flight FIFO (session.go) and what a move
//     replays (book.go).
//   - move.go, redial.go: a session whose member is lost moves to another member without
//     its client noticing, or, when that is not safe, its client is closed and
//     reconnects through zkgate.
//   - Drivers: the epoll loops on Linux (loop_linux.go, loopio_linux.go, adopt_linux.go),
//     and the goroutine driver everywhere (goroutines.go). A TLS 1.3 connection, or a
//     TLS 1.2 one with an AEAD suite, goes to a loop too: crypto/tls runs its handshake,
//     then the loop takes it over (tlshandoff.go) and seals and opens its records itself
//     (tlsrec.go, tls12.go); other TLS connections stay with crypto/tls on the goroutine
//     driver.
//
// It does not decide health or breaker state: it reads a health.View, asks the breaker
// (package breaker) before each new session and each request, and reports outcomes back.
// While the breaker is open, zkgate answers requests itself with the reject code, in
// FIFO order behind the requests already in flight (answer.go).
//
//	srv := proxy.NewServer(proxy.Config{Name: "main"}, monitor, log)
//	go srv.Serve(ln)
//	defer srv.Close()
package proxy
