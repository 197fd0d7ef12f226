//go:build linux

package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// procStat is a process's CPU time so far and its resident memory.
type procStat struct {
	cpu       time.Duration // user + system
	user, sys time.Duration // utime and stime: the process's own code, and the kernel on its behalf
	rss       int64         // bytes
}

// clockTick is USER_HZ, the unit of /proc/<pid>/stat's times (100 on Linux).
const clockTick = 100

// readProc reads /proc/<pid>/stat (utime, stime) and /proc/<pid>/status (VmRSS).
func readProc(pid int) procStat {
	var p procStat
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		s := string(b)
		if i := strings.LastIndexByte(s, ')'); i > 0 {
			f := strings.Fields(s[i+2:])
			// fields after the name: state(0) ... utime(11) stime(12)
			if len(f) > 12 {
				u, _ := strconv.ParseInt(f[11], 10, 64)
				st, _ := strconv.ParseInt(f[12], 10, 64)
				p.user = time.Duration(u) * time.Second / clockTick
				p.sys = time.Duration(st) * time.Second / clockTick
				p.cpu = p.user + p.sys
			}
		}
	}
	if f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
				p.rss = kb << 10
			}
		}
		f.Close()
	}
	return p
}

// openFiles is the number of pid's open descriptors (-1 when unreadable).
func openFiles(pid int) int {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return -1
	}
	return len(ents)
}

// raiseFileLimit lifts the open-files limit as far as allowed: 10,000 sessions need
// 20,000 descriptors in a proxy and 10,000 in the driver, and the proxies and members
// inherit it. Above the hard limit it takes CAP_SYS_RESOURCE; without it, a hard limit of
// 20,000 leaves zkgate (15 descriptors of its own) at most 9,992 sessions.
func raiseFileLimit() {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) != nil {
		return
	}
	want := uint64(200000)
	if l.Max < want {
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: want, Max: want}) == nil {
			return
		}
		want = l.Max
	}
	syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: want, Max: l.Max})
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "model name"); ok {
			return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
		}
	}
	return "unknown CPU"
}
