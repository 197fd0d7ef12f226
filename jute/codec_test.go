package jute

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
)

func sampleRecords() map[string]Record {
	acl := []ACL{{Perms: PermAll, ID: ID{"world", "anyone"}}, {Perms: PermRead, ID: ID{"digest", "u:x"}}}
	stat := Stat{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}
	return map[string]Record{
		"ConnectRequest/ro":   &ConnectRequest{0, 42, 30000, 0x1234, make([]byte, 16), true, true},
		"ConnectRequest/noro": &ConnectRequest{0, 0, 4000, 0, make([]byte, 16), false, false},
		"ConnectResponse":     &ConnectResponse{0, 4000, 99, []byte("0123456789abcdef"), false, true},
		"WatcherEvent":        &WatcherEvent{EventNodeDeleted, StateSyncConnected, "/a"},
		"AuthPacket":          &AuthPacket{0, "digest", []byte("u:p")},
		"SetWatches":          &SetWatches{7, []string{"/a"}, []string{}, nil},
		"SetWatches2":         &SetWatches2{7, []string{"/a"}, nil, []string{"/b", "/c"}, []string{}, []string{"/r"}},
		"Create":              &CreateRequest{"/x", []byte("v"), acl, ModeEphemeralSequential},
		"CreateNullData":      &CreateRequest{"/x", nil, acl, ModePersistent},
		"CreateTTL":           &CreateTTLRequest{CreateRequest{"/t", []byte{}, acl, ModePersistentWithTTL}, 5000},
		"GetData":             &GetDataRequest{"/x", true},
		"Delete":              &DeleteRequest{"/x", -1},
		"SetData":             &SetDataRequest{"/x", []byte("z"), 3},
		"SetACL":              &SetACLRequest{"/x", acl, 1},
		"Path":                &PathRequest{"/p"},
		"Reconfig":            &ReconfigRequest{nil, []byte("3"), nil, -1},
		"AddWatch":            &AddWatchRequest{"/w", AddWatchPersistentRecursive},
		"SASL":                &SASLToken{[]byte{1, 2}},
		"Create2Response":     &Create2Response{"/x0000000001", stat},
		"Stat":                &StatResponse{stat},
		"GetDataResponse":     &GetDataResponse{[]byte("v"), stat},
		"GetACLResponse":      &GetACLResponse{acl, stat},
		"Children":            &StringsResponse{[]string{"a", "b"}},
		"Children2":           &GetChildren2Response{[]string{}, stat},
		"Int":                 &IntResponse{12},
		"WhoAmI":              &WhoAmIResponse{[]ClientInfo{{"ip", "127.0.0.1"}}},
		"RequestHeader":       &RequestHeader{5, OpMulti},
		"ReplyHeader":         &ReplyHeader{-1, -1, ErrNoNode},
		"Multi": &MultiRequest{Ops: []MultiOp{
			{MultiHeader{OpCreate, false, -1}, &CreateRequest{"/m", []byte{}, acl, 0}},
			{MultiHeader{OpCheck, false, -1}, &CheckVersionRequest{"/m", 0}},
			{MultiHeader{OpDelete, false, -1}, &DeleteRequest{"/m", -1}},
		}, End: MultiEnd},
		"MultiResponse": &MultiResponse{Results: []MultiResult{
			{MultiHeader{OpError, false, int32(ErrOK)}, &ErrorResponse{0}},
			{MultiHeader{OpError, false, int32(ErrNoNode)}, &ErrorResponse{int32(ErrNoNode)}},
			{MultiHeader{OpDelete, false, 0}, nil},
			{MultiHeader{OpCreate2, false, 0}, &Create2Response{"/m", stat}},
		}, End: MultiEnd},
	}
}

