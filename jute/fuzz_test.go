package jute

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// roundTrip checks decode -> encode -> decode gives equal values for a record that
// decoded once; newRec makes an empty record of the same kind.
func roundTrip(t *testing.T, first Record, newRec func() Record) {
	t.Helper()
	enc, err := Encode(nil, first)
	if err != nil {
		t.Fatalf("encode: %v", err)
	}
	second := newRec()
	if err := Decode(enc, second); err != nil {
		t.Fatalf("re-decode of %x: %v", enc, err)
	}
	if !reflect.DeepEqual(first, second) {
		t.Fatalf("round trip changed the value\nfirst  %#v\nsecond %#v", first, second)
	}
}

func opSeed(op OpCode, r Record) []byte {
	return r.Append(binary.BigEndian.AppendUint32(nil, uint32(op)))
}

func addSeeds(f *testing.F) {
	for _, r := range sampleRecords() {
		for _, op := range []OpCode{OpCreate, OpGetData, OpMulti, OpSetWatches, OpWhoAmI, OpGetChildren2, OpAuth} {
			f.Add(opSeed(op, r))
		}
	}
}

// goldenStreams returns the frames of each golden file (../testdata/golden), one slice
// per direction and file, in capture order.
func goldenStreams(f *testing.F) (toServer, toClient [][][]byte) {
	files, _ := filepath.Glob(filepath.Join("..", "testdata", "golden", "*.frames"))
	for _, path := range files {
		data, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		var in, out [][]byte
		for _, line := range strings.Split(string(data), "\n") {
			fields := strings.Fields(line)
			if len(fields) != 3 || strings.HasPrefix(line, "#") {
				continue
			}
			b, err := hex.DecodeString(fields[2])
			if err != nil {
				f.Fatalf("%s: %v", path, err)
			}
			if fields[1] == ">" {
				in = append(in, b)
			} else {
				out = append(out, b)
			}
		}
		toServer, toClient = append(toServer, in), append(toClient, out)
	}
	return toServer, toClient
}

// addGoldenRequests seeds with the opcode and body of every golden request.
func addGoldenRequests(f *testing.F) {
	toServer, _ := goldenStreams(f)
	for _, frames := range toServer {
		for _, fr := range frames[1:] { // frames[0] is the ConnectRequest
			if len(fr) >= 12 {
				f.Add(fr[8:]) // op then body
			}
		}
	}
}

// FuzzRequestBody decodes any bytes as the body of any request opcode.
func FuzzRequestBody(f *testing.F) {
	addSeeds(f)
	addGoldenRequests(f)
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) < 4 {
			return
		}
		op := OpCode(int32(binary.BigEndian.Uint32(in)))
		r, err := NewRequestBody(op)
		if err != nil {
			return
		}
		if Decode(in[4:], r) != nil {
			return
		}
		roundTrip(t, r, func() Record { r2, _ := NewRequestBody(op); return r2 })
	})
}

// FuzzResponseBody decodes any bytes as the reply body for any opcode.
func FuzzResponseBody(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) < 4 {
			return
		}
		op := OpCode(int32(binary.BigEndian.Uint32(in)))
		r, err := NewResponseBody(op)
		if err != nil {
			return
		}
		if Decode(in[4:], r) != nil {
			return
		}
		roundTrip(t, r, func() Record { r2, _ := NewResponseBody(op); return r2 })
	})
}

// FuzzHandshake decodes any bytes as a ConnectRequest and a ConnectResponse; the
// re-encoding must be byte-identical (the readOnly byte is remembered).
func FuzzHandshake(f *testing.F) {
	for _, r := range sampleRecords() {
		f.Add(r.Append(nil))
	}
	toServer, toClient := goldenStreams(f)
	for i := range toServer {
		f.Add(toServer[i][0][4:])
		f.Add(toClient[i][0][4:])
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var req ConnectRequest
		if Decode(in, &req) == nil {
			roundTrip(t, &req, func() Record { return new(ConnectRequest) })
		}
		var resp ConnectResponse
		if Decode(in, &resp) == nil {
			roundTrip(t, &resp, func() Record { return new(ConnectResponse) })
		}
	})
}

// FuzzFrames reads any stream as frames with a small limit, then parses each frame's
// headers: no panic, every frame within the limit, errors typed.
func FuzzFrames(f *testing.F) {
	for _, r := range sampleRecords() {
		f.Add(AppendFrame(nil, &RequestHeader{1, OpCreate}, r))
	}
	toServer, toClient := goldenStreams(f)
	for _, stream := range append(toServer, toClient...) {
		f.Add(bytes.Join(stream, nil))
	}
	f.Add([]byte("ruok"))
	f.Add([]byte{0x7f, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, in []byte) {
		const limit = 512
		fr := NewFrameReader(bytes.NewReader(in), limit)
		for {
			frame, err := fr.Next()
			if err != nil {
				var tl *FrameTooLargeError
				if errors.As(err, &tl) && (tl.Length <= limit || tl.Limit != limit) {
					t.Fatalf("bad FrameTooLargeError %+v", tl)
				}
				return
			}
			if len(frame) < 4 || len(frame)-4 > limit {
				t.Fatalf("frame of %d bytes past limit %d", len(frame), limit)
			}
			ParseRequestHeader(frame[4:])
			ParseReplyHeader(frame[4:])
		}
	})
}
