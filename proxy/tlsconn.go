package proxy

import (
	"bytes"
	"encoding/hex"
	"net"
	"sync"
	"sync/atomic"
)

// recConn, the connection under a tls.Conn that a relay loop may take over, and its
// KeyLogWriter; tlshandoff.go says how the hand-off works.

// recCopyMax bounds the copy of the records kept each way until the hand-off; a
// handshake's records (certificate chains) take a few KiB.
const recCopyMax = 64 << 10

// handedOff is recConn's answer once a loop owns the stream: a temporary error, which
// crypto/tls returns from Read without breaking the connection.
type handedOff struct{}

func (handedOff) Error() string   { return "TLS connection handed to a relay loop" }
func (handedOff) Timeout() bool   { return true }
func (handedOff) Temporary() bool { return true }

// recConn is the net.Conn under a tls.Conn that a relay loop may take over.
type recConn struct {
	net.Conn
	client  bool        // the TLS client's side (a member connection)
	settled atomic.Bool // crypto/tls keeps the connection: everything passes straight on
	keys    keyLog

	rmu      sync.Mutex // guards the read side until settled; then its one reader owns it
	buf      []byte     // read from the socket, not yet given to crypto/tls: buf[off:]
	off      int
	left     int    // bytes of the record being given still to give (0: at a record start)
	got      []byte // the bytes given to crypto/tls, while they fit in recCopyMax
	gotOver  bool
	broken   bool // the stream failed inside a record header: it cannot be handed off
	refusing bool // take is draining crypto/tls: no more reads

	wmu      sync.Mutex // guards the write side
	sent     []byte     // the bytes crypto/tls wrote, while they fit in recCopyMax
	sentOver bool
	taken    bool // a loop owns the stream: crypto/tls writes nothing more (no close_notify)
}

func newRecConn(c net.Conn, client bool) *recConn { return &recConn{Conn: c, client: client} }

// keyLog is a connection's KeyLogWriter: it keeps the application traffic secrets (TLS
// 1.3) or the master secret and client random (TLS 1.2), in memory only, and discards
// the rest.
type keyLog struct {
	mu             sync.Mutex
	client, server []byte // CLIENT_TRAFFIC_SECRET_0, SERVER_TRAFFIC_SECRET_0
	random, master []byte // CLIENT_RANDOM's client random and master secret
}

// Write takes one NSS key log line; it never fails (crypto/tls would fail the handshake).
func (k *keyLog) Write(line []byte) (int, error) {
	f := bytes.Fields(line)
	if len(f) != 3 {
		return len(line), nil
	}
	var dst *[]byte
	switch string(f[0]) {
	case "CLIENT_TRAFFIC_SECRET_0":
		dst = &k.client
	case "SERVER_TRAFFIC_SECRET_0":
		dst = &k.server
	case "CLIENT_RANDOM":
		dst = &k.master
	default:
		return len(line), nil
	}
	secret := make([]byte, hex.DecodedLen(len(f[2])))
	if _, err := hex.Decode(secret, f[2]); err != nil {
		return len(line), nil
	}
	random := make([]byte, hex.DecodedLen(len(f[1])))
	if _, err := hex.Decode(random, f[1]); err != nil {
		return len(line), nil
	}
	k.mu.Lock()
	*dst = secret
	if dst == &k.master {
		k.random = random
	}
	k.mu.Unlock()
	return len(line), nil
}

// forget drops the secrets (the record layer keeps its own).
func (k *keyLog) forget() {
	k.mu.Lock()
	clear(k.master)
	k.client, k.server, k.random, k.master = nil, nil, nil, nil
	k.mu.Unlock()
}

// Read gives crypto/tls what the socket has, never past the end of the current record.
func (w *recConn) Read(p []byte) (int, error) {
	if w.settled.Load() {
		return w.readSettled(p)
	}
	w.rmu.Lock()
	defer w.rmu.Unlock()
	if w.refusing {
		return 0, handedOff{}
	}
	if len(p) == 0 {
		return 0, nil
	}
	for {
		avail := len(w.buf) - w.off
		if w.broken {
			if avail > 0 {
				return w.give(p, avail), nil
			}
			return w.Conn.Read(p)
		}
		if w.left == 0 && avail >= recordHeaderLen {
			h := w.buf[w.off:]
			w.left = recordHeaderLen + (int(h[3])<<8 | int(h[4]))
		}
		if w.left > 0 && avail > 0 {
			return w.give(p, min(avail, w.left)), nil
		}
		if err := w.fill(); err != nil {
			if avail > 0 { // half a header, then the stream failed: crypto/tls sees both
				w.broken = true
				return w.give(p, avail), nil
			}
			return 0, err
		}
	}
}

// give hands crypto/tls up to n bytes of buf, keeping their copy.
func (w *recConn) give(p []byte, n int) int {
	k := copy(p, w.buf[w.off:w.off+n])
	keepCopy(&w.got, &w.gotOver, w.buf[w.off:w.off+k])
	w.off += k
	w.left = max(w.left-k, 0)
	if w.off == len(w.buf) {
		w.buf, w.off = w.buf[:0], 0
	}
	return k
}

// fill reads what the socket has into buf (at least one byte, or an error).
func (w *recConn) fill() error {
	if cap(w.buf)-len(w.buf) < 2048 {
		n := copy(w.buf, w.buf[w.off:])
		w.buf, w.off = w.buf[:n], 0
		if cap(w.buf)-n < 2048 {
			w.buf = append(make([]byte, 0, max(2*cap(w.buf), 8<<10)), w.buf...)
		}
	}
	for {
		n, err := w.Conn.Read(w.buf[len(w.buf):cap(w.buf)])
		w.buf = w.buf[:len(w.buf)+n]
		if n > 0 {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func (w *recConn) readSettled(p []byte) (int, error) {
	if w.off < len(w.buf) {
		n := copy(p, w.buf[w.off:])
		if w.off += n; w.off == len(w.buf) {
			w.buf, w.off = nil, 0
		}
		return n, nil
	}
	return w.Conn.Read(p)
}

// Write sends what crypto/tls writes, keeping a copy.
func (w *recConn) Write(p []byte) (int, error) {
	if w.settled.Load() {
		return w.Conn.Write(p)
	}
	w.wmu.Lock()
	defer w.wmu.Unlock()
	if w.taken {
		return 0, handedOff{}
	}
	n, err := w.Conn.Write(p)
	keepCopy(&w.sent, &w.sentOver, p[:n])
	return n, err
}

func keepCopy(dst *[]byte, over *bool, b []byte) {
	switch {
	case *over:
	case len(*dst)+len(b) > recCopyMax:
		*dst, *over = nil, true
	default:
		*dst = append(*dst, b...)
	}
}

// settle leaves the connection with crypto/tls for good: recConn passes everything on.
func (w *recConn) settle() {
	w.rmu.Lock()
	w.wmu.Lock()
	w.got, w.sent = nil, nil
	w.keys.forget()
	w.settled.Store(true)
	w.wmu.Unlock()
	w.rmu.Unlock()
}
