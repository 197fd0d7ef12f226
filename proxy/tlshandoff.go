package proxy

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
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
// crypto/tls does not keep (take). TLS 1.2 with an AEAD suite is handed over the same
// way, keyed from the master secret and the hellos' randoms (plan12). Whatever does not
// fit (TLS 1.1 and older, a CBC or unknown suite, a KeyUpdate or a renegotiation before
// the hand-off, a resumed TLS 1.2 session, more records than recCopyMax) leaves the
// connection with crypto/tls, and its session on the goroutine driver (settleTLS).

// Why a TLS connection stays with crypto/tls (fixed texts: the fallback is logged once
// per reason).
var (
	errTLSVersion   = errors.New("not TLS 1.3 or 1.2")
	errTLSSuite     = errors.New("a cipher suite the relay loops do not know")
	errTLSCopy      = errors.New("more handshake records than the hand-off keeps")
	errTLSSecrets   = errors.New("no traffic secrets from the handshake")
	errTLSState     = errors.New("crypto/tls holds state the relay loops cannot take (a key update, half a record or message, an alert)")
	errTLSUnwatched = errors.New("a TLS connection made without recConn")
)

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
	if st.Version != tls.VersionTLS13 && st.Version != tls.VersionTLS12 {
		return nil, fmt.Errorf("%w (%s)", errTLSVersion, tls.VersionName(st.Version))
	}
	suite := suiteByID(st.CipherSuite)
	if suite == nil || suite.v12 != (st.Version == tls.VersionTLS12) {
		return nil, fmt.Errorf("%w (%s, %s)", errTLSSuite, tls.VersionName(st.Version), tls.CipherSuiteName(st.CipherSuite))
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
	var rec *tlsRec
	var err error
	if suite.v12 {
		rec, err = plan12(w, suite)
	} else {
		rec, err = plan13(w, suite)
	}
	if err != nil {
		return nil, err
	}
	return &tlsPlan{tc: tc, w: w, rec: rec}, nil
}

// plan13 is planTLS's record layer for TLS 1.3: keyed with the application traffic
// secrets, at the sequence numbers the records kept show.
func plan13(w *recConn, suite *recSuite) (*tlsRec, error) {
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
	return rec, nil
}

// plan12 is planTLS's record layer for TLS 1.2: the key block from the master secret
// (the key log's, extended or not), the client random (the key log's, which the
// ClientHello kept must show) and the server random (from the ServerHello kept, sent in
// the clear); the sequence numbers are the records after each ChangeCipherSpec, the
// Finished first. A resumed session logs no master secret: errTLSSecrets.
func plan12(w *recConn, suite *recSuite) (*tlsRec, error) {
	w.keys.mu.Lock()
	master, random := bytes.Clone(w.keys.master), bytes.Clone(w.keys.random)
	w.keys.mu.Unlock()
	defer clear(master)
	if master == nil {
		return nil, errTLSSecrets
	}
	fromClient, fromServer := w.sent, w.got
	if !w.client {
		fromClient, fromServer = fromServer, fromClient
	}
	cr, err := helloRandom(fromClient, hsClientHello)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(cr, random) {
		return nil, fmt.Errorf("%w: the key log's client random is not the ClientHello's", errTLSSecrets)
	}
	sr, err := helloRandom(fromServer, hsServerHello)
	if err != nil {
		return nil, err
	}
	rec, err := newTLS12Rec(suite, master, cr, sr, w.client)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errTLSSecrets, err)
	}
	if rec.in.seq, err = countRecords12(&rec.in, w.got); err != nil {
		return nil, err
	}
	if rec.out.seq, err = countRecords12(&rec.out, w.sent); err != nil {
		return nil, err
	}
	return rec, nil
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
		rec, rest, err := splitRecord(stream)
		if err != nil {
			return 0, err
		}
		stream = rest
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

// splitRecord cuts the first whole record off a copied stream; a stream that ends inside
// a record is not a state the loop can take over.
func splitRecord(stream []byte) (rec, rest []byte, err error) {
	if len(stream) < recordHeaderLen {
		return nil, nil, errTLSState
	}
	n := int(stream[3])<<8 | int(stream[4])
	if len(stream) < recordHeaderLen+n {
		return nil, nil, errTLSState
	}
	return stream[:recordHeaderLen+n], stream[recordHeaderLen+n:], nil
}
