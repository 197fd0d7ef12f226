//go:build linux

package main

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/zkgate/zkgate/internal/zktest"
	"github.com/zkgate/zkgate/jute"
)

// hostileResult is one hostile step: what it did, its figures, and what the well-behaved
// sessions saw meanwhile.
type hostileResult struct {
	name, what, figures string
	witness             witnessStats
	problems            []string
}

func (h *hostileResult) fail(format string, args ...any) {
	h.problems = append(h.problems, fmt.Sprintf(format, args...))
}

// hostileGateArgs: the defaults, except a handshake timeout long enough that the stalled
// connections are all still held when they are measured.
var hostileGateArgs = []string{"--log-level", "info", "--handshake-timeout", "60s"}

// hostileSuite runs every hostile step against one zkgate, while witness sessions keep
// working through it. Each step must cost only its own connections.
func hostileSuite(ctx context.Context, dir string, bin zkgateBin, logf func(string, ...any)) ([]hostileResult, error) {
	hdir := filepath.Join(dir, "hostile")
	if err := mkdir(hdir); err != nil {
		return nil, err
	}
	ens, err := zktest.New(ensembleConfig(filepath.Join(hdir, "ensemble")))
	if err != nil {
		return nil, err
	}
	defer ens.Close()
	g, err := startGate(ctx, bin, hdir, 1, ens.Addrs(), hostileGateArgs...)
	if err != nil {
		return nil, err
	}
	defer g.stop()
	admin, _, err := zk.Connect(ens.Addrs(), sessionTimeout, zk.WithLogger(quiet{}))
	if err != nil {
		return nil, err
	}
	defer admin.Close()
	if err := waitUntil(ctx, 30*time.Second, "the admin session", func() bool { return admin.State() == zk.StateHasSession }); err != nil {
		return nil, err
	}
	acl := zk.WorldACL(zk.PermAll)
	if _, err := admin.Multi(&zk.CreateRequest{Path: "/hostile", Acl: acl},
		&zk.CreateRequest{Path: "/hostile/big", Data: make([]byte, 512<<10), Acl: acl}); err != nil {
		return nil, err
	}
	w, err := startWitness(ctx, g.listen, 10)
	if err != nil {
		return nil, err
	}
	defer w.stop()
	steps := []struct {
		name, what string
		run        func(context.Context, *gate, *hostileResult) error
	}{
		{"stall", "15,000 connections send 2 bytes and stall", stallStep},
		{"handshakes", "10,000 handshakes at once (each closes after its ConnectResponse)", handshakeStep},
		{"max-frames", "100 sessions each send a 1 MB frame at once (getData of a 1 MB path: just under jute.maxbuffer)", bigFrameStep},
		{"bad-frames", "garbage, an oversized length, a negative length, a truncated frame, an unknown opcode, mid-session", badFrameStep},
		{"non-reader", "a session pipelines getData of a 512 KiB znode for 10 s and never reads", nonReaderStep},
	}
	var out []hostileResult
	for _, s := range steps {
		logf("hostile: %s: %s", s.name, s.what)
		h := hostileResult{name: s.name, what: s.what}
		w.mark()
		if err := s.run(ctx, g, &h); err != nil {
			h.fail("%v", err)
		}
		// A last round of witness operations after the step, so that a step that broke
		// zkgate shows here too.
		w.waitOps(ctx, 20)
		h.witness = w.mark()
		if h.witness.failed > 0 {
			h.fail("%d of %d witness operations failed: %v", h.witness.failed, h.witness.ops, h.witness.errors)
		}
		if out, err := zktest.FourLetter(g.listen, "ruok", 5*time.Second); out != "imok" {
			h.fail("zkgate does not answer ruok after the step: %q %v", out, err)
		}
		logf("hostile: %s: %s; witness %d ops, %d failed, p99 %v", s.name, h.figures, h.witness.ops, h.witness.failed, h.witness.p99)
		out = append(out, h)
	}
	return out, nil
}

