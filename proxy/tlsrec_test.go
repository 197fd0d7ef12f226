package proxy

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"
)

func TestTLSRecordConstants(t *testing.T) {
	for _, c := range []struct {
		name      string
		got, want int
	}{
		{"record header", recordHeaderLen, 5},
		{"max plaintext", maxPlaintext, 16384},
		{"max ciphertext", maxCiphertext, 16384 + 256},
		{"change_cipher_spec", recChangeCipherSpec, 20},
		{"alert", recAlert, 21},
		{"handshake", recHandshake, 22},
		{"application_data", recApplicationData, 23},
		{"new_session_ticket", hsNewSessionTicket, 4},
		{"key_update", hsKeyUpdate, 24},
		{"warning", alertWarning, 1},
		{"close_notify", alertCloseNotify, 0},
		{"legacy_record_version", recVersion, 0x0303},
	} {
		if c.got != c.want {
			t.Errorf("%s = %d, want %d", c.name, c.got, c.want)
		}
	}
	if !bytes.Equal(keyUpdateMsg[:], []byte{24, 0, 0, 1, 0}) {
		t.Errorf("KeyUpdate(update_not_requested) = % x", keyUpdateMsg)
	}
	for _, id := range []uint16{0x1301, 0x1302, 0x1303} {
		if suiteByID(id) == nil {
			t.Errorf("suite %#04x unknown", id)
		}
	}
}

// RFC 8448 section 3, {server} derive write traffic keys for handshake data (the vector
// crypto/tls's own tests use).
func TestTLSKeySchedule(t *testing.T) {
	secret := unhex(t, "b67b7d690cc16c4e75e54213cb2d37b4e9c912bcded9105d42befd59d391ad38")
	if got := expandLabel(sha256.New, secret, "key", 16); !bytes.Equal(got, unhex(t, "3fce516009c21727d0f2e4e86ee403bc")) {
		t.Errorf("key % x", got)
	}
	if got := expandLabel(sha256.New, secret, "iv", 12); !bytes.Equal(got, unhex(t, "5d313eb2671276ee13000b30")) {
		t.Errorf("iv % x", got)
	}
}

func unhex(t testing.TB, s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// recPair is two record layers facing each other (a the server, b the client) with
// random secrets.
func recPair(t testing.TB, id uint16) (a, b *tlsRec) {
	s := suiteByID(id)
	if s.v12 {
		return recPair12(t, s)
	}
	c2s, s2c := make([]byte, s.hash().Size()), make([]byte, s.hash().Size())
	rand.Read(c2s)
	rand.Read(s2c)
	a, err := newTLSRec(s, bytes.Clone(c2s), bytes.Clone(s2c), false)
	if err != nil {
		t.Fatal(err)
	}
	if b, err = newTLSRec(s, bytes.Clone(s2c), bytes.Clone(c2s), true); err != nil {
		t.Fatal(err)
	}
	return a, b
}

// openAll opens stream fed in pieces of the given sizes (cycled), keeping a partial
// record between pieces as the loop does, and returns the data and the error that ended it.
func openAll(r *tlsRec, stream []byte, sizes ...int) ([]byte, error) {
	var out, part []byte
	for i := 0; len(stream) > 0; i++ {
		n := min(len(stream), sizes[i%len(sizes)])
		buf := append(bytes.Clone(part), stream[:n]...)
		stream = stream[n:]
		data, used, err := r.open(buf)
		out = append(out, data...)
		if err != nil {
			return out, err
		}
		part = buf[used:]
	}
	if len(part) > 0 {
		return out, errors.New("a partial record left")
	}
	return out, nil
}

func TestTLSRecordRoundTrip(t *testing.T) {
	for _, id := range []uint16{tls.TLS_AES_128_GCM_SHA256, tls.TLS_AES_256_GCM_SHA384, tls.TLS_CHACHA20_POLY1305_SHA256} {
		t.Run(tls.CipherSuiteName(id), func(t *testing.T) {
			a, b := recPair(t, id)
			data := make([]byte, 3*maxPlaintext+123)
			rand.Read(data)
			stream := a.seal(nil, data)
			if want := 4 * (recordHeaderLen + 1 + 16); len(stream) != len(data)+want {
				t.Errorf("%d bytes sealed into %d", len(data), len(stream))
			}
			for _, sizes := range [][]int{{len(stream)}, {1}, {7, 4093, 3}, {recordHeaderLen}} {
				a, b := recPair(t, id)
				got, err := openAll(b, a.seal(nil, data), sizes...)
				if err != nil || !bytes.Equal(got, data) {
					t.Fatalf("pieces %v: %d bytes back of %d, %v", sizes, len(got), len(data), err)
				}
			}
			// Both ways, sequence numbers going on.
			for i := range 3 {
				msg := []byte(strings.Repeat("x", i*1000+1))
				if got, err := openAll(a, b.seal(nil, msg), 100); err != nil || !bytes.Equal(got, msg) {
					t.Fatalf("client to server %d: %v", i, err)
				}
			}
		})
	}
}

// A KeyUpdate with update_requested is answered under the old key, then both keys move
// on; one without it moves the receiving key only.
func TestTLSRecordKeyUpdate(t *testing.T) {
	a, b := recPair(t, tls.TLS_AES_128_GCM_SHA256)
	ku := b.sealOne(nil, recHandshake, []byte{hsKeyUpdate, 0, 0, 1, 1})
	b.out.update()
	stream := b.seal(ku, []byte("after"))
	got, err := openAll(a, stream, len(stream))
	if err != nil || string(got) != "after" {
		t.Fatalf("%q %v", got, err)
	}
	if len(a.pend) == 0 {
		t.Fatal("no KeyUpdate in answer")
	}
	answer := append(a.pend, a.seal(nil, []byte("reply"))...)
	if got, err := openAll(b, answer, 3); err != nil || string(got) != "reply" {
		t.Fatalf("%q %v", got, err)
	}
	if len(b.pend) != 0 {
		t.Error("an update_not_requested was answered")
	}
	// Our own update past rekeyAt.
	a.rekeyAt = a.out.seq + 2
	stream = a.seal(nil, make([]byte, 5*maxPlaintext))
	if got, err := openAll(b, stream, 1000); err != nil || len(got) != 5*maxPlaintext {
		t.Fatalf("%d bytes %v", len(got), err)
	}
	if a.out.seq != 3 {
		t.Errorf("sequence %d after the rekey, want 3", a.out.seq)
	}
}

func TestTLSRecordRefusals(t *testing.T) {
	seal := func(r *tlsRec, typ byte, p []byte) []byte { return r.sealOne(nil, typ, p) }
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
		{"plain alert", func(_, _ *tlsRec) []byte { return []byte{recAlert, 3, 3, 0, 2, 2, 40} }, errTLSRecord, "record type 21"},
		{"oversized", func(_, _ *tlsRec) []byte { return []byte{recApplicationData, 3, 3, 0x41, 1} }, errTLSRecord, "16641 bytes"},
		{"no content type", func(_, b *tlsRec) []byte { return seal(b, 0, nil) }, errTLSRecord, "content type 0"},
		{"unknown content type", func(_, b *tlsRec) []byte { return seal(b, 0, []byte("x")) }, errTLSRecord, "content type 120"},
		{"alert", func(_, b *tlsRec) []byte { return seal(b, recAlert, []byte{2, 40}) }, tlsAlert{40}, "handshake failure"},
		{"close_notify", func(_, b *tlsRec) []byte { return b.closeNotify(b.seal(nil, []byte("last"))) }, errCloseNotify, ""},
		{"ticket from a client", func(_, b *tlsRec) []byte { return seal(b, recHandshake, []byte{hsNewSessionTicket, 0, 0, 0}) }, errTLSRecord, "message type 4"},
		{"key update mid-record", func(_, b *tlsRec) []byte {
			return seal(b, recHandshake, append(keyUpdateMsg[:], keyUpdateMsg[:]...))
		}, errTLSRecord, "not at the end"},
		{"data inside a message", func(_, b *tlsRec) []byte {
			return append(seal(b, recHandshake, []byte{hsKeyUpdate, 0}), b.seal(nil, []byte("x"))...)
		}, errTLSRecord, "inside a handshake message"},
	} {
		t.Run(c.name, func(t *testing.T) {
			a, b := recPair(t, tls.TLS_AES_128_GCM_SHA256)
			got, err := openAll(a, c.stream(a, b), 1<<20)
			if !errors.Is(err, c.want) && err != c.want {
				t.Fatalf("error %v, want %v", err, c.want)
			}
			if !strings.Contains(err.Error(), c.text) {
				t.Errorf("error %q lacks %q", err, c.text)
			}
			if c.want == errCloseNotify && string(got) != "last" {
				t.Errorf("data before close_notify: %q", got)
			}
		})
	}
}

