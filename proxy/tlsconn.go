package proxy

import (
	"bytes"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
)

// Handing a TLS connection from crypto/tls to a relay loop. crypto/tls runs the
// handshake, and the session's first exchange (the ConnectRequest and ConnectResponse)
// goes through it; then the loop takes the socket with the record layer's state
// (tlsrec.go): the traffic secrets (from a per-connection KeyLogWriter), each
// direction's sequence number, and every byte in flight, decrypted or not.
//
// recConn sits under the tls.Conn and makes that exact: it gives crypto/tls no byte past
// the end of the record it reads, so crypto/tls never holds raw bytes of its own, and it
// keeps a copy of the records that passed each way. The sequence numbers are found by
// trial: the records under the application traffic key open with it, those under the
// handshake keys do not (planTLS). What crypto/tls decrypted and nobody read yet comes
// out of tls.Conn.Read once recConn refuses further reads with a temporary error, which
// crypto/tls does not keep (take). Whatever does not fit (TLS 1.2, an unknown suite, a
// KeyUpdate before the hand-off, more records than recCopyMax) leaves the connection
// with crypto/tls, and its session on the goroutine driver (settleTLS).

// recCopyMax bounds the copy of the records kept each way until the hand-off; a
// handshake's records (certificate chains) take a few KiB.
const recCopyMax = 64 << 10

// Why a TLS connection stays with crypto/tls (fixed texts: the fallback is logged once
// per reason).
var (
	errTLSVersion   = errors.New("not TLS 1.3")
	errTLSSuite     = errors.New("a cipher suite the relay loops do not know")
	errTLSCopy      = errors.New("more handshake records than the hand-off keeps")
	errTLSSecrets   = errors.New("no traffic secrets from the handshake")
	errTLSState     = errors.New("crypto/tls holds state the relay loops cannot take (a key update, half a record or message, an alert)")
	errTLSUnwatched = errors.New("a TLS connection made without recConn")
)

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

// keyLog is a connection's KeyLogWriter: it keeps the application traffic secrets, in
// memory only, and discards the rest.
type keyLog struct {
	mu             sync.Mutex
	client, server []byte // CLIENT_TRAFFIC_SECRET_0, SERVER_TRAFFIC_SECRET_0
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
	default:
		return len(line), nil
	}
	secret := make([]byte, hex.DecodedLen(len(f[2])))
	if _, err := hex.Decode(secret, f[2]); err != nil {
		return len(line), nil
	}
	k.mu.Lock()
	*dst = secret
	k.mu.Unlock()
	return len(line), nil
}

// forget drops the secrets (the record layer keeps its own).
func (k *keyLog) forget() {
	k.mu.Lock()
	k.client, k.server = nil, nil
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

// recorded is the recConn under nc, when nc is a TLS connection made with one.
func recorded(nc net.Conn) (*tls.Conn, *recConn, bool) {
	tc, ok := nc.(*tls.Conn)
	if !ok {
		return nil, nil, false
	}
	w, ok := tc.NetConn().(*recConn)
	return tc, w, ok
}

// settleTLS leaves nc with crypto/tls (the goroutine driver relays it); a no-op for
// connections that are not TLS or not watched.
func settleTLS(nc net.Conn) {
	if _, w, ok := recorded(nc); ok {
		w.settle()
	}
}

// tlsPlan is a TLS connection found fit for a relay loop, not yet taken from crypto/tls.
type tlsPlan struct {
	tc  *tls.Conn
	w   *recConn
	rec *tlsRec
}

// tlsHandoff is a TLS connection taken from crypto/tls: the socket under it, its record
// layer, and the stream's next bytes, in order: plain (decrypted by crypto/tls, not yet
// read), then raw (records read from the socket that crypto/tls did not take).
type tlsHandoff struct {
	nc         net.Conn
	rec        *tlsRec
	plain, raw []byte
}

// planTLS checks that a loop can take nc over and finds its record layer's state; nc
// is left as it was, so that on an error it stays with crypto/tls. A connection that is
// not TLS gives nil, nil.
func planTLS(nc net.Conn) (*tlsPlan, error) {
	tc, w, ok := recorded(nc)
	switch {
	case tc == nil:
		return nil, nil
	case !ok:
		return nil, errTLSUnwatched
	}
	st := tc.ConnectionState()
	if st.Version != tls.VersionTLS13 {
		return nil, fmt.Errorf("%w (%s)", errTLSVersion, tls.VersionName(st.Version))
	}
	suite := suiteByID(st.CipherSuite)
	if suite == nil {
		return nil, fmt.Errorf("%w (%s)", errTLSSuite, tls.CipherSuiteName(st.CipherSuite))
	}
	w.rmu.Lock()
	defer w.rmu.Unlock()
	w.wmu.Lock()
	defer w.wmu.Unlock()
	switch {
	case w.settled.Load() || w.taken:
		return nil, errTLSState
	case w.gotOver || w.sentOver:
		return nil, errTLSCopy
	case w.left != 0 || w.broken:
		return nil, errTLSState
	}
	w.keys.mu.Lock()
	in, out := w.keys.client, w.keys.server
	if w.client {
		in, out = out, in
	}
	w.keys.mu.Unlock()
	if in == nil || out == nil {
		return nil, errTLSSecrets
	}
	rec, err := newTLSRec(suite, bytes.Clone(in), bytes.Clone(out), w.client)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errTLSSecrets, err)
	}
	// Received records: a NewSessionTicket is fine, a KeyUpdate (crypto/tls moved to the
	// next key) or an alert is not.
	if rec.in.seq, err = countRecords(&rec.in, w.got, w.client); err != nil {
		return nil, err
	}
	// Sent records: none but application data and crypto/tls's own tickets.
	if rec.out.seq, err = countRecords(&rec.out, w.sent, !w.client); err != nil {
		return nil, err
	}
	return &tlsPlan{tc: tc, w: w, rec: rec}, nil
}

