package jute

import "encoding/binary"

// MultiHeader precedes each op of a multi request or result, and ends the list with
// Done set (conventionally {-1, true, -1}).
type MultiHeader struct {
	Type OpCode
	Done bool
	Err  int32
}

// Append implements Record.
func (h *MultiHeader) Append(dst []byte) []byte {
	return AppendInt(AppendBool(AppendInt(dst, int32(h.Type)), h.Done), h.Err)
}

// Read implements Record.
func (h *MultiHeader) Read(d *Decoder) { h.Type, h.Done, h.Err = OpCode(d.Int()), d.Bool(), d.Int() }

// MultiEnd is the header that ends every multi request and result.
var MultiEnd = MultiHeader{Type: OpError, Done: true, Err: -1}

// MultiOp is one op of a multi or multiRead request: its header and its request body.
type MultiOp struct {
	Header MultiHeader
	Body   Record
}

// MultiRequest is the body of multi (14) and multiRead (22).
type MultiRequest struct {
	Ops []MultiOp
	End MultiHeader // the terminating header as it was on the wire
}

// Append implements Record.
func (r *MultiRequest) Append(dst []byte) []byte {
	for i := range r.Ops {
		dst = r.Ops[i].Header.Append(dst)
		dst = r.Ops[i].Body.Append(dst)
	}
	end := r.End
	if !end.Done {
		end = MultiEnd
	}
	return end.Append(dst)
}

// Read implements Record.
func (r *MultiRequest) Read(d *Decoder) {
	r.Ops = r.Ops[:0]
	readMulti(d, &r.End, func(h MultiHeader) bool {
		body, err := multiOpRequestBody(h.Type)
		if err != nil {
			d.fail(err)
			return false
		}
		body.Read(d)
		r.Ops = append(r.Ops, MultiOp{Header: h, Body: body})
		return true
	})
}

// readMulti reads headers until one is Done, calling op for each other one; the op count
// is bounded by the bytes left, as each header takes 9 of them.
func readMulti(d *Decoder, end *MultiHeader, op func(MultiHeader) bool) {
	for d.err == nil {
		var h MultiHeader
		h.Read(d)
		if d.err != nil {
			return
		}
		if h.Done {
			*end = h
			return
		}
		if !op(h) {
			return
		}
	}
}

// multiOpRequestBody is NewRequestBody restricted to the ops a multi or multiRead may hold.
func multiOpRequestBody(op OpCode) (Record, error) {
	switch op {
	case OpCreate, OpCreate2, OpCreateContainer, OpCreateTTL, OpDelete, OpCheck, OpSetData, OpGetChildren, OpGetData:
		return NewRequestBody(op)
	}
	return nil, ErrUnknownOpCode
}

// MultiResult is one op's outcome in a multi reply. Header.Type is the op, or OpError
// (-1) with an ErrorResponse body when it failed.
type MultiResult struct {
	Header MultiHeader
	Body   Record // nil for delete and check
}

// MultiResponse is the reply body of multi and multiRead. A failed multi has
// ReplyHeader.Err == 0 and an OpError result per op.
type MultiResponse struct {
	Results []MultiResult
	End     MultiHeader
}

// Append implements Record.
func (r *MultiResponse) Append(dst []byte) []byte {
	for i := range r.Results {
		dst = r.Results[i].Header.Append(dst)
		if r.Results[i].Body != nil {
			dst = r.Results[i].Body.Append(dst)
		}
	}
	end := r.End
	if !end.Done {
		end = MultiEnd
	}
	return end.Append(dst)
}

// Read implements Record.
func (r *MultiResponse) Read(d *Decoder) {
	r.Results = r.Results[:0]
	readMulti(d, &r.End, func(h MultiHeader) bool {
		var body Record
		switch h.Type {
		case OpCreate:
			body = new(CreateResponse)
		case OpCreate2, OpCreateTTL, OpCreateContainer:
			body = new(Create2Response)
		case OpDelete, OpCheck:
		case OpSetData:
			body = new(SetDataResponse)
		case OpGetChildren:
			body = new(GetChildrenResponse)
		case OpGetData:
			body = new(GetDataResponse)
		case OpError:
			body = new(ErrorResponse)
		default:
			d.fail(ErrUnknownOpCode)
			return false
		}
		if body != nil {
			body.Read(d)
		}
		r.Results = append(r.Results, MultiResult{Header: h, Body: body})
		return true
	})
}

// MultiChecksOnly reports whether a multi request body holds check operations only (one
// or more) and nothing after its end header: such a multi changes nothing (clients use it
// as a barrier through the leader before a read), so sending it again is as safe as
// sending a read again.
func MultiChecksOnly(body []byte) bool {
	d := NewDecoder(body)
	for n := 0; ; n++ {
		var h MultiHeader
		h.Read(d)
		if d.Err() != nil {
			return false
		}
		if h.Done {
			return n > 0 && d.Remaining() == 0
		}
		if h.Type != OpCheck {
			return false
		}
		var c CheckVersionRequest
		c.Read(d)
	}
}

// RequestPath returns the path a request body names, without copying: the body's first
// field for every request on a path, and the first operation's path for a multi. ok is
// false for requests without a path (ping, auth, setWatches, closeSession, ...) and
// bodies too short for their path.
func RequestPath(op OpCode, body []byte) (path []byte, ok bool) {
	switch op {
	case OpMulti, OpMultiRead:
		const multiHeaderLen = 4 + 1 + 4 // type, done, err
		if len(body) < multiHeaderLen || body[4] != 0 {
			return nil, false
		}
		first := OpCode(int32(binary.BigEndian.Uint32(body)))
		if first == OpMulti || first == OpMultiRead {
			return nil, false // not a multi's operation
		}
		return RequestPath(first, body[multiHeaderLen:])
	case OpCreate, OpDelete, OpExists, OpGetData, OpSetData, OpGetACL, OpSetACL, OpGetChildren,
		OpSync, OpGetChildren2, OpCheck, OpCreate2, OpCheckWatches, OpRemoveWatches,
		OpCreateContainer, OpDeleteContainer, OpCreateTTL, OpGetEphemerals,
		OpGetAllChildrenNumber, OpAddWatch:
		if len(body) < 4 {
			return nil, false
		}
		n := int32(binary.BigEndian.Uint32(body))
		if n < 0 || int(n) > len(body)-4 {
			return nil, false
		}
		return body[4 : 4+n], true
	}
	return nil, false
}
