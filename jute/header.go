package jute

import "encoding/binary"

// RequestHeaderLen and ReplyHeaderLen are the wire sizes of the headers.
const (
	RequestHeaderLen = 8
	ReplyHeaderLen   = 16
)

// RequestHeader starts every request after the handshake.
type RequestHeader struct {
	Xid  int32
	Type OpCode
}

// Append implements Record.
func (h *RequestHeader) Append(dst []byte) []byte {
	return AppendInt(AppendInt(dst, h.Xid), int32(h.Type))
}

// Read implements Record.
func (h *RequestHeader) Read(d *Decoder) { h.Xid, h.Type = d.Int(), OpCode(d.Int()) }

// ParseRequestHeader reads the header at the start of a request payload. It allocates
// nothing; it is the relay's hot path.
func ParseRequestHeader(p []byte) (RequestHeader, error) {
	if len(p) < RequestHeaderLen {
		return RequestHeader{}, ErrShortBuffer
	}
	return RequestHeader{
		Xid:  int32(binary.BigEndian.Uint32(p)),
		Type: OpCode(int32(binary.BigEndian.Uint32(p[4:]))),
	}, nil
}

// ReplyHeader starts every reply after the handshake. When Err != 0 no body follows.
type ReplyHeader struct {
	Xid  int32
	Zxid int64
	Err  ErrCode
}

// Append implements Record.
func (h *ReplyHeader) Append(dst []byte) []byte {
	return AppendInt(AppendLong(AppendInt(dst, h.Xid), h.Zxid), int32(h.Err))
}

// Read implements Record.
func (h *ReplyHeader) Read(d *Decoder) { h.Xid, h.Zxid, h.Err = d.Int(), d.Long(), ErrCode(d.Int()) }

// ParseReplyHeader reads the header at the start of a reply payload without allocating.
func ParseReplyHeader(p []byte) (ReplyHeader, error) {
	if len(p) < ReplyHeaderLen {
		return ReplyHeader{}, ErrShortBuffer
	}
	return ReplyHeader{
		Xid:  int32(binary.BigEndian.Uint32(p)),
		Zxid: int64(binary.BigEndian.Uint64(p[4:])),
		Err:  ErrCode(int32(binary.BigEndian.Uint32(p[12:]))),
	}, nil
}

// AppendFrame appends a frame (int32 length, then the record) to dst, back-filling the
// length once the record is written.
func AppendFrame(dst []byte, recs ...Record) []byte {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0)
	for _, r := range recs {
		dst = r.Append(dst)
	}
	binary.BigEndian.PutUint32(dst[start:], uint32(len(dst)-start-4))
	return dst
}