// A member's NewSessionTicket, padding, and a handshake message split over records.
func TestTLSRecordTicketsAndPadding(t *testing.T) {
	a, b := recPair(t, tls.TLS_CHACHA20_POLY1305_SHA256)
	ticket := append([]byte{hsNewSessionTicket, 0, 0x10, 0}, make([]byte, 0x1000)...)
	var stream []byte
	stream = a.sealOne(stream, recHandshake, ticket[:100])
	stream = a.sealOne(stream, recHandshake, ticket[100:])
	stream = a.sealOne(stream, recHandshake, keyUpdateMsg[:])
	a.out.update()
	padded := append([]byte("padded"), recApplicationData, 0, 0, 0)
	stream = a.sealOne(stream, 0, padded) // the content type is inside, before the zeros
	got, err := openAll(b, stream, 50)
	if err != nil || string(got) != "padded" {
		t.Fatalf("%q %v", got, err)
	}
	if len(b.hs) != 0 {
		t.Errorf("%d bytes of a message kept", len(b.hs))
	}
}

func FuzzTLSOpen(f *testing.F) {
	a, b := recPair(f, tls.TLS_AES_128_GCM_SHA256)
	f.Add(a.seal(nil, []byte("hello")))
	f.Add(a.closeNotify(nil))
	f.Add([]byte{recApplicationData, 3, 3, 0, 17})
	f.Fuzz(func(t *testing.T, in []byte) {
		r := *b // the keys stay; the state is this run's
		r.in.secret = bytes.Clone(b.in.secret)
		data, used, err := r.open(bytes.Clone(in))
		if used > len(in) || len(data) > len(in) {
			t.Fatalf("used %d, data %d of %d", used, len(data), len(in))
		}
		if err == nil && len(in)-used >= recordHeaderLen+maxCiphertext {
			t.Fatalf("a whole record's room left unopened without an error")
		}
	})
}

// Sealing and opening a ZooKeeper-sized record allocates nothing (BenchmarkTLSRecord
// measures it too).
func TestTLSRecordNoAllocs(t *testing.T) {
	a, b := recPair(t, tls.TLS_AES_256_GCM_SHA384)
	frame := make([]byte, 180)
	buf := make([]byte, 0, len(frame)+sealOverhead(len(frame)))
	if n := testing.AllocsPerRun(100, func() {
		buf = a.seal(buf[:0], frame)
		if _, _, err := b.open(buf); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("%v allocations per record", n)
	}
}

// tlsTestCerts is a self-signed certificate for 127.0.0.1 and a pool that trusts it.
func tlsTestCerts(t testing.TB) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "zkgate test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}
