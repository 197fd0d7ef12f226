package proxy

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/zkgate/zkgate/health"
	"github.com/zkgate/zkgate/jute"
)

// answerFourLetter writes zkgate's own answer to a four-letter word, from its view of
// the ensemble, in ZooKeeper's formats. Commands zkgate does not answer are refused in
// the words a server uses for a command outside its whitelist.
func (c *conn) answerFourLetter(cmd string) {
	c.client.SetWriteDeadline(time.Now().Add(2 * time.Second))
	io.WriteString(c.client, c.srv.FourLetter(cmd))
}

// FourLetter returns zkgate's answer to a four-letter word: ruok, srvr, stat, mntr,
// cons, isro, conf and envi from zkgate's own view, in ZooKeeper's formats; the rest are
// refused in the words a server uses for a command outside its whitelist.
func (s *Server) FourLetter(cmd string) string {
	var b strings.Builder
	switch cmd {
	case "ruok":
		if s.CanServe() {
			return "imok"
		}
		return "" // like a server that is not serving: the caller reads nothing
	case "srvr", "stat":
		s.writeSrvr(&b, cmd == "stat")
	case "mntr":
		s.writeMntr(&b)
	case "cons":
		s.writeCons(&b)
	case "conf":
		s.writeConf(&b)
	case "envi":
		writeEnvi(&b)
	case "isro":
		// Clients connected read-only ask this to learn when to come back for read-write.
		switch {
		case s.CanServe():
			return "rw"
		case s.ServesReadOnly():
			return "ro"
		}
		return "null"
	default:
		return cmd + " is not executed because it is not in the whitelist.\n"
	}
	return b.String()
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func (s *Server) writeSrvr(b *strings.Builder, clients bool) {
	v := s.view()
	var zxid int64
	for _, m := range v.Members {
		zxid = max(zxid, m.Zxid)
	}
	fmt.Fprintf(b, "Zookeeper version: zkgate %s, proxy for ensemble %s\n", Version, s.conf().Name)
	if clients {
		b.WriteString("Clients:\n")
		for _, si := range s.Sessions() {
			fmt.Fprintf(b, " /%s[1](queued=%d,recved=%d,sent=%d)\n", si.Client, si.InFlight, si.Requests, si.Replies)
		}
		b.WriteString("\n")
	}
	t := s.Totals()
	fmt.Fprintf(b, "Latency min/avg/max: %.3f/%.4f/%.3f\n", ms(t.Latency.Min), ms(t.Latency.Avg()), ms(t.Latency.Max))
	fmt.Fprintf(b, "Received: %d\nSent: %d\nConnections: %d\nOutstanding: %d\n", t.Requests, t.Replies, t.Sessions, t.Outstanding)
	fmt.Fprintf(b, "Zxid: 0x%x\nMode: proxy\nNode count: 0\n", zxid)
	fmt.Fprintf(b, "Breaker: %s\n", s.brk.Summary())
	var ejected []string
	for _, m := range s.ejector().Status() {
		if m.Ejected {
			ejected = append(ejected, fmt.Sprintf("%s until %s (%s)", m.Address, m.Until.Format(time.RFC3339), m.Reason))
		}
	}
	if len(ejected) > 0 {
		fmt.Fprintf(b, "Ejected: %s\n", strings.Join(ejected, "; "))
	}
}

// writeMntr answers mntr with ZooKeeper's zk_ keys where zkgate has the figure (so
// existing mntr exporters work) and zkgate_ keys for the rest.
func (s *Server) writeMntr(b *strings.Builder) {
	v := s.view()
	t := s.Totals()
	serving, ejected := 0, 0
	for _, m := range v.Members {
		if m.Status == health.StatusServing {
			serving++
		}
	}
	for _, m := range s.ejector().Status() {
		if m.Ejected {
			ejected++
		}
	}
	req, fail, rate := s.brk.Stats()
	kv := func(k string, v any) { fmt.Fprintf(b, "%s\t%v\n", k, v) }
	kv("zk_version", "zkgate "+Version)
	kv("zk_server_state", "proxy")
	kv("zk_avg_latency", fmt.Sprintf("%.4f", ms(t.Latency.Avg())))
	kv("zk_max_latency", fmt.Sprintf("%.3f", ms(t.Latency.Max)))
	kv("zk_min_latency", fmt.Sprintf("%.3f", ms(t.Latency.Min)))
	kv("zk_packets_received", t.Requests)
	kv("zk_packets_sent", t.Replies)
	kv("zk_num_alive_connections", t.Connections)
	kv("zk_outstanding_requests", t.Outstanding)
	kv("zkgate_ensemble", s.conf().Name)
	kv("zkgate_sessions", t.Sessions)
	kv("zkgate_bytes_received", t.BytesIn)
	kv("zkgate_bytes_sent", t.BytesOut)
	kv("zkgate_coalesce_waits", t.Coalesced)
	kv("zkgate_coalesce_ms", t.CoalescedFor.Milliseconds())
	kv("zkgate_session_moves", t.Moves)
	kv("zkgate_session_moves_closed", t.MovesClosed)
	kv("zkgate_limited_requests", t.Limited)
	kv("zkgate_members", len(v.Members))
	kv("zkgate_members_serving", serving)
	kv("zkgate_members_ejected", ejected)
	kv("zkgate_quorum", boolInt(v.Quorum))
	kv("zkgate_leader", v.Leader)
	kv("zkgate_breaker_state", s.brk.State())
	kv("zkgate_breaker_window_requests", req)
	kv("zkgate_breaker_window_failures", fail)
	kv("zkgate_breaker_failure_rate", fmt.Sprintf("%.3f", rate))
	kv("zkgate_can_serve", boolInt(s.CanServe()))
	s.writeHotMntr(kv)
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// writeCons lists the sessions in ZooKeeper's cons format, with the member each sits on:
// behind a proxy the servers only see zkgate's address, so this is where the client
// address, the session id and the member meet.
func (s *Server) writeCons(b *strings.Builder) {
	now := time.Now()
	for _, si := range s.Sessions() {
		lresp := int64(0)
		if !si.LastResp.IsZero() {
			lresp = si.LastResp.UnixMilli()
		}
		fmt.Fprintf(b, " /%s[1](queued=%d,recved=%d,sent=%d,sid=0x%x,lop=%s,est=%d,to=%d,lzxid=0x%x,lresp=%d,llat=%d,minlat=%d,avglat=%d,maxlat=%d,member=%s,watches=%d,age=%s)\n",
			si.Client, si.InFlight, si.Requests, si.Replies, si.ID, lopName(si.LastOp), si.Started.UnixMilli(),
			si.Timeout.Milliseconds(), si.LastZxid, lresp, si.Latency.Last.Milliseconds(), si.Latency.Min.Milliseconds(),
			si.Latency.Avg().Milliseconds(), si.Latency.Max.Milliseconds(), si.Member, si.Watches, now.Sub(si.Started).Round(time.Second))
	}
	b.WriteString("\n")
}

// lopName abbreviates the last opcode the way cons does (GETD, SETD, ...), or NA.
func lopName(op jute.OpCode) string {
	switch op {
	case jute.OpNotification:
		return "NA"
	case jute.OpGetData:
		return "GETD"
	case jute.OpSetData:
		return "SETD"
	case jute.OpCreate, jute.OpCreate2, jute.OpCreateContainer, jute.OpCreateTTL:
		return "CREA"
	case jute.OpDelete:
		return "DELE"
	case jute.OpExists:
		return "EXIS"
	case jute.OpGetChildren, jute.OpGetChildren2:
		return "GETC"
	case jute.OpMulti, jute.OpMultiRead:
		return "MULT"
	case jute.OpSync:
		return "SYNC"
	case jute.OpPing:
		return "PING"
	}
	return strings.ToUpper(op.String())
}

// writeConf prints zkgate's settings for this ensemble as key=value lines.
func (s *Server) writeConf(b *strings.Builder) {
	kv := func(k string, v any) { fmt.Fprintf(b, "%s=%v\n", k, v) }
	kv("ensemble", s.conf().Name)
	for _, m := range s.view().Members {
		kv("member", m.Address)
	}
	kv("routing", s.conf().Policy)
	kv("maxClientCnxns", s.conf().MaxPerClient)
	kv("maxConnections", s.conf().MaxConnections)
	kv("maxFrame", s.conf().MaxFrame)
	kv("handshakeTimeout", s.conf().HandshakeTimeout)
	bc := s.brk.Config()
	kv("breaker.enabled", bc.Enabled)
	kv("breaker.failureRatio", bc.FailureRatio)
	kv("breaker.minRequests", bc.MinRequests)
	kv("breaker.window", bc.Window)
	kv("breaker.slowCall", bc.SlowCall)
	kv("breaker.openFor", bc.OpenFor)
	kv("breaker.halfOpenProbes", bc.HalfOpenProbes)
	kv("breaker.halfOpenAdmission", bc.HalfOpenAdmission)
	kv("breaker.rejectCode", bc.RejectCode)
	ec := s.ejector().Config()
	kv("ejection.enabled", ec.Enabled)
	kv("ejection.baseTime", ec.BaseTime)
	kv("ejection.maxTime", ec.MaxTime)
}

// writeEnvi prints the process environment the way envi does, with Go in Java's place.
func writeEnvi(b *strings.Builder) {
	host, _ := os.Hostname()
	dir, _ := os.Getwd()
	user := os.Getenv("USER")
	b.WriteString("Environment:\n")
	for _, kv := range [][2]string{
		{"zookeeper.version", "zkgate " + Version},
		{"host.name", host},
		{"go.version", runtime.Version()},
		{"os.name", runtime.GOOS},
		{"os.arch", runtime.GOARCH},
		{"os.cpus", strconv.Itoa(runtime.NumCPU())},
		{"user.name", user},
		{"user.dir", dir},
		{"process.id", strconv.Itoa(os.Getpid())},
	} {
		fmt.Fprintf(b, "%s=%s\n", kv[0], kv[1])
	}
}

// Version is zkgate's version as 4lw answers print it; cmd sets it at start.
var Version = "devel"
