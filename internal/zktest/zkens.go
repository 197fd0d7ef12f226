package zktest

import (
	"time"

	"github.com/zkgate/zkgate/internal/zkens"
)

// The ensemble itself lives in internal/zkens (no testing package, so the demo can use
// it); these names keep the tests' spelling.
type (
	Config   = zkens.Config
	Ensemble = zkens.Ensemble
	Member   = zkens.Member
	Install  = zkens.Install
)

const (
	DefaultWhitelist      = zkens.DefaultWhitelist
	DefaultMaxClientCnxns = zkens.DefaultMaxClientCnxns
)

var (
	ErrNotInstalled = zkens.ErrNotInstalled
	ErrNoAnswer     = zkens.ErrNoAnswer
)

// New starts an ensemble (zkens.New).
func New(cfg Config) (*Ensemble, error) { return zkens.New(cfg) }

// Locate finds ZooKeeper and Java (zkens.Locate).
func Locate() (Install, error) { return zkens.Locate() }

// FreePorts reserves n loopback ports (zkens.FreePorts).
func FreePorts(n int) ([]int, error) { return zkens.FreePorts(n) }

// FourLetter sends a four-letter word (zkens.FourLetter).
func FourLetter(addr, cmd string, timeout time.Duration) (string, error) {
	return zkens.FourLetter(addr, cmd, timeout)
}

// ProcessState is a process's state letter from /proc (zkens.ProcessState).
func ProcessState(pid int) (string, error) { return zkens.ProcessState(pid) }

// CClient is cli_mt's path (zkens.CClient).
func CClient() (string, error) { return zkens.CClient() }

func inCI() bool { return zkens.InCI() }
