package proxy

import (
	"bytes"
	"encoding/binary"

	"github.com/zkgate/zkgate/jute"
)

// configPath is the znode holding the ensemble's dynamic configuration (ZooDefs.CONFIG_NODE).
// Java's ZooKeeper.getConfig and Curator's getConfig().forEnsemble() read it with a plain
// getData on this path, never under the client's chroot.
const configPath = "/zookeeper/config"

// configRequest reports whether a getData body (ustring path, then the watch byte) reads
// configPath. It compares bytes and allocates nothing: the relay asks it of every getData.
func configRequest(body []byte) bool {
	return len(body) == 4+len(configPath)+1 &&
		binary.BigEndian.Uint32(body) == uint32(len(configPath)) &&
		string(body[4:4+len(configPath)]) == configPath
}

// rewriteConfigReply keeps clients behind zkgate. The members' config lists their own
// client addresses (server.1=10.0.0.1:2888:3888:participant;10.0.0.1:2181); Curator's
// EnsembleTracker turns those into its connect string, and after its next session expiry
// the client would dial the members directly. With the client part cut from every server
// line the tracker finds no client address, and keeps the connect string it was given.
//
// frame is a whole member reply to a getData of configPath (length prefix, ReplyHeader,
// GetDataResponse). The result is a new frame with the lines cut, its length prefix and
// the Stat's dataLength matching the new data; or frame itself when the reply is an
// error, holds no data, has nothing to cut, or does not decode.
func rewriteConfigReply(frame []byte) []byte {
	if len(frame) < 4 || int(binary.BigEndian.Uint32(frame)) != len(frame)-4 {
		return frame
	}
	d := jute.NewDecoder(frame[4:])
	var h jute.ReplyHeader
	h.Read(d)
	if d.Err() != nil || h.Err != jute.ErrOK {
		return frame
	}
	var resp jute.GetDataResponse
	resp.Read(d)
	if d.Finish() != nil || resp.Data == nil {
		return frame
	}
	data, cut := stripClientAddrs(resp.Data)
	if !cut {
		return frame
	}
	resp.Data, resp.Stat.DataLength = data, int32(len(data))
	return jute.AppendFrame(make([]byte, 0, len(frame)), &h, &resp)
}

// stripClientAddrs cuts the client address (";[host:]port") off every server.N line of a
// config text and leaves every other byte as it was (line ends included). cut is false,
// and nothing is allocated, when no line had one.
func stripClientAddrs(cfg []byte) (out []byte, cut bool) {
	for pos := 0; pos < len(cfg); {
		end := bytes.IndexByte(cfg[pos:], '\n')
		if end < 0 {
			end = len(cfg)
		} else {
			end += pos
		}
		line := cfg[pos:end]
		if i := clientAddrAt(line); i >= 0 {
			if out == nil {
				out = append(make([]byte, 0, len(cfg)), cfg[:pos]...)
			}
			keep := len(line) // a "\r" before the "\n" stays
			if bytes.HasSuffix(line, []byte("\r")) {
				keep--
			}
			out = append(append(out, line[:i]...), line[keep:]...)
		} else if out != nil {
			out = append(out, line...)
		}
		if out != nil && end < len(cfg) {
			out = append(out, '\n')
		}
		pos = end + 1
	}
	if out == nil {
		return cfg, false
	}
	return out, true
}

// clientAddrAt returns where a server line's client address starts (its ';'), or -1 when
// line is not a server.N line or has none.
func clientAddrAt(line []byte) int {
	key, value, ok := bytes.Cut(line, []byte("="))
	if !ok || !bytes.HasPrefix(bytes.TrimSpace(key), []byte("server.")) {
		return -1
	}
	i := bytes.IndexByte(value, ';')
	if i < 0 {
		return -1
	}
	return len(key) + 1 + i
}
