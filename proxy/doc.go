// Package proxy is zkgate's data path: listeners, the handshake, routing, the relay loop,
// session bookkeeping and zkgate's own four-letter-word answers.
//
// A Server accepts ZooKeeper clients on one listener for one ensemble. For each
// connection it reads the ConnectRequest under a handshake deadline, picks a member with
// Route (a pure function of the health View), forwards the client's bytes unchanged and
// relays frames both ways, decoding only headers. Every request's latency and outcome go
// to an Observer, the one seam through which breakers and metrics see the traffic.
//
// It does not decide health or breaker state: it reads a health.View and asks an Admitter.
//
//	srv := proxy.NewServer(proxy.Config{Members: addrs}, monitor, log)
//	go srv.Serve(ln)
//	defer srv.Close()
package proxy
