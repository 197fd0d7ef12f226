package jute

import (
	"bytes"
	"io"
	"testing"
)

var sinkReq RequestHeader
var sinkRep ReplyHeader

func BenchmarkParseRequestHeader(b *testing.B) {
	frame := AppendFrame(nil, &RequestHeader{7, OpGetData}, &GetDataRequest{"/bench", false})
	b.ReportAllocs()
	for b.Loop() {
		sinkReq, _ = ParseRequestHeader(frame[4:])
	}
}

func BenchmarkParseReplyHeader(b *testing.B) {
	frame := AppendFrame(nil, &ReplyHeader{7, 0x100000005, 0}, &GetDataResponse{[]byte("v"), Stat{}})
	b.ReportAllocs()
	for b.Loop() {
		sinkRep, _ = ParseReplyHeader(frame[4:])
	}
}

// loopReader replays the same bytes forever, so the frame reader's cost is measured
// without refilling a bytes.Reader.
type loopReader struct {
	data []byte
	off  int
}

func (l *loopReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c := copy(p[n:], l.data[l.off:])
		n += c
		l.off = (l.off + c) % len(l.data)
	}
	return n, nil
}

func benchFrames(b *testing.B, value int) {
	frame := AppendFrame(nil, &RequestHeader{7, OpSetData}, &SetDataRequest{"/bench", bytes.Repeat([]byte{1}, value), -1})
	fr := NewFrameReader(&loopReader{data: frame}, 0)
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	for b.Loop() {
		f, err := fr.Next()
		if err != nil {
			b.Fatal(err)
		}
		sinkReq, _ = ParseRequestHeader(f[4:])
	}
}

func BenchmarkFrameReaderSmall(b *testing.B) { benchFrames(b, 100) }
func BenchmarkFrameReaderLarge(b *testing.B) { benchFrames(b, 1000_000) }

var _ io.Reader = (*loopReader)(nil)