func TestRoundTrip(t *testing.T) {
	for name, r := range sampleRecords() {
		b, err := Encode(nil, r)
		if err != nil {
			t.Fatalf("%s: encode: %v", name, err)
		}
		fresh := reflect.New(reflect.TypeOf(r).Elem()).Interface().(Record)
		if err := Decode(b, fresh); err != nil {
			t.Fatalf("%s: decode: %v", name, err)
		}
		if !reflect.DeepEqual(r, fresh) {
			t.Errorf("%s: round trip\n got %#v\nwant %#v", name, fresh, r)
		}
		again, _ := Encode(nil, fresh)
		if !bytes.Equal(b, again) {
			t.Errorf("%s: re-encode differs", name)
		}
		// Every proper prefix must fail cleanly, never panic, never succeed silently
		// (except ConnectRequest/Response without the optional byte).
		for i := 0; i < len(b); i++ {
			fresh := reflect.New(reflect.TypeOf(r).Elem()).Interface().(Record)
			err := Decode(b[:i], fresh)
			if err == nil && !strings.HasPrefix(name, "Connect") {
				t.Errorf("%s: prefix %d/%d decoded without error", name, i, len(b))
			}
		}
	}
}

func TestConnectRequestReadOnlyOptional(t *testing.T) {
	full, _ := Encode(nil, &ConnectRequest{Passwd: make([]byte, 16), ReadOnly: false, HasReadOnly: true})
	if len(full) != 45 {
		t.Fatalf("with readOnly: %d bytes, want 45", len(full))
	}
	var r ConnectRequest
	if err := Decode(full[:44], &r); err != nil || r.HasReadOnly {
		t.Fatalf("44-byte request: %v, HasReadOnly=%v", err, r.HasReadOnly)
	}
	if err := Decode(full, &r); err != nil || !r.HasReadOnly {
		t.Fatalf("45-byte request: %v, HasReadOnly=%v", err, r.HasReadOnly)
	}
}

func TestDecodeRejectsBadLengths(t *testing.T) {
	// A string claiming 2^31-1 bytes must fail before any allocation of that size.
	b := AppendInt(nil, 0x7fffffff)
	var p PathRequest
	if err := Decode(b, &p); !errors.Is(err, ErrBadLength) {
		t.Fatalf("huge string: %v", err)
	}
	// A vector claiming a million strings in 8 bytes.
	b = AppendInt(nil, 1_000_000)
	b = append(b, 0, 0, 0, 0)
	var s StringsResponse
	if err := Decode(b, &s); !errors.Is(err, ErrBadLength) {
		t.Fatalf("huge vector: %v", err)
	}
	b = AppendInt(nil, -2)
	if err := Decode(b, &p); !errors.Is(err, ErrBadLength) {
		t.Fatalf("negative length: %v", err)
	}
	if err := Decode(append(AppendString(nil, "/a"), 9), &p); !errors.Is(err, ErrTrailingBytes) {
		t.Fatalf("trailing: %v", err)
	}
	var m MultiRequest
	if err := Decode((&MultiHeader{Type: 77}).Append(nil), &m); !errors.Is(err, ErrUnknownOpCode) {
		t.Fatalf("multi with unknown op: %v", err)
	}
}

func TestHeadersParse(t *testing.T) {
	h, err := ParseRequestHeader(AppendInt(AppendInt(nil, -8), int32(OpSetWatches)))
	if err != nil || h.Xid != XidSetWatches || h.Type != OpSetWatches {
		t.Fatalf("%+v %v", h, err)
	}
	if _, err := ParseRequestHeader(make([]byte, 7)); !errors.Is(err, ErrShortBuffer) {
		t.Fatal(err)
	}
	rh := ReplyHeader{Xid: 3, Zxid: 0x100000002, Err: ErrNodeExists}
	got, err := ParseReplyHeader(rh.Append(nil))
	if err != nil || got != rh {
		t.Fatalf("%+v %v", got, err)
	}
	if _, err := ParseReplyHeader(make([]byte, 15)); !errors.Is(err, ErrShortBuffer) {
		t.Fatal(err)
	}
}

