package zktest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"
)

// Start runs a fresh ensemble for one test and stops it when the test ends, even when the
// test panics. Member logs are printed when the test fails. When ZooKeeper is not installed
// the test is skipped, or fails under CI=true.
func Start(tb testing.TB, cfg Config) *Ensemble {
	tb.Helper()
	e, err := New(cfg)
	if err != nil {
		missing(tb, err)
		tb.Fatalf("start ensemble: %v", err)
	}
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Logf("ensemble logs:\n%s", e.Logs(40))
		}
		e.Close()
	})
	return e
}

// Require returns the package's shared ensemble, starting it on the first call (so that
// a run of tests that need none, such as the relay's, starts no ZooKeeper). Without
// ZooKeeper installed the test skips, or fails under CI=true.
func Require(tb testing.TB, _ *Ensemble) *Ensemble {
	tb.Helper()
	if mainShared == nil {
		tb.Fatal("zktest: Require without zktest.Main in TestMain")
	}
	mainOnce.Do(func() {
		e, err := New(mainCfg)
		if err != nil {
			mainErr = err
			fmt.Fprintf(os.Stderr, "zktest: shared ensemble: %v\n", err)
			return
		}
		*mainShared = e
	})
	if *mainShared == nil {
		missing(tb, mainErr)
		tb.Fatalf("no shared ensemble: %v", mainErr)
	}
	return *mainShared
}

func missing(tb testing.TB, err error) {
	tb.Helper()
	if errors.Is(err, ErrNotInstalled) && !inCI() {
		tb.Skipf("skipping: %v (set CI=true to make this a failure)", err)
	}
}

var (
	mainErr    error
	mainCfg    Config
	mainShared **Ensemble
	mainOnce   sync.Once
)

// Main runs a package's tests with a shared ensemble that the first Require starts, stops
// it after them and returns the exit code for os.Exit. Without ZooKeeper installed and
// CI=true it returns 1 at once.
func Main(m *testing.M, cfg Config, shared **Ensemble) int {
	if _, err := Locate(); err != nil && inCI() {
		fmt.Fprintf(os.Stderr, "zktest: %v\n", err)
		return 1
	}
	mainCfg, mainShared = cfg, shared
	code := m.Run()
	if e := *shared; e != nil {
		if code != 0 {
			fmt.Fprintf(os.Stderr, "shared ensemble logs:\n%s", e.Logs(40))
		}
		e.Close()
	}
	return code
}

// Ctx is a context with a deadline bound to the test's end.
func Ctx(tb testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	tb.Cleanup(cancel)
	return ctx
}

// WaitFor polls cond every 20 ms until it holds, or fails the test after d with what it
// was waiting for. Tests wait for conditions, never for a fixed time.
func WaitFor(tb testing.TB, d time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Buffer is a bytes.Buffer safe for one writer (a child process, a logger) and a test
// reading it at the same time.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write implements io.Writer.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// RequireCClient returns cli_mt's path, or skips the test when it is missing (fails
// under CI=true).
func RequireCClient(tb testing.TB) string {
	tb.Helper()
	p, err := CClient()
	if err != nil {
		missing(tb, err)
		tb.Fatal(err)
	}
	return p
}
