package proxy

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"math"
	"slices"

	"golang.org/x/crypto/chacha20poly1305"
)

// The TLS 1.3 record layer (RFC 8446 section 5) of the sessions the relay loops carry
// over TLS. crypto/tls runs the handshake; then the loop seals and opens the records
// itself, with the traffic secrets of the handshake (tlsconn.go hands them over). It
// does no I/O: records in, plaintext out, and the other way. TLS 1.2 with an AEAD suite
// (RFC 5246, 5288, 7905) goes through the same layer, keyed from the master secret
// (tls12.go).

// Wire constants (RFC 8446 sections 4, 5 and 6); TestTLSRecordConstants pins them.
const (
	recordHeaderLen = 5
	maxPlaintext    = 1 << 14            // bytes of data in one record
	maxCiphertext   = maxPlaintext + 256 // a TLS 1.3 record's body at most
	recordRoom      = recordHeaderLen + maxCiphertext

	recChangeCipherSpec = 20
	recAlert            = 21
	recHandshake        = 22
	recApplicationData  = 23

	hsNewSessionTicket = 4
	hsKeyUpdate        = 24

	alertWarning     = 1
	alertCloseNotify = 0

	// legacy_record_version of every TLS 1.3 record after the ClientHello.
	recVersion = 0x0303
)

// maxHandshakeMsg bounds a post-handshake message kept while its records arrive: a
// NewSessionTicket (ticket up to 2^16-1 bytes, and extensions) fits.
const maxHandshakeMsg = 1 << 17

// rekeyAfter: past this many records under one key the layer updates its own (a KeyUpdate
// without update_requested). RFC 8446 section 5.5 allows AES-GCM 2^24.5 full records per
// key; crypto/tls never updates on its own, and a busy session can send that many.
const rekeyAfter = 1 << 24

var (
	// errCloseNotify: the peer closed its side cleanly (an end of stream).
	errCloseNotify = errors.New("TLS close_notify")
	// errTLSRecord: a record that cannot be taken (bad length, type, authentication).
	errTLSRecord = errors.New("bad TLS record")
)

// tlsAlert is an alert the peer sent, other than close_notify.
type tlsAlert struct{ desc uint8 }

func (a tlsAlert) Error() string { return "TLS alert from the peer: " + tls.AlertError(a.desc).Error() }

// alertError is what an opened alert record means, in TLS 1.3 and 1.2 alike: a
// close_notify is the end of the stream (errCloseNotify), any other alert ends the
// connection (tlsAlert), and an alert that is not two bytes is a bad record.
func alertError(plain []byte) error {
	switch {
	case len(plain) != 2:
		return fmt.Errorf("%w: alert of %d bytes", errTLSRecord, len(plain))
	case plain[1] == alertCloseNotify:
		return errCloseNotify
	}
	return tlsAlert{plain[1]}
}

// recSuite is a cipher suite the layer knows: its AEAD, key length and hash (HKDF's in
// TLS 1.3, the PRF's in TLS 1.2). A TLS 1.2 suite also says how long the fixed IV from
// the key block is and how long the explicit nonce each record carries.
type recSuite struct {
	id       uint16
	keyLen   int
	hash     func() hash.Hash
	aead     func(key []byte) (cipher.AEAD, error)
	v12      bool
	ivLen    int // TLS 1.2: 4 for AES-GCM (RFC 5288), 12 for ChaCha20-Poly1305 (RFC 7905)
	explicit int // TLS 1.2: the explicit nonce's length (8 for AES-GCM, none for ChaCha20)
}