// badFrameStep sends each kind of bad input on its own fresh session; every one must be
// closed by zkgate.
func badFrameStep(ctx context.Context, g *gate, h *hostileResult) error {
	kinds := []struct {
		name string
		send func(net.Conn) error
	}{
		{"garbage", func(c net.Conn) error {
			_, err := c.Write([]byte("GET / HTTP/1.1\r\nHost: zkgate\r\n\r\n\x00\xff\xfe garbage"))
			return err
		}},
		{"oversized length", func(c net.Conn) error { _, err := c.Write(jute.AppendInt(nil, 0x7fffffff)); return err }},
		{"negative length", func(c net.Conn) error { _, err := c.Write(jute.AppendInt(nil, -5)); return err }},
		{"truncated frame", func(c net.Conn) error {
			frame := request(1, jute.OpGetData, &jute.GetDataRequest{Path: "/hostile"})
			if _, err := c.Write(frame[:len(frame)-3]); err != nil {
				return err
			}
			return c.(*net.TCPConn).CloseWrite()
		}},
		{"short header", func(c net.Conn) error { _, err := c.Write([]byte{0, 0, 0, 2, 0, 1}); return err }},
		{"unknown opcode", func(c net.Conn) error {
			_, err := c.Write(request(1, jute.OpCode(999), &jute.GetDataRequest{Path: "/hostile"}))
			return err
		}},
	}
	decode0, _ := g.metric("zkgate_decode_errors_total")
	var closed []string
	for _, k := range kinds {
		c, _, err := rawSession(g.listen)
		if err != nil {
			return err
		}
		err = k.send(c)
		if err == nil {
			err = closedByPeer(c, 30*time.Second)
		}
		c.Close()
		if err != nil {
			h.fail("%s: %v", k.name, err)
			continue
		}
		closed = append(closed, k.name)
	}
	decode1, _ := g.metric("zkgate_decode_errors_total")
	h.figures = fmt.Sprintf("%d of %d connections closed by zkgate (%s); zkgate_decode_errors_total +%.0f",
		len(closed), len(kinds), strings.Join(closed, ", "), decode1-decode0)
	return nil
}

// closedByPeer reads until the peer closes (EOF or reset), discarding any replies.
func closedByPeer(c net.Conn, d time.Duration) error {
	c.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 64<<10)
	for {
		if _, err := c.Read(buf); err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				return fmt.Errorf("still open after %v", d)
			}
			return nil
		}
	}
}

// nonReaderStep: one session writes getData requests of a 512 KiB znode for 10 s and reads
// nothing. zkgate must hold it back, not buffer the replies without bound.
func nonReaderStep(ctx context.Context, g *gate, h *hostileResult) error {
	c, _, err := rawSession(g.listen)
	if err != nil {
		return err
	}
	defer c.Close()
	c.(*net.TCPConn).SetReadBuffer(4 << 10)
	rss0, err := g.rss()
	if err != nil {
		return err
	}
	peak := watchRSS(g)
	end := time.Now().Add(10 * time.Second)
	sent, blocked := 0, 0
	closed := ""
	began := time.Now()
	var pending []byte
	for xid := int32(1); time.Now().Before(end) && closed == ""; {
		if len(pending) == 0 {
			pending = request(xid, jute.OpGetData, &jute.GetDataRequest{Path: "/hostile/big"})
			xid++
			sent++
		}
		c.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
		n, err := c.Write(pending)
		pending = pending[n:]
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			blocked++
		} else if err != nil {
			// Past 1.5 session timeouts without a byte read from it, zkgate closes the
			// client, as ZooKeeper lets such a session expire.
			closed = fmt.Sprintf("; closed by zkgate after %v", time.Since(began).Round(100*time.Millisecond))
		}
	}
	rssPeak := peak()
	h.figures = fmt.Sprintf("%d requests written before the client's writes blocked (%.0f MiB of replies asked for); zkgate RSS %.1f → peak %.1f MiB%s",
		sent, float64(sent)*0.5, mib(rss0), mib(rssPeak), closed)
	if blocked == 0 {
		h.fail("zkgate never stopped reading the non-reader")
	}
	if closed != "" {
		if err := waitUntil(ctx, 10*time.Second, "zkgate's log saying why it closed the non-reader", func() bool {
			n, _ := g.logCount("client does not read its replies")
			return n > 0
		}); err != nil {
			h.fail("%v", err)
		}
	}
	if rssPeak-rss0 > 64<<20 {
		h.fail("RSS grew %.1f MiB for one non-reading session", mib(rssPeak-rss0))
	}
	return nil
}
