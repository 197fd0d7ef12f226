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
// a plain listener (four-letter words included, as on ZooKeeper's secure port). With the
// epoll driver a TLS 1.3 session, or a TLS 1.2 one with an AEAD suite, is then relayed by
// a loop, which takes the connection from crypto/tls (tlshandoff.go); other TLS sessions
// run on the goroutine driver.
func (s *Server) ServeTLS(ln net.Listener, cfg *tls.Config) error {
	if s.conf().Driver != DriverEpoll {
		return s.Serve(tlsListener{Listener: ln, cfg: cfg})
	}
	return s.Serve(tlsListener{Listener: ln, cfg: keyLogConfig(cfg), watch: true})
}

type tlsListener struct {
	net.Listener
	cfg   *tls.Config
	watch bool // each connection over a recConn, for a loop to take over
}

// Accept wraps each connection; the handshake happens in the connection's goroutine.
func (l tlsListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if l.watch {
		return tls.Server(newRecConn(c, false), l.cfg), nil
	}
	return tls.Server(c, l.cfg), nil
}

// keyLogConfig is base with each connection's traffic secrets going to its recConn's
// key log. The connection's own config comes from GetConfigForClient, as base's does
// (certs.Source loads a rotated certificate there), cloned with the connection's
// KeyLogWriter; session ticket keys stay the listener's, shared by every connection.
func keyLogConfig(base *tls.Config) *tls.Config {
	cfg := base.Clone()
	inner := base.GetConfigForClient
	cfg.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		var c *tls.Config
		if inner != nil {
			var err error
			if c, err = inner(hello); err != nil {
				return nil, err
			}
		}
		w, ok := hello.Conn.(*recConn)
		if !ok {
			return c, nil
		}
		if c == nil {
			c = base
		}
		c = c.Clone()
		c.KeyLogWriter = &w.keys
		return c, nil
	}
	return cfg
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

// isTLS reports whether c is a TLS connection.
func isTLS(c net.Conn) bool {
	_, ok := c.(*tls.Conn)
	return ok
}

// dialTLS wraps a member connection in TLS (Config.MemberTLS) and runs the handshake
// within ctx. With the epoll driver the connection goes over a recConn, with its own
// KeyLogWriter, for a loop to take over.
func (s *Server) dialTLS(ctx context.Context, c net.Conn, member string) (net.Conn, error) {
	base := s.conf().MemberTLS
	if base == nil {
		return c, nil
	}
	cfg, under := certs.For(base, member), c
	if s.conf().Driver == DriverEpoll {
		if cfg == base {
			cfg = cfg.Clone()
		}
		w := newRecConn(c, true)
		cfg.KeyLogWriter, under = &w.keys, w
	}
	tc := tls.Client(under, cfg)
	hctx, cancel := context.WithTimeout(ctx, max(s.conf().DialTimeout, time.Second))
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		c.Close()
		return nil, tlsRefusal{err}
	}
	return tc, nil
}

// tlsFallback counts a TLS session the loops could not take; the first of each reason
// is logged.
func (s *Server) tlsFallback(c *conn, err error) {
	s.tlsSlow.Add(1)
	reason := err.Error()
	for _, r := range []error{errTLSVersion, errTLSSuite, errTLSCopy, errTLSSecrets, errTLSState, errTLSUnwatched} {
		if errors.Is(err, r) {
			reason = r.Error()
			break
		}
	}
	ev := s.log.Debug()
	if _, seen := s.tlsReasons.LoadOrStore(reason, true); !seen {
		ev = s.log.Info()
	}
	ev.Str("client", c.addr).Str("reason", reason).AnErr("detail", err).
		Msg("TLS session relayed by the goroutine driver, not a relay loop (logged once per reason)")
}

// TLSSessions counts the sessions with TLS on either side since the server started:
// fast, relayed by a loop; fallback, by the goroutine driver although the loops run.
func (s *Server) TLSSessions() (fast, fallback uint64) {
	return uint64(s.tlsFast.Load()), uint64(s.tlsSlow.Load())
}

// MemberDialer is the health probes' dialer for members reached over TLS with cfg (the
// same TLS as Config.MemberTLS).
func MemberDialer(cfg *tls.Config) health.Dialer {
	return func(ctx context.Context, addr string) (net.Conn, error) {
		d := tls.Dialer{Config: certs.For(cfg, addr)}
		return d.DialContext(ctx, "tcp", addr)
	}
}
