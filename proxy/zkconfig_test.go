package proxy

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/zkgate/zkgate/jute"
)

var configStat = jute.Stat{Czxid: 0, Mzxid: 0x100000000, Ctime: 0, Mtime: 0, Version: -1, Aversion: -1}

// configFrame is a member's reply to getData /zookeeper/config: data nil is a null buffer.
func configFrame(code jute.ErrCode, data []byte) []byte {
	h := jute.ReplyHeader{Xid: 7, Zxid: 0x100000002, Err: code}
	if code != jute.ErrOK {
		return jute.AppendFrame(nil, &h)
	}
	stat := configStat
	stat.DataLength = int32(len(data))
	return jute.AppendFrame(nil, &h, &jute.GetDataResponse{Data: data, Stat: stat})
}

func TestRewriteConfigReply(t *testing.T) {
	for _, c := range []struct {
		name string
		in   string
		want string // "" when the frame must come back unchanged
	}{
		{"dynamic with client addresses",
			"server.1=127.0.0.1:2888:3888:participant;127.0.0.1:2181\nserver.2=127.0.0.1:2889:3889:participant;127.0.0.1:2182\nserver.3=127.0.0.1:2890:3890:participant;127.0.0.1:2183\nversion=100000000",
			"server.1=127.0.0.1:2888:3888:participant\nserver.2=127.0.0.1:2889:3889:participant\nserver.3=127.0.0.1:2890:3890:participant\nversion=100000000"},
		{"dynamic without client addresses",
			"server.1=127.0.0.1:2888:3888:participant\nserver.2=127.0.0.1:2889:3889:participant\nversion=0", ""},
		{"only some lines with one",
			"server.1=127.0.0.1:2888:3888:participant;127.0.0.1:2181\nserver.2=127.0.0.1:2889:3889:participant\nversion=100000000",
			"server.1=127.0.0.1:2888:3888:participant\nserver.2=127.0.0.1:2889:3889:participant\nversion=100000000"},
		{"observer role, wildcard client address",
			"server.1=10.0.0.1:2888:3888:participant;0.0.0.0:2181\nserver.4=10.0.0.4:2888:3888:observer;0.0.0.0:2181\nversion=200000003",
			"server.1=10.0.0.1:2888:3888:participant\nserver.4=10.0.0.4:2888:3888:observer\nversion=200000003"},
		{"IPv6 client address",
			"server.1=[::1]:2888:3888:participant;[::1]:2181\nversion=100000000",
			"server.1=[::1]:2888:3888:participant\nversion=100000000"},
		{"client port without address",
			"server.1=zk1:2888:3888;2181\n", "server.1=zk1:2888:3888\n"},
		{"several quorum addresses (3.6+)",
			"server.1=10.0.0.1:2888:3888|10.1.0.1:2888:3888:participant;10.0.0.1:2181\nversion=1",
			"server.1=10.0.0.1:2888:3888|10.1.0.1:2888:3888:participant\nversion=1"},
		{"CRLF line ends",
			"server.1=zk1:2888:3888:participant;zk1:2181\r\nversion=1\r\n",
			"server.1=zk1:2888:3888:participant\r\nversion=1\r\n"},
		{"other keys keep their ';'",
			"server.1=zk1:2888:3888;zk1:2181\nserverCnxnFactory=a;b\nfoo=x;y\nversion=1",
			"server.1=zk1:2888:3888\nserverCnxnFactory=a;b\nfoo=x;y\nversion=1"},
		{"version line only", "version=100000000", ""},
		{"empty config", "", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			frame := configFrame(jute.ErrOK, []byte(c.in))
			got := rewriteConfigReply(frame)
			if c.want == "" {
				if &got[0] != &frame[0] || !bytes.Equal(got, frame) {
					t.Fatalf("frame rewritten:\n%q", got)
				}
				return
			}
			if int(binary.BigEndian.Uint32(got)) != len(got)-4 {
				t.Fatalf("length prefix %d, frame %d bytes", binary.BigEndian.Uint32(got), len(got))
			}
			d := jute.NewDecoder(got[4:])
			var h jute.ReplyHeader
			var resp jute.GetDataResponse
			h.Read(d)
			resp.Read(d)
			if err := d.Finish(); err != nil {
				t.Fatalf("rewritten frame does not decode: %v", err)
			}
			if h != (jute.ReplyHeader{Xid: 7, Zxid: 0x100000002}) {
				t.Errorf("header %+v", h)
			}
			if string(resp.Data) != c.want {
				t.Errorf("data\n%q, want\n%q", resp.Data, c.want)
			}
			want := configStat
			want.DataLength = int32(len(c.want))
			if resp.Stat != want {
				t.Errorf("stat %+v, want %+v", resp.Stat, want)
			}
			if !bytes.Equal(frame, configFrame(jute.ErrOK, []byte(c.in))) {
				t.Error("the member's frame was changed in place")
			}
		})
	}
}

