package proxy

import (
	"crypto/hmac"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"math"
	"slices"
)

// TLS 1.2 with an AEAD suite on the record layer (RFC 5246 section 6, RFC 5288, RFC
// 7905): the key block from the master secret, records with no inner content type (the
// header's type is the real one), AES-GCM's explicit nonce, and no key update. A
// handshake record after the hand-off is a renegotiation (a member's HelloRequest, a
// client's ClientHello), which zkgate never does: it ends the connection.

const (
	hsFinished    = 20
	hsClientHello = 1
	hsServerHello = 2
	finishedLen   = 4 + 12 // a Finished message with TLS 1.2's 12 bytes of verify_data
	randomLen     = 32
)

// seqEnd12 is where a TLS 1.2 direction stops sealing: one short of the last sequence
// number, which is left for a close_notify.
const seqEnd12 = math.MaxUint64 - 1

var (
	// errTLSRenegotiation: a handshake message on a connection a loop relays.
	errTLSRenegotiation = errors.New("TLS renegotiation, which zkgate does not do")
	// errTLSSpent: a TLS 1.2 connection used every sequence number it may.
	errTLSSpent = errors.New("TLS 1.2 sequence numbers used up (it has no key update)")
)

// prf12 is TLS 1.2's PRF, P_hash(secret, label + seed) cut to n bytes (RFC 5246 section 5).
func prf12(h func() hash.Hash, secret []byte, label string, seed []byte, n int) []byte {
	ls := append([]byte(label), seed...)
	mac := hmac.New(h, secret)
	mac.Write(ls)
	a := mac.Sum(nil)
	out := make([]byte, 0, n+mac.Size())
	for len(out) < n {
		mac.Reset()
		mac.Write(a)
		mac.Write(ls)
		out = mac.Sum(out)
		mac.Reset()
		mac.Write(a)
		a = mac.Sum(a[:0])
	}
	return out[:n]
}

// keys12 is the key block's keys and IVs (no MAC keys with an AEAD suite), each direction.
type keys12 struct{ clientKey, serverKey, clientIV, serverIV []byte }

// keyBlock12 expands the master secret (RFC 5246 section 6.3): client_write_MAC_key and
// server_write_MAC_key (empty), client_write_key, server_write_key, client_write_IV,
// server_write_IV.
func keyBlock12(s *recSuite, master, clientRandom, serverRandom []byte) keys12 {
	kb := prf12(s.hash, master, "key expansion", slices.Concat(serverRandom, clientRandom), 2*s.keyLen+2*s.ivLen)
	var k keys12
	k.clientKey, kb = kb[:s.keyLen], kb[s.keyLen:]
	k.serverKey, kb = kb[:s.keyLen], kb[s.keyLen:]
	k.clientIV, k.serverIV = kb[:s.ivLen], kb[s.ivLen:]
	return k
}

// init12 keys d with a TLS 1.2 write key and IV, sequence number 0.
func (d *recDir) init12(s *recSuite, key, iv []byte) error {
	a, err := s.aead(key)
	if err != nil {
		return err
	}
	d.suite, d.aead, d.seq = s, a, 0
	d.iv = [12]byte{}
	copy(d.iv[:], iv)
	return nil
}

// newTLS12Rec makes the record layer from a TLS 1.2 handshake's master secret and
// randoms, at sequence number 0 each way.
func newTLS12Rec(s *recSuite, master, clientRandom, serverRandom []byte, client bool) (*tlsRec, error) {
	k := keyBlock12(s, master, clientRandom, serverRandom)
	inKey, inIV, outKey, outIV := k.clientKey, k.clientIV, k.serverKey, k.serverIV
	if client {
		inKey, inIV, outKey, outIV = outKey, outIV, inKey, inIV
	}
	t := &tlsRec{client: client, endAt: seqEnd12}
	if err := t.in.init12(s, inKey, inIV); err != nil {
		return nil, err
	}
	if err := t.out.init12(s, outKey, outIV); err != nil {
		return nil, err
	}
	clear(k.clientKey)
	clear(k.serverKey)
	return t, nil
}

// aad12 is the additional data of the record at d.seq: seq_num, type, version, and the
// plaintext's length.
func (d *recDir) aad12(typ byte, n int) []byte {
	binary.BigEndian.PutUint64(d.aad[:], d.seq)
	d.aad[8] = typ
	binary.BigEndian.PutUint16(d.aad[9:], recVersion)
	binary.BigEndian.PutUint16(d.aad[11:], uint16(n))
	return d.aad[:]
}

// overhead12 is what a TLS 1.2 record's body adds to its plaintext.
func (d *recDir) overhead12() int { return d.suite.explicit + d.aead.Overhead() }

// open12 opens one whole TLS 1.2 record (header included) into dst: the nonce is the
// fixed IV with the record's explicit nonce (AES-GCM), or the IV XOR the sequence number.
// The caller checked that the body holds the overhead.
func (d *recDir) open12(dst, rec []byte) ([]byte, error) {
	body := rec[recordHeaderLen:]
	nonce := d.next()
	if x := d.suite.explicit; x > 0 {
		copy(nonce[len(nonce)-x:], body[:x])
		body = body[x:]
	}
	return d.aead.Open(dst, nonce, body, d.aad12(rec[0], len(body)-d.aead.Overhead()))
}

