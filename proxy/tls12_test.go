package proxy

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"math"
	"strings"
	"testing"
)

// The TLS 1.2 AEAD suites the record layer takes: ECDHE (RSA or ECDSA) and RSA key
// exchange, AES-GCM and ChaCha20-Poly1305. CBC suites are not among them.
var suites12 = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_RSA_WITH_AES_256_GCM_SHA384,
}

func TestTLS12Constants(t *testing.T) {
	for _, c := range []struct {
		name      string
		got, want int
	}{
		{"hello_request/finished", hsFinished, 20},
		{"client_hello", hsClientHello, 1},
		{"server_hello", hsServerHello, 2},
		{"Finished with verify_data", finishedLen, 16},
		{"random", randomLen, 32},
	} {
		if c.got != c.want {
			t.Errorf("%s = %d, want %d", c.name, c.got, c.want)
		}
	}
	for _, id := range suites12 {
		s := suiteByID(id)
		if s == nil || !s.v12 {
			t.Fatalf("%s unknown", tls.CipherSuiteName(id))
		}
		gcm := strings.Contains(tls.CipherSuiteName(id), "GCM")
		if gcm && (s.ivLen != 4 || s.explicit != 8) || !gcm && (s.ivLen != 12 || s.explicit != 0) {
			t.Errorf("%s: IV %d, explicit nonce %d", tls.CipherSuiteName(id), s.ivLen, s.explicit)
		}
		if sha384 := strings.HasSuffix(tls.CipherSuiteName(id), "SHA384"); sha384 != (s.hash().Size() == 48) {
			t.Errorf("%s: PRF hash of %d bytes", tls.CipherSuiteName(id), s.hash().Size())
		}
	}
	for _, id := range []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256, tls.TLS_RSA_WITH_AES_128_CBC_SHA} {
		if suiteByID(id) != nil {
			t.Errorf("CBC suite %s known", tls.CipherSuiteName(id))
		}
	}
}

// The PRF against the TLS 1.2 P_SHA256 test vector published on the TLS working group's
// list (crypto/tls is checked against it too, and by the hand-off tests' keying material).
func TestTLS12PRF(t *testing.T) {
	got := prf12(sha256.New, unhex(t, "9bbe436ba940f017b17652849a71db35"), "test label", unhex(t, "a0ba9f936cda311827a6f796ffd5198c"), 100)
	want := unhex(t, "e3f229ba727be17b8d122620557cd453c2aab21d07c3d495329b52d4e61edb5a6b301791e90d35c9c9a46b4e14baf9af0fa022f7077def17abfd3797c0564bab4fbc91666e9def9b97fce34f796789baa48082d122ee42c5a72e5a5110fff70187347b66")
	if !bytes.Equal(got, want) {
		t.Errorf("P_SHA256 = %x", got)
	}
}

// recPair12 is recPair for a TLS 1.2 suite: a random master secret and randoms.
func recPair12(t testing.TB, s *recSuite) (a, b *tlsRec) {
	master, cr, sr := make([]byte, 48), make([]byte, 32), make([]byte, 32)
	rand.Read(master)
	rand.Read(cr)
	rand.Read(sr)
	a, err := newTLS12Rec(s, master, cr, sr, false)
	if err != nil {
		t.Fatal(err)
	}
	if b, err = newTLS12Rec(s, master, cr, sr, true); err != nil {
		t.Fatal(err)
	}
	return a, b
}