func TestRewriteConfigReplyLeavesOthers(t *testing.T) {
	withAddr := []byte("server.1=127.0.0.1:2888:3888:participant;127.0.0.1:2181\nversion=100000000")
	good := configFrame(jute.ErrOK, withAddr)
	badPrefix := bytes.Clone(good[:len(good)-10]) // cut short, prefix still the whole length
	cutShort := bytes.Clone(badPrefix)            // cut short inside the Stat, prefix to match
	binary.BigEndian.PutUint32(cutShort, uint32(len(cutShort)-4))
	trailing := append(bytes.Clone(good), 0, 0, 0, 0)
	binary.BigEndian.PutUint32(trailing, uint32(len(trailing)-4))
	longData := bytes.Clone(good) // the data buffer claims more bytes than the frame has
	binary.BigEndian.PutUint32(longData[4+jute.ReplyHeaderLen:], 1<<20)
	for _, c := range []struct {
		name  string
		frame []byte
	}{
		{"error reply", configFrame(jute.ErrNoNode, nil)},
		{"error code with a body", func() []byte {
			f := bytes.Clone(good)
			code := int32(jute.ErrNoAuth)
			binary.BigEndian.PutUint32(f[4+12:], uint32(code))
			return f
		}()},
		{"null data buffer", configFrame(jute.ErrOK, nil)},
		{"truncated frame", badPrefix},
		{"truncated inside the stat", cutShort},
		{"trailing bytes", trailing},
		{"data length past the frame", longData},
		{"header only", good[:4+jute.ReplyHeaderLen]},
		{"shorter than a length prefix", good[:3]},
		{"empty", []byte{}},
	} {
		t.Run(c.name, func(t *testing.T) {
			in := bytes.Clone(c.frame)
			got := rewriteConfigReply(c.frame)
			if !bytes.Equal(got, in) || len(got) > 0 && &got[0] != &c.frame[0] {
				t.Fatalf("frame rewritten:\n%x\nwas\n%x", got, in)
			}
		})
	}
}

func TestConfigRequest(t *testing.T) {
	body := func(path string, watch bool) []byte {
		return (&jute.PathWatchRequest{Path: path, Watch: watch}).Append(nil)
	}
	for _, c := range []struct {
		body []byte
		want bool
	}{
		{body("/zookeeper/config", false), true},
		{body("/zookeeper/config", true), true},
		{body("/zookeeper/configs", false), false},
		{body("/zookeeper/confi", false), false},
		{body("/zookeeper", false), false},
		{body("/app/zookeeper/config", false), false},
		{append(body("/zookeeper/config", false), 0), false}, // a trailing byte: not a getData body
		{body("/zookeeper/config", false)[:4+len(configPath)], false},
		{nil, false},
	} {
		if got := configRequest(c.body); got != c.want {
			t.Errorf("configRequest(%q) = %v, want %v", c.body, got, c.want)
		}
	}
	b := body("/zookeeper/config", true)
	if n := testing.AllocsPerRun(100, func() { configRequest(b) }); n != 0 {
		t.Errorf("configRequest allocates %v times", n)
	}
}

// FuzzRewriteConfigReply: never panics, and returns either the frame itself or a frame
// that decodes whole, with its length prefix and the Stat's dataLength matching, and no
// client address left on a server line.
func FuzzRewriteConfigReply(f *testing.F) {
	f.Add(configFrame(jute.ErrOK, []byte("server.1=127.0.0.1:2888:3888:participant;127.0.0.1:2181\nversion=1")))
	f.Add(configFrame(jute.ErrOK, []byte("server.1=[::1]:2888:3888;[::1]:2181\r\nserver.2=a:1:2\n")))
	f.Add(configFrame(jute.ErrOK, nil))
	f.Add(configFrame(jute.ErrNoNode, nil))
	f.Fuzz(func(t *testing.T, frame []byte) {
		in := bytes.Clone(frame)
		got := rewriteConfigReply(frame)
		if !bytes.Equal(frame, in) {
			t.Fatal("the member's frame was changed in place")
		}
		if bytes.Equal(got, frame) {
			return
		}
		if len(got) < 4 || int(binary.BigEndian.Uint32(got)) != len(got)-4 {
			t.Fatalf("bad length prefix in %x", got)
		}
		d := jute.NewDecoder(got[4:])
		var h jute.ReplyHeader
		var resp jute.GetDataResponse
		h.Read(d)
		resp.Read(d)
		if err := d.Finish(); err != nil {
			t.Fatalf("rewritten frame does not decode: %v", err)
		}
		if int(resp.Stat.DataLength) != len(resp.Data) {
			t.Fatalf("dataLength %d, data %d bytes", resp.Stat.DataLength, len(resp.Data))
		}
		if again, cut := stripClientAddrs(resp.Data); cut {
			t.Fatalf("client address left in %q (%q)", resp.Data, again)
		}
	})
}