// recordLen12 reads a TLS 1.2 record header: the body's length, or an error for a
// record no peer sends after its handshake.
func (t *tlsRec) recordLen12(h []byte) (int, error) {
	n := int(binary.BigEndian.Uint16(h[3:5]))
	switch {
	case h[0] != recApplicationData && h[0] != recAlert && h[0] != recHandshake:
		return 0, fmt.Errorf("%w: record type %d after the handshake", errTLSRecord, h[0])
	case n > maxCiphertext:
		return 0, fmt.Errorf("%w: record of %d bytes (at most %d)", errTLSRecord, n, maxCiphertext)
	case n < t.in.overhead12():
		return 0, fmt.Errorf("%w: record of %d bytes", errTLSRecord, n)
	}
	return n, nil
}

// open12 is open for TLS 1.2.
func (t *tlsRec) open12(buf []byte) (data []byte, used int, err error) {
	w := 0
	for len(buf)-used >= recordHeaderLen {
		n, err := t.recordLen12(buf[used:])
		if err != nil {
			return buf[:w], used, err
		}
		if len(buf)-used < recordHeaderLen+n {
			break
		}
		if t.in.seq == math.MaxUint64 {
			return buf[:w], used, errTLSSpent
		}
		rec := buf[used : used+recordHeaderLen+n]
		body := rec[recordHeaderLen+t.in.suite.explicit:]
		plain, err := t.in.open12(body[:0], rec)
		if err != nil {
			return buf[:w], used, fmt.Errorf("%w: record %d does not authenticate", errTLSRecord, t.in.seq)
		}
		t.in.seq++
		used += len(rec)
		if len(plain) > maxPlaintext {
			return buf[:w], used, fmt.Errorf("%w: %d bytes of plaintext in one record", errTLSRecord, len(plain))
		}
		switch rec[0] {
		case recApplicationData:
			w += copy(buf[w:], plain)
		case recAlert:
			return buf[:w], used, alertError(plain)
		default: // a handshake record: its first message says which
			typ := -1
			if len(plain) > 0 {
				typ = int(plain[0])
			}
			return buf[:w], used, fmt.Errorf("%w (handshake message type %d)", errTLSRenegotiation, typ)
		}
	}
	if len(buf)-used >= recordHeaderLen {
		_, err = t.recordLen12(buf[used:]) // a bad header fails now, not when its body is in
	}
	return buf[:w], used, err
}

// seal12 is seal for TLS 1.2: at endAt it stops and marks the layer spent, and the
// driver ends the connection.
func (t *tlsRec) seal12(dst, data []byte) []byte {
	for len(data) > 0 {
		if t.out.seq >= t.endAt {
			t.spent = true
			return dst
		}
		n := min(len(data), maxPlaintext)
		dst = t.sealOne12(dst, recApplicationData, data[:n])
		data = data[n:]
	}
	return dst
}

// sealOne12 appends one TLS 1.2 record of type typ holding p (at most maxPlaintext). The
// explicit nonce is the sequence number, as crypto/tls's: unique under the key.
func (t *tlsRec) sealOne12(dst []byte, typ byte, p []byte) []byte {
	d := &t.out
	off, x := len(dst), d.suite.explicit
	body := x + len(p) + d.aead.Overhead()
	dst = slices.Grow(dst, recordHeaderLen+body)[:off+recordHeaderLen]
	dst[off] = typ
	binary.BigEndian.PutUint16(dst[off+1:], recVersion)
	binary.BigEndian.PutUint16(dst[off+3:], uint16(body))
	nonce := d.next()
	if x > 0 {
		dst = append(dst, nonce[len(nonce)-x:]...)
	}
	dst = append(dst, p...)
	inner := dst[off+recordHeaderLen+x:]
	sealed := d.aead.Seal(inner[:0], nonce, inner, d.aad12(typ, len(p)))
	d.seq++
	return dst[:off+recordHeaderLen+x+len(sealed)]
}

// helloRandom is the random of the first handshake message of a stream's plaintext
// records, which must be of type typ (a ClientHello or a ServerHello).
func helloRandom(stream []byte, typ byte) ([]byte, error) {
	var msg []byte
	for len(stream) >= recordHeaderLen && len(msg) < 6+randomLen {
		n := int(stream[3])<<8 | int(stream[4])
		if len(stream) < recordHeaderLen+n || stream[0] != recHandshake {
			break
		}
		msg = append(msg, stream[recordHeaderLen:recordHeaderLen+n]...)
		stream = stream[recordHeaderLen+n:]
	}
	// type(1) length(3) version(2) random(32)
	if len(msg) < 6+randomLen || msg[0] != typ {
		return nil, fmt.Errorf("%w: no hello in the records kept", errTLSSecrets)
	}
	return msg[6 : 6+randomLen], nil
}

// countRecords12 finds how many records of stream were sealed with d's key, at sequence
// numbers from 0: those before the ChangeCipherSpec (in the clear) do not open, and
// every one after the first that opens must. The first is the Finished; application
// data may follow, and anything else (a renegotiation's handshake, an alert) is
// errTLSState.
func countRecords12(d *recDir, stream []byte) (uint64, error) {
	var scratch []byte
	opened := false
	for len(stream) > 0 {
		rec, rest, err := splitRecord(stream)
		if err != nil {
			return 0, err
		}
		stream = rest
		var plain []byte
		err = errTLSState
		if len(rec)-recordHeaderLen >= d.overhead12() && rec[0] != recChangeCipherSpec && d.seq < math.MaxUint64 {
			plain, err = d.open12(scratch[:0], rec)
		}
		if err != nil {
			if opened {
				return 0, errTLSState
			}
			continue
		}
		scratch = plain
		first := !opened
		opened = true
		d.seq++
		switch {
		case first && rec[0] == recHandshake && len(plain) == finishedLen && plain[0] == hsFinished:
		case !first && rec[0] == recApplicationData:
		default:
			return 0, errTLSState
		}
	}
	return d.seq, nil
}
