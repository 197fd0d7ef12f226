package proxy

import (
	"bufio"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/zkgate/zkgate/health"
	"github.com/zkgate/zkgate/jute"
)

type staticView struct{ v *health.View }

func (s staticView) View() *health.View { return s.v }

// responder is the in-process stand-in for a member that exists only for the relay
// benchmark: it accepts the ConnectRequest and answers every request with an empty
// successful reply, as fast as it can and without allocating.
func responder(b *testing.B) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				fr := jute.NewFrameReaderSize(c, 0, 4096)
				bw := bufio.NewWriter(c)
				if _, err := fr.Next(); err != nil {
					return
				}
				resp := jute.AppendFrame(nil, &jute.ConnectResponse{TimeOut: 30000, SessionID: 0x1234, Passwd: make([]byte, 16)})
				c.Write(resp)
				var reply [20]byte
				for {
					frame, err := fr.Next()
					if err != nil {
						return
					}
					h, _ := jute.ParseRequestHeader(frame[4:])
					out := (&jute.ReplyHeader{Xid: h.Xid, Zxid: 42}).Append(jute.AppendInt(reply[:0], jute.ReplyHeaderLen))
					bw.Write(out)
					if fr.Buffered() == 0 {
						bw.Flush()
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// benchGate starts a Server in front of the responder and returns a connected session.
func benchGate(b *testing.B) (net.Conn, *jute.FrameReader) { return benchGateWith(b, false) }

// benchGateWith is benchGate, with a TLS client when tlsClient (its session relayed by the
// loop, which took it from crypto/tls).
func benchGateWith(b *testing.B, tlsClient bool) (net.Conn, *jute.FrameReader) {
	member := responder(b)
	view := &health.View{Members: []health.MemberState{{Address: member, Status: health.StatusServing, Mode: "leader", Serving: true}},
		Leader: member, Quorum: true, At: time.Now()}
	srv := NewServer(DefaultConfig(), staticView{view}, zerolog.Nop())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var c net.Conn
	if tlsClient {
		cert, pool := tlsTestCerts(b)
		go srv.ServeTLS(ln, &tls.Config{Certificates: []tls.Certificate{cert}})
		c, err = tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	} else {
		go srv.Serve(ln)
		c, err = net.Dial("tcp", ln.Addr().String())
	}
	b.Cleanup(func() { srv.Close() })
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	c.Write(jute.AppendFrame(nil, &jute.ConnectRequest{TimeOut: 30000, Passwd: make([]byte, 16)}))
	fr := jute.NewFrameReader(c, 0)
	if _, err := fr.Next(); err != nil {
		b.Fatal(err)
	}
	return c, fr
}

// BenchmarkRelay is one getData request and its reply through zkgate's session code
// (handshake done, breaker and ejector on, default observer), ping-pong.
func BenchmarkRelay(b *testing.B) { benchRelay(b, false) }

// BenchmarkRelayTLS is BenchmarkRelay with a TLS 1.3 client, relayed by the loop's record
// layer. The client is crypto/tls, whose work counts too: its read buffer's growth is the
// one allocation per op (zkgate's side makes none).
func BenchmarkRelayTLS(b *testing.B) { benchRelay(b, true) }

func benchRelay(b *testing.B, tlsClient bool) {
	c, fr := benchGateWith(b, tlsClient)
	req := jute.AppendFrame(nil, &jute.RequestHeader{Xid: 1, Type: jute.OpGetData}, &jute.GetDataRequest{Path: "/bench"})
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		xid := int32(i + 1)
		req[4], req[5], req[6], req[7] = byte(xid>>24), byte(xid>>16), byte(xid>>8), byte(xid)
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		frame, err := fr.Next()
		if err != nil {
			b.Fatal(err)
		}
		if h, _ := jute.ParseReplyHeader(frame[4:]); h.Xid != xid {
			b.Fatalf("xid %d, want %d", h.Xid, xid)
		}
	}
}

// BenchmarkRelayPipelined keeps up to 64 requests in flight on one session, as a
// pipelining client does (closed loop: a new request for each reply).
func BenchmarkRelayPipelined(b *testing.B) {
	c, fr := benchGate(b)
	const depth = 64
	req := jute.AppendFrame(nil, &jute.RequestHeader{Xid: 1, Type: jute.OpGetData}, &jute.GetDataRequest{Path: "/bench"})
	done := make(chan error, 1)
	window := make(chan struct{}, depth)
	b.ReportAllocs()
	b.ResetTimer()
	go func() {
		for i := 0; i < b.N; i++ {
			if _, err := fr.Next(); err != nil {
				done <- err
				return
			}
			<-window
		}
		done <- nil
	}()
	bw := bufio.NewWriter(c)
	for sent := 0; sent < b.N; {
		window <- struct{}{} // wait for room
		for k := 0; sent < b.N; k++ {
			sent++
			xid := int32(sent)
			req[4], req[5], req[6], req[7] = byte(xid>>24), byte(xid>>16), byte(xid>>8), byte(xid)
			bw.Write(req)
			if sent == b.N {
				break
			}
			select {
			case window <- struct{}{}:
				continue
			default:
			}
			break
		}
		if err := bw.Flush(); err != nil {
			b.Fatal(err)
		}
	}
	if err := <-done; err != nil && !errors.Is(err, io.EOF) {
		b.Fatal(err)
	}
}

// BenchmarkRelayMachine is one getData request and its reply through the relay state
// machine alone: no socket, the breaker and ejector on, the default observer, hot spots
// gathered as a relay loop gathers them (and flushed at its sweep's rate).
func BenchmarkRelayMachine(b *testing.B) {
	view := &health.View{Members: []health.MemberState{{Address: "m1", Status: health.StatusServing, Mode: "leader", Serving: true}},
		Leader: "m1", Quorum: true, At: time.Now()}
	srv := NewServer(DefaultConfig(), staticView{view}, zerolog.Nop())
	r := newRelay(srv, &Session{member: "m1", id: 1, timeout: 30 * time.Second, started: time.Now()})
	req := jute.AppendFrame(nil, &jute.RequestHeader{Xid: 1, Type: jute.OpGetData}, &jute.GetDataRequest{Path: "/bench"})
	reply := jute.AppendFrame(nil, &jute.ReplyHeader{Xid: 1, Zxid: 42}, &jute.GetDataResponse{})
	o := out{hot: newHotBatch(srv)}
	now := time.Now()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i%1000 == 0 {
			o.hot.flush() // a sweep every 100 ms, at 10,000 requests a second
		}
		xid := int32(i + 1)
		req[4], req[5], req[6], req[7] = byte(xid>>24), byte(xid>>16), byte(xid>>8), byte(xid)
		reply[4], reply[5], reply[6], reply[7] = req[4], req[5], req[6], req[7]
		if _, end := r.fromClient(&o, req, now); end != nil {
			b.Fatal(end)
		}
		if _, end := r.fromMember(&o, reply, now); end != nil {
			b.Fatal(end)
		}
		o.reset()
	}
}

// BenchmarkTLSRecord seals and opens one ZooKeeper-sized record (a getData reply with a
// 128-byte value) with the relay loops' TLS record layer, in reused buffers as the loop
// does: no allocation.
func BenchmarkTLSRecord(b *testing.B) {
	for _, id := range []uint16{tls.TLS_AES_128_GCM_SHA256, tls.TLS_CHACHA20_POLY1305_SHA256,
		tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256} {
		b.Run(tls.CipherSuiteName(id), func(b *testing.B) {
			zkgate, peer := recPair(b, id)
			frame := jute.AppendFrame(nil, &jute.ReplyHeader{Xid: 1, Zxid: 42}, &jute.GetDataResponse{Data: make([]byte, 128)})
			buf := make([]byte, 0, len(frame)+sealOverhead(len(frame)))
			b.ReportAllocs()
			b.SetBytes(int64(len(frame)))
			for b.Loop() {
				buf = zkgate.seal(buf[:0], frame)
				data, used, err := peer.open(buf)
				if err != nil || used != len(buf) || len(data) != len(frame) {
					b.Fatalf("opened %d of %d: %v", used, len(buf), err)
				}
			}
		})
	}
}