var recSuites = []recSuite{
	{id: tls.TLS_AES_128_GCM_SHA256, keyLen: 16, hash: sha256.New, aead: newGCM},
	{id: tls.TLS_AES_256_GCM_SHA384, keyLen: 32, hash: sha512.New384, aead: newGCM},
	{id: tls.TLS_CHACHA20_POLY1305_SHA256, keyLen: chacha20poly1305.KeySize, hash: sha256.New, aead: chacha20poly1305.New},

	{id: tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, keyLen: 16, hash: sha256.New, aead: newGCM, v12: true, ivLen: 4, explicit: 8},
	{id: tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, keyLen: 16, hash: sha256.New, aead: newGCM, v12: true, ivLen: 4, explicit: 8},
	{id: tls.TLS_RSA_WITH_AES_128_GCM_SHA256, keyLen: 16, hash: sha256.New, aead: newGCM, v12: true, ivLen: 4, explicit: 8},
	{id: tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, keyLen: 32, hash: sha512.New384, aead: newGCM, v12: true, ivLen: 4, explicit: 8},
	{id: tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, keyLen: 32, hash: sha512.New384, aead: newGCM, v12: true, ivLen: 4, explicit: 8},
	{id: tls.TLS_RSA_WITH_AES_256_GCM_SHA384, keyLen: 32, hash: sha512.New384, aead: newGCM, v12: true, ivLen: 4, explicit: 8},
	{id: tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, keyLen: chacha20poly1305.KeySize, hash: sha256.New, aead: chacha20poly1305.New, v12: true, ivLen: 12},
	{id: tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256, keyLen: chacha20poly1305.KeySize, hash: sha256.New, aead: chacha20poly1305.New, v12: true, ivLen: 12},
}

