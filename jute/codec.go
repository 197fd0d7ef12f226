package jute

import (
	"encoding/binary"
	"math"
)

// Record is a jute record. Append writes its wire form after dst; Read fills it from d,
// leaving d's error set on bad input.
type Record interface {
	Append(dst []byte) []byte
	Read(d *Decoder)
}

// Decode fills r from src, which must hold exactly one record.
func Decode(src []byte, r Record) error {
	d := Decoder{buf: src}
	r.Read(&d)
	return d.Finish()
}

// Encode appends r's wire form to dst. The error is for API symmetry; records whose
// fields fit int32 lengths always encode.
func Encode(dst []byte, r Record) ([]byte, error) { return r.Append(dst), nil }

// Decoder reads jute primitives from a byte slice. The first error sticks: later reads
// return zero values, so a record's Read needs no error checks of its own.
type Decoder struct {
	buf []byte
	off int
	err error
}

// NewDecoder returns a decoder over src.
func NewDecoder(src []byte) *Decoder { return &Decoder{buf: src} }

// Err is the first error met, if any.
func (d *Decoder) Err() error { return d.err }

// Remaining is the number of bytes not yet read.
func (d *Decoder) Remaining() int { return len(d.buf) - d.off }

// Finish returns the first error, or ErrTrailingBytes when bytes are left.
func (d *Decoder) Finish() error {
	if d.err == nil && d.off != len(d.buf) {
		return ErrTrailingBytes
	}
	return d.err
}

func (d *Decoder) fail(err error) {
	if d.err == nil {
		d.err = err
	}
	d.off = len(d.buf)
}

func (d *Decoder) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n > len(d.buf)-d.off {
		d.fail(ErrShortBuffer)
		return nil
	}
	b := d.buf[d.off : d.off+n]
	d.off += n
	return b
}

// Int reads a big-endian int32.
func (d *Decoder) Int() int32 {
	if b := d.take(4); b != nil {
		return int32(binary.BigEndian.Uint32(b))
	}
	return 0
}

// Long reads a big-endian int64.
func (d *Decoder) Long() int64 {
	if b := d.take(8); b != nil {
		return int64(binary.BigEndian.Uint64(b))
	}
	return 0
}

// Bool reads one byte; any non-zero value is true, as in Java's DataInput.
func (d *Decoder) Bool() bool {
	if b := d.take(1); b != nil {
		return b[0] != 0
	}
	return false
}

// length reads an int32 length or count; null (-1) gives -1. A count times minSize must
// fit in the bytes left, so no caller allocates more than the input could describe.
func (d *Decoder) length(minSize int) int {
	n := d.Int()
	if d.err != nil {
		return 0
	}
	if n == -1 {
		return -1
	}
	if n < 0 || int64(n)*int64(minSize) > int64(d.Remaining()) {
		d.fail(ErrBadLength)
		return 0
	}
	return int(n)
}

// Buffer reads a length-prefixed byte string into a new slice; null gives nil, empty a
// non-nil empty slice.
func (d *Decoder) Buffer() []byte {
	n := d.length(1)
	if n < 0 {
		return nil
	}
	b := d.take(n)
	if b == nil {
		return nil
	}
	return append(make([]byte, 0, n), b...)
}

// String reads a ustring. Null reads as "".
func (d *Decoder) String() string {
	n := d.length(1)
	if n <= 0 {
		return ""
	}
	return string(d.take(n))
}

// Count reads a vector's element count; -1 (null) is returned as is. minSize is the
// smallest wire size of one element.
func (d *Decoder) Count(minSize int) int { return d.length(minSize) }

// Strings reads a vector<ustring>; null gives nil, empty a non-nil empty slice.
func (d *Decoder) Strings() []string {
	n := d.Count(4)
	if n < 0 {
		return nil
	}
	out := make([]string, n)
	for i := range out {
		out[i] = d.String()
	}
	return out
}

// AppendInt appends a big-endian int32.
func AppendInt(dst []byte, v int32) []byte { return binary.BigEndian.AppendUint32(dst, uint32(v)) }

// AppendLong appends a big-endian int64.
func AppendLong(dst []byte, v int64) []byte { return binary.BigEndian.AppendUint64(dst, uint64(v)) }

// AppendBool appends one byte, 1 or 0.
func AppendBool(dst []byte, v bool) []byte {
	if v {
		return append(dst, 1)
	}
	return append(dst, 0)
}

// AppendBuffer appends a length-prefixed byte string; nil is written as null (-1).
func AppendBuffer(dst []byte, b []byte) []byte {
	if b == nil {
		return AppendInt(dst, -1)
	}
	dst = AppendInt(dst, int32(min(len(b), math.MaxInt32)))
	return append(dst, b...)
}

// AppendString appends a ustring (never null).
func AppendString(dst []byte, s string) []byte {
	dst = AppendInt(dst, int32(min(len(s), math.MaxInt32)))
	return append(dst, s...)
}

// AppendStrings appends a vector<ustring>; nil is written as null (-1).
func AppendStrings(dst []byte, v []string) []byte {
	if v == nil {
		return AppendInt(dst, -1)
	}
	dst = AppendInt(dst, int32(len(v)))
	for _, s := range v {
		dst = AppendString(dst, s)
	}
	return dst
}