func TestFrameReader(t *testing.T) {
	small := AppendFrame(nil, &RequestHeader{1, OpGetData}, &GetDataRequest{"/a", false})
	big := AppendFrame(nil, &RequestHeader{2, OpSetData}, &SetDataRequest{"/b", bytes.Repeat([]byte{7}, 900_000), -1})
	medium := AppendFrame(nil, &RequestHeader{3, OpSetData}, &SetDataRequest{"/c", bytes.Repeat([]byte{8}, 5000), -1})
	want := [][]byte{small, big, small, medium, medium, small}
	stream := bytes.Join(want, nil)
	// Each buffer size sends frames down both paths: views into the buffer, and copies
	// into pooled buffers for frames bigger than it.
	for _, size := range []int{16, 4096, DefaultReadBuffer} {
		fr := NewFrameReaderSize(bytes.NewReader(stream), 0, size)
		for i, w := range want {
			got, err := fr.Next()
			if err != nil {
				t.Fatalf("buffer %d, frame %d: %v", size, i, err)
			}
			if !bytes.Equal(got, w) {
				t.Fatalf("buffer %d, frame %d differs (%d vs %d bytes)", size, i, len(got), len(w))
			}
		}
		if _, err := fr.Next(); err != io.EOF {
			t.Fatalf("buffer %d, end: %v", size, err)
		}
	}

	fr := NewFrameReader(bytes.NewReader(AppendInt(nil, 0x7fffffff)), 0)
	_, err := fr.Next()
	var tl *FrameTooLargeError
	if !errors.As(err, &tl) || tl.Length != 0x7fffffff || tl.Limit != DefaultMaxFrame {
		t.Fatalf("2^31-1: %v", err)
	}
	fr = NewFrameReader(bytes.NewReader(AppendInt(nil, -5)), 0)
	if _, err := fr.Next(); !errors.Is(err, ErrBadLength) {
		t.Fatalf("negative: %v", err)
	}
	fr = NewFrameReader(bytes.NewReader(small[:len(small)-1]), 0)
	if _, err := fr.Next(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("half frame: %v", err)
	}
	fr = NewFrameReader(bytes.NewReader(big[:500_000]), 0)
	if _, err := fr.Next(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("half big frame: %v", err)
	}
	fr = NewFrameReader(bytes.NewReader([]byte{0, 0}), 0)
	if _, err := fr.Next(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("half length: %v", err)
	}
}

// TestNextFrame splits the same stream as TestFrameReader, fed a few bytes at a time as a
// relay's reads deliver it, and checks the limits.
func TestNextFrame(t *testing.T) {
	small := AppendFrame(nil, &RequestHeader{1, OpGetData}, &GetDataRequest{"/a", false})
	big := AppendFrame(nil, &RequestHeader{2, OpSetData}, &SetDataRequest{"/b", bytes.Repeat([]byte{7}, 900_000), -1})
	want := [][]byte{small, big, small}
	stream := bytes.Join(want, nil)
	for _, chunk := range []int{1, 3, 1000, len(stream)} {
		var pending []byte
		var got [][]byte
		for off := 0; off < len(stream); off += chunk {
			pending = append(pending, stream[off:min(off+chunk, len(stream))]...)
			for {
				frame, need, err := NextFrame(pending, 0)
				if err != nil {
					t.Fatalf("chunk %d: %v", chunk, err)
				}
				if frame == nil {
					if need <= len(pending) {
						t.Fatalf("chunk %d: need %d with %d pending", chunk, need, len(pending))
					}
					break
				}
				got = append(got, append([]byte(nil), frame...))
				pending = pending[len(frame):]
			}
		}
		if len(got) != len(want) || len(pending) != 0 {
			t.Fatalf("chunk %d: %d frames, %d bytes left", chunk, len(got), len(pending))
		}
		for i := range want {
			if !bytes.Equal(got[i], want[i]) {
				t.Fatalf("chunk %d: frame %d differs", chunk, i)
			}
		}
	}
	if _, need, _ := NextFrame(big[:10], 0); need != len(big) {
		t.Fatalf("need %d, want %d", need, len(big))
	}
	var tl *FrameTooLargeError
	if _, _, err := NextFrame(AppendInt(nil, 0x7fffffff), 0); !errors.As(err, &tl) || tl.Limit != DefaultMaxFrame {
		t.Fatalf("2^31-1: %v", err)
	}
	if _, _, err := NextFrame(AppendInt(nil, 101), 100); !errors.As(err, &tl) {
		t.Fatalf("over a limit of 100: %v", err)
	}
	if _, _, err := NextFrame(AppendInt(nil, -5), 0); !errors.Is(err, ErrBadLength) {
		t.Fatalf("negative: %v", err)
	}
}

