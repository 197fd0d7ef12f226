package proxy

import (
	"io"
	"sync"
)

// batchWriter coalesces frames like bufio.Writer, but holds its buffer only while there
// is something to send: it takes one from a pool at the first write of a batch and gives
// it back at Flush. An idle session holds no write buffers.
type batchWriter struct {
	w    io.Writer
	pool *sync.Pool // of *[]byte with cap size
	size int
	buf  *[]byte
	err  error
}

func newBatchWriter(w io.Writer, pool *sync.Pool, size int) *batchWriter {
	return &batchWriter{w: w, pool: pool, size: size}
}

// Available is the room left before a write must flush.
func (b *batchWriter) Available() int {
	if b.buf == nil {
		return b.size
	}
	return b.size - len(*b.buf)
}

// Write buffers p, flushing first when it does not fit; a p larger than the buffer goes
// straight out.
func (b *batchWriter) Write(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if len(p) > b.Available() {
		if err := b.Flush(); err != nil {
			return 0, err
		}
	}
	if len(p) >= b.size {
		n, err := b.w.Write(p)
		b.err = err
		return n, err
	}
	if b.buf == nil {
		b.buf = b.pool.Get().(*[]byte)
	}
	*b.buf = append(*b.buf, p...)
	return len(p), nil
}

// Flush sends what is buffered and returns the buffer to the pool.
func (b *batchWriter) Flush() error {
	if b.buf == nil || b.err != nil {
		return b.err
	}
	_, b.err = b.w.Write(*b.buf)
	*b.buf = (*b.buf)[:0]
	b.pool.Put(b.buf)
	b.buf = nil
	return b.err
}