// countRecords finds how many records of stream were sealed with d's key, at sequence
// numbers from 0: the records before them (under the handshake keys) do not open with
// it, and every one after the first that opens must. A ticket is fine when tickets may
// be in this direction; any other post-handshake message, an alert, or a message split
// over the last record is errTLSState.
func countRecords(d *recDir, stream []byte, tickets bool) (uint64, error) {
	var scratch []byte
	var hsLeft int // bytes of a handshake message still to come
	opened := false
	for len(stream) > 0 {
		if len(stream) < recordHeaderLen {
			return 0, errTLSState
		}
		n := int(stream[3])<<8 | int(stream[4])
		if len(stream) < recordHeaderLen+n {
			return 0, errTLSState
		}
		rec := stream[:recordHeaderLen+n]
		stream = stream[recordHeaderLen+n:]
		if rec[0] != recApplicationData { // the hellos, ChangeCipherSpec: in the clear
			if opened {
				return 0, errTLSState
			}
			continue
		}
		plain, err := d.aead.Open(scratch[:0], d.next(), rec[recordHeaderLen:], rec[:recordHeaderLen])
		if err != nil {
			if opened {
				return 0, errTLSState
			}
			continue
		}
		scratch = plain
		opened = true
		d.seq++
		typ, plain := innerType(plain)
		switch {
		case typ == recApplicationData && hsLeft == 0:
		case typ == recHandshake:
			for len(plain) > 0 {
				if hsLeft == 0 {
					if len(plain) < 4 || plain[0] != hsNewSessionTicket || !tickets {
						return 0, errTLSState
					}
					hsLeft = 4 + (int(plain[1])<<16 | int(plain[2])<<8 | int(plain[3]))
				}
				k := min(hsLeft, len(plain))
				hsLeft -= k
				plain = plain[k:]
			}
		default:
			return 0, errTLSState
		}
	}
	if hsLeft > 0 {
		return 0, errTLSState
	}
	return d.seq, nil
}

// take hands the connection over: what crypto/tls decrypted and nobody read, the raw
// bytes recConn holds, and the socket. crypto/tls writes nothing more on it (its Close
// sends no close_notify), and the socket is the caller's to close.
func (p *tlsPlan) take() (*tlsHandoff, error) {
	w := p.w
	w.rmu.Lock()
	w.refusing = true
	w.rmu.Unlock()
	var plain []byte
	buf := make([]byte, 4<<10)
	for {
		n, err := p.tc.Read(buf)
		plain = append(plain, buf[:n]...)
		if errors.As(err, new(handedOff)) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("reading what TLS decrypted: %w", err)
		}
	}
	w.rmu.Lock()
	w.wmu.Lock()
	w.taken = true
	raw := bytes.Clone(w.buf[w.off:])
	w.buf, w.off, w.got, w.sent = nil, 0, nil, nil
	w.keys.forget()
	w.wmu.Unlock()
	w.rmu.Unlock()
	return &tlsHandoff{nc: w.Conn, rec: p.rec, plain: plain, raw: raw}, nil
}

// handoffTLS is planTLS and take at once, for a member connection a move made.
func handoffTLS(nc net.Conn) (*tlsHandoff, error) {
	p, err := planTLS(nc)
	if err != nil || p == nil {
		return nil, err
	}
	return p.take()
}