func newGCM(key []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// suiteByID is the suite, or nil for one the layer does not know.
func suiteByID(id uint16) *recSuite {
	for i := range recSuites {
		if recSuites[i].id == id {
			return &recSuites[i]
		}
	}
	return nil
}

// expandLabel is HKDF-Expand-Label with an empty context (RFC 8446 section 7.1).
func expandLabel(h func() hash.Hash, secret []byte, label string, length int) []byte {
	info := make([]byte, 0, 4+6+len(label))
	info = binary.BigEndian.AppendUint16(info, uint16(length))
	info = append(info, byte(6+len(label)))
	info = append(info, "tls13 "...)
	info = append(info, label...)
	info = append(info, 0)
	out, err := hkdf.Expand(h, secret, string(info), length)
	if err != nil {
		// Only for a length over 255 hash lengths, which no caller asks.
		panic("proxy: HKDF-Expand-Label: " + err.Error())
	}
	return out
}

// recDir is one direction of a TLS connection: its key, IV and sequence number.
type recDir struct {
	suite  *recSuite
	aead   cipher.AEAD
	secret []byte   // the traffic secret, for the next KeyUpdate
	iv     [12]byte // TLS 1.2 AES-GCM: the 4-byte fixed IV, then zeros
	nonce  [12]byte
	aad    [13]byte // TLS 1.2's additional data
	seq    uint64
}

// init keys d with a traffic secret (RFC 8446 section 7.3), sequence number 0.
func (d *recDir) init(s *recSuite, secret []byte) error {
	key := expandLabel(s.hash, secret, "key", s.keyLen)
	a, err := s.aead(key)
	clear(key)
	if err != nil {
		return err
	}
	clear(d.secret)
	d.suite, d.aead, d.secret, d.seq = s, a, secret, 0
	copy(d.iv[:], expandLabel(s.hash, secret, "iv", len(d.iv)))
	return nil
}

// update moves d to the next traffic secret (a KeyUpdate, RFC 8446 section 7.2).
func (d *recDir) update() {
	if err := d.init(d.suite, expandLabel(d.suite.hash, d.secret, "traffic upd", len(d.secret))); err != nil {
		// The key has the suite's own length: the AEAD constructors cannot refuse it.
		panic("proxy: TLS key update: " + err.Error())
	}
}

// next is the nonce of the record at d.seq: the IV XOR the sequence number. For TLS 1.2
// AES-GCM (a 4-byte IV) that is the IV, then the sequence number as the explicit nonce.
func (d *recDir) next() []byte {
	d.nonce = d.iv
	var s [8]byte
	binary.BigEndian.PutUint64(s[:], d.seq)
	for i, b := range s {
		d.nonce[4+i] ^= b
	}
	return d.nonce[:]
}

// tlsRec is the record layer of one TLS connection, from one side. Only its loop uses it.
type tlsRec struct {
	in, out recDir
	client  bool   // this side is the TLS client (a member connection)
	spent   bool   // TLS 1.2: out.seq reached endAt; seal seals nothing more
	hs      []byte // the start of a post-handshake message whose records are still coming
	// pend holds records the layer must send itself (the answer to a KeyUpdate that asked
	// for one), before anything sealed after them; the driver sends and empties it.
	pend []byte
	// part is the start of a record kept between reads; the driver owns its buffer.
	part    []byte
	rekeyAt uint64 // out.seq at which seal updates its key (rekeyAfter; tests lower it)
	// endAt: TLS 1.2 has no key update, so seal stops here rather than let the sequence
	// number wrap (one number is left for a close_notify); tests lower it.
	endAt uint64
}

// newTLSRec makes the record layer from the handshake's traffic secrets (the layer
// keeps them), at sequence number 0 each way.
func newTLSRec(s *recSuite, inSecret, outSecret []byte, client bool) (*tlsRec, error) {
	t := &tlsRec{client: client, rekeyAt: rekeyAfter}
	if err := t.in.init(s, inSecret); err != nil {
		return nil, err
	}
	if err := t.out.init(s, outSecret); err != nil {
		return nil, err
	}
	return t, nil
}

// recordLen reads a record header: the body's length, or an error for a record no TLS
// 1.3 peer sends after its handshake.
func recordLen(h []byte) (int, error) {
	n := int(binary.BigEndian.Uint16(h[3:5]))
	switch {
	case h[0] != recApplicationData:
		return 0, fmt.Errorf("%w: record type %d after the handshake", errTLSRecord, h[0])
	case n > maxCiphertext:
		return 0, fmt.Errorf("%w: record of %d bytes (at most %d)", errTLSRecord, n, maxCiphertext)
	case n < 17: // a content type and a tag at least
		return 0, fmt.Errorf("%w: record of %d bytes", errTLSRecord, n)
	}
	return n, nil
}

// open decrypts the whole records at the start of buf in place and returns their data,
// moved to the start of buf (valid until buf is reused), and how many bytes of buf they
// took: the rest is the start of a record. Post-handshake messages are handled here: a
// KeyUpdate changes the keys (its answer, when asked for, goes to t.pend), a member's
// NewSessionTicket is ignored. A close_notify returns the data before it and
// errCloseNotify; a bad record or another alert returns an error, and the connection is
// done.
func (t *tlsRec) open(buf []byte) (data []byte, used int, err error) {
	if t.in.suite.v12 {
		return t.open12(buf)
	}
	w := 0
	for len(buf)-used >= recordHeaderLen {
		n, err := recordLen(buf[used:])
		if err != nil {
			return buf[:w], used, err
		}
		if len(buf)-used < recordHeaderLen+n {
			break
		}
		rec := buf[used : used+recordHeaderLen+n]
		plain, err := t.in.aead.Open(rec[recordHeaderLen:recordHeaderLen], t.in.next(), rec[recordHeaderLen:], rec[:recordHeaderLen])
		if err != nil {
			return buf[:w], used, fmt.Errorf("%w: record %d does not authenticate", errTLSRecord, t.in.seq)
		}
		t.in.seq++
		used += len(rec)
		typ, plain := innerType(plain)
		switch {
		case len(plain) > maxPlaintext:
			return buf[:w], used, fmt.Errorf("%w: %d bytes of plaintext in one record", errTLSRecord, len(plain))
		case len(t.hs) > 0 && typ != recHandshake:
			return buf[:w], used, fmt.Errorf("%w: record type %d inside a handshake message", errTLSRecord, typ)
		}
		switch typ {
		case recApplicationData:
			w += copy(buf[w:], plain)
		case recHandshake:
			if err := t.handshake(plain); err != nil {
				return buf[:w], used, err
			}
		case recAlert:
			return buf[:w], used, alertError(plain)
		default:
			return buf[:w], used, fmt.Errorf("%w: content type %d", errTLSRecord, typ)
		}
	}
	if len(buf)-used >= recordHeaderLen {
		_, err = recordLen(buf[used:]) // a bad header fails now, not when its body is in
	}
	return buf[:w], used, err
}

// innerType splits TLSInnerPlaintext: the content type is the last byte that is not
// zero padding (0: none, an error for the caller).
func innerType(p []byte) (byte, []byte) {
	i := len(p) - 1
	for i >= 0 && p[i] == 0 {
		i--
	}
	if i < 0 {
		return 0, nil
	}
	return p[i], p[:i]
}

// handshake takes the post-handshake messages in one record's data.
func (t *tlsRec) handshake(p []byte) error {
	if len(t.hs) > 0 {
		t.hs = append(t.hs, p...) // a message split over records: rare, and bounded below
		p = t.hs
	}
	for len(p) >= 4 {
		n := int(p[1])<<16 | int(p[2])<<8 | int(p[3])
		if n > maxHandshakeMsg {
			return fmt.Errorf("%w: post-handshake message of %d bytes", errTLSRecord, n)
		}
		if len(p) < 4+n {
			break
		}
		msg := p[:4+n]
		p = p[4+n:]
		switch {
		case msg[0] == hsKeyUpdate && n == 1 && msg[4] <= 1:
			if len(p) > 0 {
				// RFC 8446 section 5.1: a key change is at a record boundary.
				return fmt.Errorf("%w: KeyUpdate not at the end of its record", errTLSRecord)
			}
			if msg[4] == 1 { // update_requested: ours goes first, under the old key
				t.pend = t.sealOne(t.pend, recHandshake, keyUpdateMsg[:])
				t.out.update()
			}
			t.in.update()
		case msg[0] == hsNewSessionTicket && t.client:
			// A member's ticket: zkgate does not resume member sessions.
		default:
			return fmt.Errorf("%w: post-handshake message type %d", errTLSRecord, msg[0])
		}
	}
	if len(p) == 0 {
		t.hs = nil
	} else {
		t.hs = append(t.hs[:0], p...) // p may be t.hs's own tail: append moves it down
	}
	return nil
}

// keyUpdateMsg is a KeyUpdate without update_requested.
var keyUpdateMsg = [5]byte{hsKeyUpdate, 0, 0, 1, 0}

// seal appends data to dst as application data records of at most maxPlaintext bytes.
// It allocates nothing when dst has room: len(data) + sealOverhead(len(data)).
func (t *tlsRec) seal(dst, data []byte) []byte {
	if t.out.suite.v12 {
		return t.seal12(dst, data)
	}
	for len(data) > 0 {
		if t.out.seq >= t.rekeyAt {
			dst = t.sealOne(dst, recHandshake, keyUpdateMsg[:])
			t.out.update()
		}
		n := min(len(data), maxPlaintext)
		dst = t.sealOne(dst, recApplicationData, data[:n])
		data = data[n:]
	}
	return dst
}

// sealOverhead is what sealing n bytes adds to them, at most: TLS 1.2 AES-GCM's explicit
// nonce and tag per record, more than TLS 1.3's content type and tag.
func sealOverhead(n int) int {
	return (n/maxPlaintext + 2) * (recordHeaderLen + 8 + 16)
}

// closeNotify appends a close_notify alert to dst.
func (t *tlsRec) closeNotify(dst []byte) []byte {
	alert := []byte{alertWarning, alertCloseNotify}
	if t.out.suite.v12 {
		if t.out.seq == math.MaxUint64 {
			return dst
		}
		return t.sealOne12(dst, recAlert, alert)
	}
	return t.sealOne(dst, recAlert, alert)
}

// sealOne appends one record of content type typ holding p (at most maxPlaintext).
func (t *tlsRec) sealOne(dst []byte, typ byte, p []byte) []byte {
	off := len(dst)
	body := len(p) + 1 + t.out.aead.Overhead()
	dst = slices.Grow(dst, recordHeaderLen+body)[:off+recordHeaderLen]
	dst[off] = recApplicationData
	binary.BigEndian.PutUint16(dst[off+1:], recVersion)
	binary.BigEndian.PutUint16(dst[off+3:], uint16(body))
	dst = append(dst, p...)
	dst = append(dst, typ)
	inner := dst[off+recordHeaderLen:]
	sealed := t.out.aead.Seal(inner[:0], t.out.next(), inner, dst[off:off+recordHeaderLen])
	t.out.seq++
	return dst[:off+recordHeaderLen+len(sealed)]
}
