package jute

import (
	"errors"
	"fmt"
)

var (
	// ErrShortBuffer means a record needs more bytes than the input holds.
	ErrShortBuffer = errors.New("jute: short buffer")
	// ErrBadLength means a length or count is negative (other than -1 for null) or larger
	// than the bytes left could hold.
	ErrBadLength = errors.New("jute: bad length")
	// ErrTrailingBytes means a record decoded but bytes were left over.
	ErrTrailingBytes = errors.New("jute: trailing bytes after record")
	// ErrUnknownOpCode means no body type is known for an opcode.
	ErrUnknownOpCode = errors.New("jute: unknown opcode")
)

// FrameTooLargeError reports a frame length over the configured limit. It is returned
// before anything is allocated for the frame.
type FrameTooLargeError struct {
	Length int64 // the length the peer announced
	Limit  int   // the largest length accepted
}

func (e *FrameTooLargeError) Error() string {
	return fmt.Sprintf("jute: frame length %d exceeds limit %d", e.Length, e.Limit)
}
