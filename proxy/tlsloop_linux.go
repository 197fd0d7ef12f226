//go:build linux

package proxy

import (
	"errors"
	"fmt"
)

// The relay loop's side of TLS sessions: reads are opened into plaintext for the relay,
// what the relay sends is sealed into records, in place in the loop's buffers.

// tlsScratch holds a loop's buffers for its TLS sessions, made when the first one comes.
type tlsScratch struct {
	// in: every TLS read lands at in[recordRoom:]; the partial record the session kept
	// is put right before it, so its records are opened in one piece, in place.
	in    []byte
	out   []byte   // records sealed for one send
	parts [][]byte // spare buffers for partial records (recordRoom each)
}

// readBuf is where a TLS end's reads land.
func (l *loop) tlsReadBuf() []byte {
	if l.tls.in == nil {
		l.tls.in = make([]byte, recordRoom+readChunk)
	}
	return l.tls.in[recordRoom:]
}

// openTLS opens the n bytes a read put in tlsReadBuf, behind e's partial record, and
// relays their data. A bad record ends the session (the client's) or moves it (the
// member's); a close_notify is an end of stream.
func (l *loop) openTLS(e *end, n int) {
	t := e.tls
	start := recordRoom - len(t.part)
	buf := l.tls.in[start : recordRoom+n]
	copy(buf, t.part)
	data, used, err := t.open(buf)
	if err != nil {
		used = len(buf) // the connection is done: nothing more is opened
	}
	l.keepRecord(t, buf[used:])
	if len(t.pend) > 0 { // a KeyUpdate's answer, before anything sealed under the new key
		l.put(e, t.pend)
		t.pend = t.pend[:0]
	}
	if len(data) > 0 && !e.c.closed && e.fd >= 0 {
		l.relay(e, data)
	}
	if err == nil || e.c.closed || e.fd < 0 {
		return
	}
	if errors.Is(err, errCloseNotify) {
		l.broken(e, eofErr(len(e.in)))
		return
	}
	l.failTLS(e, err)
}

// failTLS ends e's TLS connection for err: the client's ends the session, the member's
// moves it.
func (l *loop) failTLS(e *end, err error) {
	if e.member {
		l.loseMember(e.c, "member TLS: "+err.Error())
		return
	}
	l.finish(e.c, ending{side: "client", err: protocolError{fmt.Errorf("client TLS: %w", err)}})
}

// feedTLS opens raw bytes that came from elsewhere than a read (what crypto/tls left
// unread at the hand-off), as if read.
func (l *loop) feedTLS(e *end, raw []byte) {
	for len(raw) > 0 && !e.c.closed && e.fd >= 0 && e.tls != nil {
		n := copy(l.tlsReadBuf(), raw)
		raw = raw[n:]
		l.openTLS(e, n)
	}
}

// keepRecord keeps the start of a record for the next read, in a spare buffer of the
// loop's; none is held while no record is partial.
func (l *loop) keepRecord(t *tlsRec, rest []byte) {
	if len(rest) == 0 {
		l.releaseRecord(t)
		return
	}
	if t.part == nil {
		if k := len(l.tls.parts); k > 0 {
			t.part, l.tls.parts = l.tls.parts[k-1], l.tls.parts[:k-1]
		} else {
			t.part = make([]byte, 0, recordRoom)
		}
	}
	t.part = append(t.part[:0], rest...)
}

func (l *loop) releaseRecord(t *tlsRec) {
	if t.part != nil {
		l.tls.parts = append(l.tls.parts, t.part[:0])
		t.part = nil
	}
}

// sealTLS seals data for e: behind what e holds already, or in the loop's buffer for
// one write. A TLS 1.2 connection out of sequence numbers is ended (nil: nothing to send).
func (l *loop) sealTLS(e *end, data []byte) []byte {
	if len(e.out) > 0 {
		e.out = e.tls.seal(e.out, data)
	} else {
		l.tls.out = e.tls.seal(l.tls.out[:0], data)
	}
	if e.tls.spent {
		l.failTLS(e, errTLSSpent)
		return nil
	}
	if len(e.out) > 0 {
		return nil
	}
	return l.tls.out
}

// closeTLS says close_notify on a TLS end about to close, when nothing else waits to go
// out (best effort: the socket closes anyway), and gives its buffer back.
func (l *loop) closeTLS(e *end) {
	if len(e.out) == 0 {
		l.tls.out = e.tls.closeNotify(l.tls.out[:0])
		sockWrite(e.fd, l.tls.out)
	}
	l.releaseRecord(e.tls)
	e.tls = nil
}
