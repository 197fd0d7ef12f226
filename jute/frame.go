package jute

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"sync"
)

// FrameSlack is added to a body limit (jute.maxbuffer) for the headers and record
// framing that wrap a maximal value, as ZooKeeper's own packet length check allows.
const FrameSlack = 1024

// DefaultMaxFrame is the default largest frame payload: jute.maxbuffer plus FrameSlack.
const DefaultMaxFrame = DefaultMaxBuffer + FrameSlack

// DefaultReadBuffer is the buffered reader's default size: frames up to this size are
// handed out straight from its buffer, without a copy; larger ones are copied into a
// pooled buffer.
const DefaultReadBuffer = 64 << 10

// FrameReader reads length-prefixed frames from a stream. It checks each length against
// its limit before allocating anything.
//
// The slice Next returns is valid until the next call to Next or Release: small frames are
// views into the reader's buffer; large ones live in a pooled buffer that Next recycles.
// A FrameReader is not safe for concurrent use.
type FrameReader struct {
	br      *bufio.Reader
	max     int
	pending int     // bytes of the last small frame still to discard from br
	big     *[]byte // pooled buffer holding the last large frame
}

// NewFrameReader returns a reader with a payload limit of max bytes (DefaultMaxFrame
// when max <= 0).
func NewFrameReader(r io.Reader, max int) *FrameReader {
	return NewFrameReaderSize(r, max, DefaultReadBuffer)
}

// NewFrameReaderSize is NewFrameReader with a read buffer of bufSize bytes (at least 16).
// A relay holding thousands of mostly idle sessions uses a small buffer: the typical
// request and reply fit, and the rare large frame goes through the pool.
func NewFrameReaderSize(r io.Reader, max, bufSize int) *FrameReader {
	if max <= 0 {
		max = DefaultMaxFrame
	}
	return &FrameReader{br: bufio.NewReaderSize(r, bufSize), max: max}
}

// Reader exposes the buffered reader, for a caller that must peek at a connection's
// first bytes (a four-letter word) before reading frames.
func (f *FrameReader) Reader() *bufio.Reader { return f.br }

// Buffered is the number of bytes already read from the stream and not yet handed out.
// A relay flushes its writes when this is zero: nothing more is ready to coalesce.
func (f *FrameReader) Buffered() int { return f.br.Buffered() - f.pending }

// Next returns the next whole frame, length prefix included (frame[4:] is the payload).
// A length over the limit gives *FrameTooLargeError, a negative one ErrBadLength; a
// stream that ends inside a frame gives io.ErrUnexpectedEOF, and one that ends between
// frames io.EOF.
func (f *FrameReader) Next() ([]byte, error) {
	f.Release()
	hdr, err := f.br.Peek(4)
	if err != nil {
		if len(hdr) > 0 && errors.Is(err, io.EOF) {
			return nil, io.ErrUnexpectedEOF
		}
		return nil, err
	}
	n := int32(binary.BigEndian.Uint32(hdr))
	if n < 0 {
		return nil, ErrBadLength
	}
	if int64(n) > int64(f.max) {
		return nil, &FrameTooLargeError{Length: int64(n), Limit: f.max}
	}
	size := 4 + int(n)
	if size <= f.br.Size() {
		b, err := f.br.Peek(size)
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		f.pending = size
		return b, nil
	}
	f.big = getBuf(size)
	b := (*f.big)[:size]
	if _, err := io.ReadFull(f.br, b); err != nil {
		f.Release()
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return b, nil
}

// NextFrame splits the first whole frame (length prefix included) off data, for a relay
// that reads into its own buffers. While data holds only part of a frame, frame is nil and
// need is the size the whole frame will have (4 while even the length is incomplete).
// Lengths are checked as FrameReader.Next checks them, against max (DefaultMaxFrame when
// max <= 0), before anything is allocated.
func NextFrame(data []byte, max int) (frame []byte, need int, err error) {
	if len(data) < 4 {
		return nil, 4, nil
	}
	if max <= 0 {
		max = DefaultMaxFrame
	}
	n := int32(binary.BigEndian.Uint32(data))
	if n < 0 {
		return nil, 0, ErrBadLength
	}
	if int64(n) > int64(max) {
		return nil, 0, &FrameTooLargeError{Length: int64(n), Limit: max}
	}
	size := 4 + int(n)
	if len(data) < size {
		return nil, size, nil
	}
	return data[:size:size], size, nil
}

// Release gives back the last frame's memory; the slice from Next is invalid after it.
func (f *FrameReader) Release() {
	if f.pending > 0 {
		f.br.Discard(f.pending)
		f.pending = 0
	}
	if f.big != nil {
		putBuf(f.big)
		f.big = nil
	}
}

// Large frames come from size-classed pools (powers of two from 64 KiB) so that a 1 MB
// value costs no allocation at steady state.
var bigPools [6]sync.Pool // 128K, 256K, 512K, 1M, 2M, 4M

func poolIndex(size int) int {
	c := 128 << 10
	for i := range bigPools {
		if size <= c {
			return i
		}
		c <<= 1
	}
	return -1
}

func getBuf(size int) *[]byte {
	i := poolIndex(size)
	if i < 0 {
		b := make([]byte, size)
		return &b
	}
	if p, ok := bigPools[i].Get().(*[]byte); ok {
		return p
	}
	b := make([]byte, (128<<10)<<i)
	return &b
}

func putBuf(p *[]byte) {
	if i := poolIndex(cap(*p)); i >= 0 && cap(*p) == (128<<10)<<i {
		bigPools[i].Put(p)
	}
}
