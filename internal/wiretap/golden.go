package wiretap

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/zkgate/zkgate/jute"
)

// A golden file is text: lines starting with '#' are comments, and every other line is
// one frame, "<conn> <dir> <hex bytes>", with dir '>' (to the server) or '<' (to the client).
// The bytes include the 4-byte length prefix.

// Write writes frames in the golden format, after a comment header.
func Write(w io.Writer, header string, frames []Frame) error {
	bw := bufio.NewWriter(w)
	for _, line := range strings.Split(strings.TrimRight(header, "\n"), "\n") {
		fmt.Fprintf(bw, "# %s\n", line)
	}
	for _, f := range frames {
		fmt.Fprintf(bw, "%d %c %s\n", f.Conn, f.Dir, hex.EncodeToString(f.Bytes))
	}
	return bw.Flush()
}

// Read parses a golden file.
func Read(r io.Reader) ([]Frame, error) {
	var frames []Frame
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 8<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) != 3 || len(fields[1]) != 1 || (Dir(fields[1][0]) != ToServer && Dir(fields[1][0]) != ToClient) {
			return nil, fmt.Errorf("line %d: want \"<conn> <'>'|'<'> <hex>\"", n)
		}
		conn, err := strconv.Atoi(fields[0])
		if err != nil {
			return nil, fmt.Errorf("line %d: connection number: %w", n, err)
		}
		b, err := hex.DecodeString(fields[2])
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		frames = append(frames, Frame{Conn: conn, Dir: Dir(fields[1][0]), Bytes: b})
	}
	return frames, sc.Err()
}

// Coverage counts what a set of frames holds.
type Coverage struct {
	Requests      map[jute.OpCode]int    // requests by opcode (pings, auth and setWatches included)
	Errors        map[jute.ErrCode]int   // non-zero error codes in reply headers
	Events        map[jute.EventType]int // watch notifications by event type
	MultiFailures int                    // multi replies holding a failed op
	Connects      int                    // ConnectRequests
}

// Has reports whether at least one request of each opcode was seen.
func (c *Coverage) Has(ops ...jute.OpCode) []jute.OpCode {
	var missing []jute.OpCode
	for _, op := range ops {
		if c.Requests[op] == 0 {
			missing = append(missing, op)
		}
	}
	return missing
}

// Check decodes every frame as the record it must be (the handshake first on each
// connection, then request and reply headers with the body their opcode calls for,
// replies matched to requests by xid) and checks that re-encoding the decoded records
// gives the same bytes. It returns what it saw, and the first frame that fails.
func Check(frames []Frame) (*Coverage, error) {
	cov := &Coverage{Requests: map[jute.OpCode]int{}, Errors: map[jute.ErrCode]int{}, Events: map[jute.EventType]int{}}
	type connState struct {
		connected, answered bool
		pending             map[int32]jute.OpCode
	}
	conns := map[int]*connState{}
	for i, f := range frames {
		st := conns[f.Conn]
		if st == nil {
			st = &connState{pending: map[int32]jute.OpCode{}}
			conns[f.Conn] = st
		}
		if err := checkFrame(f, st.connected, st.answered, st.pending, cov); err != nil {
			return cov, fmt.Errorf("frame %d (conn %d %c %x): %w", i, f.Conn, f.Dir, f.Bytes, err)
		}
		if f.Dir == ToServer {
			st.connected = true
		} else {
			st.answered = true
		}
	}
	return cov, nil
}

func checkFrame(f Frame, connected, answered bool, pending map[int32]jute.OpCode, cov *Coverage) error {
	if len(f.Bytes) < 4 || int(uint32(f.Bytes[0])<<24|uint32(f.Bytes[1])<<16|uint32(f.Bytes[2])<<8|uint32(f.Bytes[3])) != len(f.Bytes)-4 {
		return fmt.Errorf("length prefix does not match the frame")
	}
	payload := f.Bytes[4:]
	var recs []jute.Record
	switch {
	case f.Dir == ToServer && !connected:
		recs = []jute.Record{new(jute.ConnectRequest)}
		cov.Connects++
	case f.Dir == ToClient && !answered:
		recs = []jute.Record{new(jute.ConnectResponse)}
	case f.Dir == ToServer:
		h, err := jute.ParseRequestHeader(payload)
		if err != nil {
			return err
		}
		body, err := jute.NewRequestBody(h.Type)
		if err != nil {
			return fmt.Errorf("request %v: %w", h.Type, err)
		}
		pending[h.Xid] = h.Type
		cov.Requests[h.Type]++
		recs = []jute.Record{new(jute.RequestHeader), body}
	default:
		h, err := jute.ParseReplyHeader(payload)
		if err != nil {
			return err
		}
		op := jute.OpNotification
		if h.Xid != jute.XidNotification {
			var ok bool
			if op, ok = pending[h.Xid]; !ok {
				return fmt.Errorf("reply xid %d answers no request", h.Xid)
			}
			delete(pending, h.Xid)
		}
		var body jute.Record = jute.Empty{}
		if h.Err != 0 {
			cov.Errors[h.Err]++
		}
		if len(payload) > 16 || h.Err == 0 { // an error reply carries no body
			if body, err = jute.NewResponseBody(op); err != nil {
				return fmt.Errorf("reply to %v: %w", op, err)
			}
		}
		if err := decodeAll(payload, []jute.Record{new(jute.ReplyHeader), body}); err != nil {
			return err
		}
		countReply(body, cov)
		return nil
	}
	return decodeAll(payload, recs)
}

// decodeAll decodes payload as recs in sequence, all bytes used, then re-encodes them
// and compares.
func decodeAll(payload []byte, recs []jute.Record) error {
	d := jute.NewDecoder(payload)
	for _, r := range recs {
		r.Read(d)
	}
	if err := d.Finish(); err != nil {
		return fmt.Errorf("decode %T: %w", recs[len(recs)-1], err)
	}
	var enc []byte
	for _, r := range recs {
		enc = r.Append(enc)
	}
	if !bytes.Equal(enc, payload) {
		return fmt.Errorf("re-encoded %T differs:\n got  %x\n want %x", recs[len(recs)-1], enc, payload)
	}
	return nil
}

func countReply(body jute.Record, cov *Coverage) {
	switch b := body.(type) {
	case *jute.WatcherEvent:
		cov.Events[b.Type]++
	case *jute.MultiResponse:
		for _, r := range b.Results {
			if r.Header.Type == jute.OpError && r.Header.Err != 0 {
				cov.MultiFailures++
				break
			}
		}
	}
}