func TestTLS12RecordRoundTrip(t *testing.T) {
	for _, id := range suites12 {
		t.Run(tls.CipherSuiteName(id), func(t *testing.T) {
			a, b := recPair(t, id)
			data := make([]byte, 3*maxPlaintext+123)
			rand.Read(data)
			stream := a.seal(nil, data)
			if want := 4 * (recordHeaderLen + a.out.overhead12()); len(stream) != len(data)+want {
				t.Errorf("%d bytes sealed into %d", len(data), len(stream))
			}
			if len(stream) > len(data)+sealOverhead(len(data)) {
				t.Errorf("sealOverhead(%d) = %d, short of %d", len(data), sealOverhead(len(data)), len(stream)-len(data))
			}
			if stream[0] != recApplicationData || bytes.Contains(stream[recordHeaderLen:], data[:64]) {
				t.Error("records not sealed as application data")
			}
			if s := suiteByID(id); s.explicit > 0 && !bytes.Equal(stream[recordHeaderLen:recordHeaderLen+8], make([]byte, 8)) {
				t.Errorf("explicit nonce of record 0: % x (the sequence number)", stream[recordHeaderLen:recordHeaderLen+8])
			}
			if got, err := openAll(b, stream, len(stream)); err != nil || !bytes.Equal(got, data) {
				t.Fatalf("%d bytes back of %d, %v", len(got), len(data), err)
			}
			for _, sizes := range [][]int{{1}, {7, 4093, 3}, {recordHeaderLen}} {
				a, b := recPair(t, id)
				got, err := openAll(b, a.seal(nil, data), sizes...)
				if err != nil || !bytes.Equal(got, data) {
					t.Fatalf("pieces %v: %d bytes back of %d, %v", sizes, len(got), len(data), err)
				}
			}
			for i := range 3 {
				msg := []byte(strings.Repeat("x", i*1000+1))
				if got, err := openAll(a, b.seal(nil, msg), 100); err != nil || !bytes.Equal(got, msg) {
					t.Fatalf("client to server %d: %v", i, err)
				}
				if got, err := openAll(b, a.seal(nil, msg), 3); err != nil || !bytes.Equal(got, msg) {
					t.Fatalf("server to client %d: %v", i, err)
				}
			}
			// A peer's explicit nonce need not be its sequence number: the record's own is used.
			r := b.sealOne12(nil, recApplicationData, []byte("any nonce"))
			if s := suiteByID(id); s.explicit > 0 {
				b.out.seq--
				r2 := b.out.next()
				r2[11] ^= 0xff
				r = b.out.aead.Seal(append(r[:recordHeaderLen], r2[4:]...), r2, []byte("any nonce"), b.out.aad12(recApplicationData, 9))
				b.out.seq++
			}
			if got, err := openAll(a, r, len(r)); err != nil || string(got) != "any nonce" {
				t.Fatalf("%q %v", got, err)
			}
		})
	}
}

