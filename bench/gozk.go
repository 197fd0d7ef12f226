//go:build linux

package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"
)

// goSession is one go-zookeeper session, driven by Concurrency goroutines (closed loop only).
type goSession struct{ c *zk.Conn }

// openGoSession connects and waits (30 s at most) until the session is established.
func openGoSession(addr string) (session, error) {
	c, events, err := zk.Connect([]string{addr}, 30*time.Second, zk.WithLogger(nopLog{}))
	if err != nil {
		return nil, err
	}
	deadline := time.After(30 * time.Second)
	for {
		select {
		case ev := <-events:
			if ev.State == zk.StateHasSession {
				return &goSession{c}, nil
			}
		case <-deadline:
			c.Close()
			return nil, fmt.Errorf("no session with %s within 30 s", addr)
		}
	}
}

func (s *goSession) drive(ctx context.Context, l Load, id int, _ time.Time) (Result, error) {
	node := fmt.Sprintf("%s/s%d", l.Root, id)
	value := make([]byte, l.ValueSize)
	var mu sync.Mutex
	var res Result
	var wg sync.WaitGroup
	for w := range l.Concurrency {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(id), uint64(w)))
			var mine []string
			for seq := 0; ctx.Err() == nil; seq++ {
				start := time.Now()
				var err error
				n := rng.IntN(100)
				switch {
				case n < l.Mix.Get:
					_, _, err = s.c.Get(node)
				case n < l.Mix.Get+l.Mix.Set:
					_, err = s.c.Set(node, value, -1)
				case n < l.Mix.Get+l.Mix.Set+l.Mix.Create || len(mine) == 0:
					p := fmt.Sprintf("%s/g%d-%d", node, w, seq)
					_, err = s.c.Create(p, value, 0, zk.WorldACL(zk.PermAll))
					mine = append(mine, p)
				default:
					err = s.c.Delete(mine[0], -1)
					mine = mine[1:]
				}
				d := time.Since(start)
				mu.Lock()
				res.Ops++
				if err != nil {
					res.Errors++
				}
				res.Latencies = append(res.Latencies, d)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return res, nil
}

func (s *goSession) close() { s.c.Close() }
