package proxy

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// answerFourLetter writes zkgate's own answer to a four-letter word, from its view of
// the ensemble, in ZooKeeper's formats. Commands zkgate does not answer are refused in
// the words a server uses for a command outside its whitelist.
func (c *conn) answerFourLetter(cmd string) {
	c.client.SetWriteDeadline(time.Now().Add(2 * time.Second))
	io.WriteString(c.client, c.srv.FourLetter(cmd))
}

// FourLetter returns zkgate's answer to a four-letter word.
func (s *Server) FourLetter(cmd string) string {
	switch cmd {
	case "ruok":
		if s.CanServe() {
			return "imok"
		}
		return "" // like a dead server: the caller reads nothing
	case "srvr", "stat":
		var b strings.Builder
		s.writeSrvr(&b, cmd == "stat")
		return b.String()
	case "isro":
		if s.CanServe() {
			return "rw"
		}
		return "null"
	}
	return cmd + " is not executed because it is not in the whitelist.\n"
}

func (s *Server) writeSrvr(b *strings.Builder, clients bool) {
	v := s.views.View()
	var zxid int64
	for _, m := range v.Members {
		zxid = max(zxid, m.Zxid)
	}
	sessions := s.Sessions()
	outstanding := 0
	for _, si := range sessions {
		outstanding += si.InFlight
	}
	fmt.Fprintf(b, "Zookeeper version: zkgate %s, proxy for ensemble %s\n", Version, s.cfg.Name)
	if clients {
		b.WriteString("Clients:\n")
		for _, si := range sessions {
			fmt.Fprintf(b, " /%s[1](queued=%d,recved=%d,sent=%d)\n", si.Client, si.InFlight, si.Requests, si.Replies)
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(b, "Latency min/avg/max: 0/0.0/0\n")
	fmt.Fprintf(b, "Received: %d\nSent: %d\nConnections: %d\nOutstanding: %d\n", s.received.Load(), s.sent.Load(), len(sessions), outstanding)
	fmt.Fprintf(b, "Zxid: 0x%x\nMode: proxy\nNode count: 0\n", zxid)
	fmt.Fprintf(b, "Breaker: %s\n", s.brk.Summary())
	var ejected []string
	for _, m := range s.ej.Status() {
		if m.Ejected {
			ejected = append(ejected, fmt.Sprintf("%s until %s (%s)", m.Address, m.Until.Format(time.RFC3339), m.Reason))
		}
	}
	if len(ejected) > 0 {
		fmt.Fprintf(b, "Ejected: %s\n", strings.Join(ejected, "; "))
	}
}

// Version is zkgate's version as 4lw answers print it; cmd sets it at start.
var Version = "devel"