func TestTLS12RecordRefusals(t *testing.T) {
	seal := func(r *tlsRec, typ byte, p []byte) []byte { return r.sealOne12(nil, typ, p) }
	for _, c := range []struct {
		name   string
		stream func(a, b *tlsRec) []byte
		want   error
		text   string
	}{
		{"corrupted", func(_, b *tlsRec) []byte {
			r := b.seal(nil, []byte("data"))
			r[len(r)-3] ^= 1
			return r
		}, errTLSRecord, "does not authenticate"},
		{"replayed", func(_, b *tlsRec) []byte {
			r := b.seal(nil, []byte("data"))
			return append(r, r...)
		}, errTLSRecord, "record 1 does not authenticate"},
		{"type changed", func(_, b *tlsRec) []byte {
			r := b.seal(nil, []byte("data"))
			r[0] = recAlert
			return r
		}, errTLSRecord, "record 0 does not authenticate"},
		{"change_cipher_spec", func(_, _ *tlsRec) []byte { return []byte{recChangeCipherSpec, 3, 3, 0, 1, 1} }, errTLSRecord, "record type 20"},
		{"short", func(_, _ *tlsRec) []byte { return []byte{recApplicationData, 3, 3, 0, 15} }, errTLSRecord, "record of 15 bytes"},
		{"oversized", func(_, _ *tlsRec) []byte { return []byte{recApplicationData, 3, 3, 0x41, 1} }, errTLSRecord, "16641 bytes"},
		{"alert", func(_, b *tlsRec) []byte { return seal(b, recAlert, []byte{2, 40}) }, tlsAlert{40}, "handshake failure"},
		{"long alert", func(_, b *tlsRec) []byte { return seal(b, recAlert, []byte{2, 40, 0}) }, errTLSRecord, "alert of 3 bytes"},
		{"close_notify", func(_, b *tlsRec) []byte { return b.closeNotify(b.seal(nil, []byte("last"))) }, errCloseNotify, ""},
		{"HelloRequest from a member", func(_, b *tlsRec) []byte {
			return append(b.seal(nil, []byte("last")), seal(b, recHandshake, []byte{0, 0, 0, 0})...)
		}, errTLSRenegotiation, "message type 0"},
		{"ClientHello from a client", func(_, b *tlsRec) []byte {
			return seal(b, recHandshake, append([]byte{hsClientHello, 0, 0, 40, 3, 3}, make([]byte, 38)...))
		}, errTLSRenegotiation, "message type 1"},
		{"sequence numbers used up", func(a, b *tlsRec) []byte {
			a.in.seq, b.out.seq = math.MaxUint64, math.MaxUint64-1
			return b.closeNotify(nil)
		}, errTLSSpent, "used up"},
	} {
		for _, id := range []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256} {
			t.Run(c.name+"/"+tls.CipherSuiteName(id), func(t *testing.T) {
				a, b := recPair(t, id)
				got, err := openAll(a, c.stream(a, b), 1<<20)
				if !errors.Is(err, c.want) && err != c.want {
					t.Fatalf("error %v, want %v", err, c.want)
				}
				if !strings.Contains(err.Error(), c.text) {
					t.Errorf("error %q lacks %q", err, c.text)
				}
				if (c.want == errCloseNotify || c.name == "HelloRequest from a member") && string(got) != "last" {
					t.Errorf("data before the record that ended it: %q", got)
				}
			})
		}
	}
}

// A TLS 1.2 connection never lets a sequence number wrap: seal stops at endAt and says
// so; a close_notify still fits, and one past the last number is not sealed.
func TestTLS12SealStops(t *testing.T) {
	a, b := recPair(t, tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384)
	a.endAt = 2
	out := a.seal(nil, make([]byte, 3*maxPlaintext))
	if !a.spent || a.out.seq != 2 {
		t.Fatalf("spent %v at sequence %d", a.spent, a.out.seq)
	}
	got, err := openAll(b, a.closeNotify(out), 1000)
	if !errors.Is(err, errCloseNotify) || len(got) != 2*maxPlaintext {
		t.Fatalf("%d bytes, %v", len(got), err)
	}
	a.out.seq = math.MaxUint64
	if r := a.closeNotify(nil); len(r) != 0 {
		t.Errorf("a close_notify at the last sequence number: %d bytes", len(r))
	}
}

// Sealing and opening a ZooKeeper-sized TLS 1.2 record allocates nothing.
func TestTLS12RecordNoAllocs(t *testing.T) {
	for _, id := range []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256} {
		a, b := recPair(t, id)
		frame := make([]byte, 180)
		buf := make([]byte, 0, len(frame)+sealOverhead(len(frame)))
		if n := testing.AllocsPerRun(100, func() {
			buf = a.seal(buf[:0], frame)
			if _, _, err := b.open(buf); err != nil {
				t.Fatal(err)
			}
		}); n != 0 {
			t.Errorf("%s: %v allocations per record", tls.CipherSuiteName(id), n)
		}
	}
}

func FuzzTLS12Open(f *testing.F) {
	a, b := recPair(f, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)
	f.Add(a.seal(nil, []byte("hello")))
	f.Add(a.closeNotify(nil))
	f.Add([]byte{recHandshake, 3, 3, 0, 24})
	f.Fuzz(func(t *testing.T, in []byte) {
		r := *b
		data, used, err := r.open(bytes.Clone(in))
		if used > len(in) || len(data) > len(in) {
			t.Fatalf("used %d, data %d of %d", used, len(data), len(in))
		}
		if err == nil && len(in)-used >= recordHeaderLen+maxCiphertext {
			t.Fatalf("a whole record's room left unopened without an error")
		}
	})
}
