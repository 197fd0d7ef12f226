package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"time"

	"github.com/zkgate/zkgate/certs"
	"github.com/zkgate/zkgate/health"
)

// ServeTLS is Serve for a listener whose clients speak TLS (zookeeper.client.secure=true):
// the TLS handshake runs first, under the handshake deadline, then everything else as on
// a plain listener (four-letter words included, as on ZooKeeper's secure port). TLS
// sessions run on the goroutine driver: the epoll loops relay raw sockets.
func (s *Server) ServeTLS(ln net.Listener, cfg *tls.Config) error {
	return s.Serve(tlsListener{Listener: ln, cfg: cfg})
}

type tlsListener struct {
	net.Listener
	cfg *tls.Config
}

// Accept wraps each connection; the handshake happens in the connection's goroutine.
func (l tlsListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return tls.Server(c, l.cfg), nil
}

// errTLSHandshake is a client whose TLS handshake failed.
var errTLSHandshake = errors.New("TLS handshake failed")

// tlsHandshake runs a TLS client's handshake under the handshake deadline.
func (c *conn) tlsHandshake() error {
	tc, ok := c.client.(*tls.Conn)
	if !ok {
		return nil
	}
	ctx, cancel := context.WithDeadline(context.Background(), c.accepted.Add(c.srv.conf().HandshakeTimeout))
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		return tlsRefusal{err}
	}
	return nil
}

// tlsRefusal says what an operator should check, with the error TLS gave.
type tlsRefusal struct{ err error }

func (e tlsRefusal) Error() string   { return certs.Explain(e.err) + ": " + e.err.Error() }
func (e tlsRefusal) Unwrap() []error { return []error{errTLSHandshake, e.err} }

// isTLS reports whether c is a TLS connection (relayed by the goroutine driver).
func isTLS(c net.Conn) bool {
	_, ok := c.(*tls.Conn)
	return ok
}

// dialTLS wraps a member connection in TLS (Config.MemberTLS) and runs the handshake
// within ctx.
func (s *Server) dialTLS(ctx context.Context, c net.Conn, member string) (net.Conn, error) {
	if s.conf().MemberTLS == nil {
		return c, nil
	}
	tc := tls.Client(c, certs.For(s.conf().MemberTLS, member))
	hctx, cancel := context.WithTimeout(ctx, max(s.conf().DialTimeout, time.Second))
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		c.Close()
		return nil, tlsRefusal{err}
	}
	return tc, nil
}

// MemberDialer is the health probes' dialer for members reached over TLS with cfg (the
// same TLS as Config.MemberTLS).
func MemberDialer(cfg *tls.Config) health.Dialer {
	return func(ctx context.Context, addr string) (net.Conn, error) {
		d := tls.Dialer{Config: certs.For(cfg, addr)}
		return d.DialContext(ctx, "tcp", addr)
	}
}