func TestFourLetterWord(t *testing.T) {
	for _, w := range FourLetterWords {
		if got, ok := FourLetterWord([]byte(w)); !ok || got != w {
			t.Errorf("%s: %q %v", w, got, ok)
		}
	}
	if len(FourLetterWords) != 18 {
		t.Errorf("%d words, ZooKeeper has 18", len(FourLetterWords))
	}
	for _, b := range [][]byte{AppendInt(nil, 45), AppendInt(nil, DefaultMaxFrame), []byte("RUOK"), []byte("kill"), []byte("ru")} {
		if w, ok := FourLetterWord(b); ok {
			t.Errorf("%q taken for %s", b, w)
		}
	}
}

func TestMultiChecksOnly(t *testing.T) {
	body := func(ops ...MultiOp) []byte {
		return (&MultiRequest{Ops: ops, End: MultiEnd}).Append(nil)
	}
	check := MultiOp{MultiHeader{OpCheck, false, -1}, &CheckVersionRequest{"/r0", -1}}
	set := MultiOp{MultiHeader{OpSetData, false, -1}, &SetDataRequest{"/r0", []byte("x"), -1}}
	for _, c := range []struct {
		name string
		body []byte
		want bool
	}{
		{"one check", body(check), true},
		{"two checks", body(check, check), true},
		{"a check and a write", body(check, set), false},
		{"a write", body(set), false},
		{"empty", body(), false},
		{"truncated", body(check)[:10], false},
		{"bytes after the end", append(body(check), 0), false},
	} {
		if got := MultiChecksOnly(c.body); got != c.want {
			t.Errorf("%s: got %v, want %v", c.name, got, c.want)
		}
	}
}

func TestRequestPath(t *testing.T) {
	multi := (&MultiHeader{Type: OpSetData}).Append(nil)
	multi = (&SetDataRequest{Path: "/m/first", Data: []byte("x"), Version: -1}).Append(multi)
	multi = (&MultiHeader{Type: OpDelete}).Append(multi)
	multi = (&DeleteRequest{Path: "/m/second", Version: -1}).Append(multi)
	multi = (&MultiHeader{Type: -1, Done: true, Err: -1}).Append(multi)
	for _, c := range []struct {
		op   OpCode
		body []byte
		want string
		ok   bool
	}{
		{OpGetData, (&GetDataRequest{Path: "/a/b", Watch: true}).Append(nil), "/a/b", true},
		{OpCreate2, (&CreateRequest{Path: "/c", Data: []byte("d")}).Append(nil), "/c", true},
		{OpMulti, multi, "/m/first", true},
		{OpPing, nil, "", false},
		{OpSetWatches, (&SetWatches{}).Append(nil), "", false},
		{OpGetData, []byte{0, 0, 0, 9, '/'}, "", false}, // length past the body
		{OpGetData, []byte{0xff, 0xff, 0xff, 0xff}, "", false},
		{OpMulti, (&MultiHeader{Type: OpMulti}).Append(nil), "", false},
	} {
		got, ok := RequestPath(c.op, c.body)
		if string(got) != c.want || ok != c.ok {
			t.Errorf("RequestPath(%v): %q %v, want %q %v", c.op, got, ok, c.want, c.ok)
		}
	}
}
