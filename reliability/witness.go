//go:build linux

package main

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"
)

// witness is a few well-behaved sessions working through zkgate during the hostile steps:
// each reads and writes its own znode in a loop.
type witness struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	lat     []time.Duration
	failed  int
	errors  []string
	clients []*zk.Conn
}

type witnessStats struct {
	ops, failed int
	p99         time.Duration
	errors      []string
}

func startWitness(ctx context.Context, addr string, n int) (*witness, error) {
	w := &witness{}
	ctx, w.cancel = context.WithCancel(ctx)
	for i := 0; i < n; i++ {
		c, err := dial(ctx, []string{addr}, "witness", i)
		if err != nil {
			w.stop()
			return nil, err
		}
		w.clients = append(w.clients, c.conn)
		path := fmt.Sprintf("/hostile/w%d", i)
		if _, err := c.conn.Create(path, nil, 0, zk.WorldACL(zk.PermAll)); err != nil {
			w.stop()
			return nil, err
		}
		w.wg.Go(func() { w.loop(ctx, c.conn, path) })
	}
	return w, nil
}

func (w *witness) loop(ctx context.Context, conn *zk.Conn, path string) {
	for i := 0; ctx.Err() == nil; i++ {
		t := time.Now()
		var err error
		if i%2 == 0 {
			_, _, err = conn.Get(path)
		} else {
			_, err = conn.Set(path, []byte(fmt.Sprint(i)), -1)
		}
		d := time.Since(t)
		w.mu.Lock()
		w.lat = append(w.lat, d)
		if err != nil && ctx.Err() == nil {
			w.failed++
			if len(w.errors) < 3 {
				w.errors = append(w.errors, err.Error())
			}
		}
		w.mu.Unlock()
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// mark returns what the witnesses saw since the last mark.
func (w *witness) mark() witnessStats {
	w.mu.Lock()
	defer w.mu.Unlock()
	st := witnessStats{ops: len(w.lat), failed: w.failed, errors: w.errors}
	if len(w.lat) > 0 {
		slices.Sort(w.lat)
		st.p99 = w.lat[len(w.lat)*99/100].Round(100 * time.Microsecond)
	}
	w.lat, w.failed, w.errors = w.lat[:0], 0, nil
	return st
}

// waitOps waits until the witnesses have done n more operations (or 30 s).
func (w *witness) waitOps(ctx context.Context, n int) {
	w.mu.Lock()
	target := len(w.lat) + n
	w.mu.Unlock()
	waitUntil(ctx, 30*time.Second, "witness operations", func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return len(w.lat) >= target
	})
}

func (w *witness) stop() {
	w.cancel()
	w.wg.Wait()
	for _, c := range w.clients {
		c.Close()
	}
}
