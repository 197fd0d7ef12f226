package proxy

import (
	"bytes"
	"io"
	"net"
	"testing"
	"testing/iotest"
)

// readerConn is a net.Conn that only reads, from r.
type readerConn struct {
	net.Conn
	r io.Reader
}

func (c readerConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// recConn gives crypto/tls no byte past the end of a record, whatever the socket holds and
// however large the read, and keeps the rest; a stream that ends inside a header gives
// what there is, then the end.
func TestRecConnReads(t *testing.T) {
	rec := func(n int) []byte {
		return append([]byte{recApplicationData, 3, 3, byte(n >> 8), byte(n)}, make([]byte, n)...)
	}
	stream := append(append(rec(30), rec(2000)...), recApplicationData, 3)
	w := newRecConn(readerConn{r: iotest.HalfReader(bytes.NewReader(stream))}, false)
	var got []byte
	var sizes []int
	p := make([]byte, 1<<16)
	for {
		n, err := w.Read(p)
		if n > 0 {
			got = append(got, p[:n]...)
			sizes = append(sizes, len(got))
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, end := range []int{35, 35 + 2005} {
			if len(got) > end && len(got)-n < end {
				t.Fatalf("a read crossed the record end at %d: %v", end, sizes)
			}
		}
	}
	if !bytes.Equal(got, stream) || !bytes.Equal(w.got, stream) {
		t.Fatalf("read %d bytes of %d (copy %d)", len(got), len(stream), len(w.got))
	}
	if !w.broken {
		t.Error("a stream that ended inside a header can be handed off")
	}
}
