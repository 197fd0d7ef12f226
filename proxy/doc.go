// Package proxy is zkgate's data path: listeners, the handshake, routing, the relay loop,
// session bookkeeping and zkgate's own four-letter-word answers.
//
// A Server accepts ZooKeeper clients on one listener for one ensemble. For each
// connection it reads the ConnectRequest under a handshake deadline, picks a member with
// Route (a pure function of the health View), forwards the client's bytes unchanged and
// relays frames both ways, decoding only headers. Every request's latency and outcome go
// to the ensemble breaker, the member ejector and an Observer (metrics).
//
// It does not decide health or breaker state: it reads a health.View, asks the breaker
// (package breaker) before each new session and each request, and reports outcomes back.
// While the breaker is open, zkgate answers requests itself with the reject code, in
// FIFO order behind the requests already in flight.
//
//	srv := proxy.NewServer(proxy.Config{Members: addrs}, monitor, log)
//	go srv.Serve(ln)
//	defer srv.Close()
package proxy
