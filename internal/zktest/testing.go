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

// Require returns the shared ensemble made by Main, skipping (or failing under CI=true) the
// test when Main could not start one.
func Require(tb testing.TB, shared *Ensemble) *Ensemble {
	tb.Helper()
	if shared == nil {
		missing(tb, mainErr)
		tb.Fatalf("no shared ensemble: %v", mainErr)
	}
	return shared
}

func missing(tb testing.TB, err error) {
	tb.Helper()
	if errors.Is(err, ErrNotInstalled) && !inCI() {
		tb.Skipf("skipping: %v (set CI=true to make this a failure)", err)
	}
}

var mainErr error

// Main starts a shared ensemble for a package's tests, runs them, stops the ensemble and
// returns the exit code for os.Exit. Without ZooKeeper installed it runs the tests with
// *shared == nil (they skip through Require), unless CI=true, where it returns 1 at once.
func Main(m *testing.M, cfg Config, shared **Ensemble) int {
	e, err := New(cfg)
	if err != nil {
		mainErr = err
		fmt.Fprintf(os.Stderr, "zktest: shared ensemble: %v\n", err)
		if inCI() || !errors.Is(err, ErrNotInstalled) {
			return 1
		}
		return m.Run()
	}
	*shared = e
	defer e.Close()
	code := m.Run()
	if code != 0 {
		fmt.Fprintf(os.Stderr, "shared ensemble logs:\n%s", e.Logs(40))
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
