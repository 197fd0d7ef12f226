package health

import (
	"bufio"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Srvr is what `srvr` (and the first part of `stat`) reports.
type Srvr struct {
	Version     string // "3.8.0-..., built on ..." trimmed to "3.8.0-..."
	LatencyMin  float64
	LatencyAvg  float64
	LatencyMax  float64
	Received    int64
	Sent        int64
	Connections int64
	Outstanding int64
	Zxid        int64
	Mode        string // leader, follower, observer, standalone, read-only
	NodeCount   int64
}

// ErrNoMode means a srvr reply had no Mode line.
var ErrNoMode = errors.New("srvr reply without a Mode line")

// ParseSrvr reads srvr or stat output. Unknown lines (proposal sizes, client lists) are
// ignored, so newer servers keep parsing.
func ParseSrvr(out string) (Srvr, error) {
	var s Srvr
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		val = strings.TrimSpace(val)
		switch key {
		case "Zookeeper version":
			v, _, _ := strings.Cut(val, ",")
			s.Version = strings.TrimSpace(v)
		case "Latency min/avg/max":
			parts := strings.Split(val, "/")
			if len(parts) == 3 {
				s.LatencyMin, _ = strconv.ParseFloat(parts[0], 64)
				s.LatencyAvg, _ = strconv.ParseFloat(parts[1], 64)
				s.LatencyMax, _ = strconv.ParseFloat(parts[2], 64)
			}
		case "Received":
			s.Received, _ = strconv.ParseInt(val, 10, 64)
		case "Sent":
			s.Sent, _ = strconv.ParseInt(val, 10, 64)
		case "Connections":
			s.Connections, _ = strconv.ParseInt(val, 10, 64)
		case "Outstanding":
			s.Outstanding, _ = strconv.ParseInt(val, 10, 64)
		case "Zxid":
			z, err := strconv.ParseInt(strings.TrimPrefix(val, "0x"), 16, 64)
			if err != nil {
				return s, fmt.Errorf("srvr zxid %q: %w", val, err)
			}
			s.Zxid = z
		case "Mode":
			s.Mode = val
		case "Node count":
			s.NodeCount, _ = strconv.ParseInt(val, 10, 64)
		}
	}
	if s.Mode == "" {
		return s, ErrNoMode
	}
	return s, nil
}

// Mntr is `mntr` output: every key as text, with the ones zkgate uses typed.
type Mntr struct {
	Values           map[string]string
	Version          string
	ServerState      string
	AvgLatency       float64
	Outstanding      int64
	AliveConnections int64
	Learners         int64 // zk_learners (3.6+) or zk_followers (3.5); leader only
	SyncedFollowers  int64
	Zxid             int64 // zk_last_zxid when the server prints it (3.6+ metrics)
}

// ParseMntr reads `zk_<key>\t<value>` lines.
func ParseMntr(out string) (Mntr, error) {
	m := Mntr{Values: map[string]string{}}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "\t")
		if !ok || !strings.HasPrefix(k, "zk_") {
			continue
		}
		m.Values[k] = strings.TrimSpace(v)
	}
	if len(m.Values) == 0 {
		return m, errors.New("mntr reply without zk_ keys")
	}
	i := func(k string) int64 { n, _ := strconv.ParseInt(m.Values[k], 10, 64); return n }
	m.Version = m.Values["zk_version"]
	if v, _, ok := strings.Cut(m.Version, ","); ok {
		m.Version = strings.TrimSpace(v)
	}
	m.ServerState = m.Values["zk_server_state"]
	m.AvgLatency, _ = strconv.ParseFloat(m.Values["zk_avg_latency"], 64)
	m.Outstanding = i("zk_outstanding_requests")
	m.AliveConnections = i("zk_num_alive_connections")
	if _, ok := m.Values["zk_learners"]; ok {
		m.Learners = i("zk_learners")
	} else {
		m.Learners = i("zk_followers")
	}
	m.SyncedFollowers = i("zk_synced_followers")
	if z, ok := m.Values["zk_last_zxid"]; ok {
		m.Zxid, _ = strconv.ParseInt(strings.TrimPrefix(z, "0x"), 16, 64)
	}
	return m, nil
}

// Conf is the part of `conf` output that matters to a proxy.
type Conf struct {
	Values            map[string]string
	MaxClientCnxns    int // -1 when the key is absent
	TickTime          time.Duration
	MinSessionTimeout time.Duration
	MaxSessionTimeout time.Duration
}

// ParseConf reads `key=value` lines.
func ParseConf(out string) Conf {
	c := Conf{Values: map[string]string{}, MaxClientCnxns: -1}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if ok {
			c.Values[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	ms := func(k string) time.Duration {
		n, _ := strconv.Atoi(c.Values[k])
		return time.Duration(n) * time.Millisecond
	}
	if v, ok := c.Values["maxClientCnxns"]; ok {
		c.MaxClientCnxns, _ = strconv.Atoi(v)
	}
	c.TickTime, c.MinSessionTimeout, c.MaxSessionTimeout = ms("tickTime"), ms("minSessionTimeout"), ms("maxSessionTimeout")
	return c
}

// ParseRuok reports whether the answer was "imok".
func ParseRuok(out string) bool { return strings.TrimSpace(out) == "imok" }

// ParseIsro reports whether the member says it is read-only ("ro"); ok is false for
// anything but "ro" or "rw".
func ParseIsro(out string) (readOnly, ok bool) {
	switch strings.TrimSpace(out) {
	case "ro":
		return true, true
	case "rw":
		return false, true
	}
	return false, false
}
