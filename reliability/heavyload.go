//go:build linux

package main

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/zkgate/zkgate/jute"
)

// The heavy scenarios' preparations and loads. Every loop is bounded in count and in
// time; every address is the ensemble's or zkgate's, on 127.0.0.1.

const heavyRoot = "/heavy"

var openACL = zk.WorldACL(zk.PermAll)

func prepareRoot(_ context.Context, h *heavyRun) error {
	_, err := h.admin.Create(heavyRoot, nil, 0, openACL)
	return err
}

// createMany creates n znodes under dir straight at the members, in multis of batch,
// four in flight.
func createMany(h *heavyRun, dir string, n, batch int, name func(int) string, data []byte) error {
	if _, err := h.admin.Create(dir, nil, 0, openACL); err != nil {
		return err
	}
	errs := make(chan error, (n+batch-1)/batch)
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	for first := 0; first < n; first += batch {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			var ops []any
			for i := first; i < min(first+batch, n); i++ {
				ops = append(ops, &zk.CreateRequest{Path: dir + "/" + name(i), Data: data, Acl: openACL})
			}
			_, err := h.admin.Multi(ops...)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return fmt.Errorf("creating %d znodes under %s: %w", n, dir, err)
		}
	}
	return nil
}

// bystander is a second session reading every 10 ms while a load runs (what the issue's
// reader did): a breaker opened by the load refuses it too. The returned func stops it.
func (h *heavyRun) bystander(ctx context.Context) (func(), error) {
	conns, err := h.dial(ctx, 1)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; i < 100_000 && ctx.Err() == nil; i++ {
			_, _, err := conns[0].Get(heavyRoot)
			h.record(fmt.Sprintf("bystander/%d", i), err)
			select {
			case <-ctx.Done():
			case <-time.After(10 * time.Millisecond):
			}
		}
	})
	return func() { cancel(); wg.Wait() }, nil
}

// pipeline runs n operations on conn at once: go-zookeeper sends them back to back on the
// session and matches the replies in order, as an async client does. start, when not nil,
// holds them until it is closed.
func (h *heavyRun) pipeline(wg *sync.WaitGroup, start <-chan struct{}, n int, key func(int) string, op func(int) error) {
	for i := 0; i < n; i++ {
		wg.Go(func() {
			if start != nil {
				<-start
			}
			h.record(key(i), op(i))
		})
	}
}

// withLoad runs fn with the bystander reading, then waits for fn's operations (at most
// heavyLoadLimit).
func (h *heavyRun) withLoad(ctx context.Context, fn func(wg *sync.WaitGroup) error) error {
	stop, err := h.bystander(ctx)
	if err != nil {
		return err
	}
	defer stop()
	var wg sync.WaitGroup
	deadline := time.Now().Add(heavyLoadLimit)
	err = fn(&wg)
	h.wait(ctx, &wg, deadline)
	return err
}

func loadColdBurst(ctx context.Context, h *heavyRun) error {
	conns, err := h.dial(ctx, 1)
	if err != nil {
		return err
	}
	data := make([]byte, 100)
	return h.withLoad(ctx, func(wg *sync.WaitGroup) error {
		h.pipeline(wg, nil, 10_000, func(i int) string { return fmt.Sprintf("create/%d", i) }, func(i int) error {
			_, err := conns[0].Create(fmt.Sprintf("%s/c%05d", heavyRoot, i), data, 0, openACL)
			return err
		})
		return nil
	})
}

func loadManyBursts(ctx context.Context, h *heavyRun) error {
	conns, err := h.dial(ctx, 64)
	if err != nil {
		return err
	}
	data := make([]byte, 100)
	return h.withLoad(ctx, func(wg *sync.WaitGroup) error {
		start := make(chan struct{})
		for s, conn := range conns {
			h.pipeline(wg, start, 500, func(i int) string { return fmt.Sprintf("create/%d/%d", s, i) }, func(i int) error {
				_, err := conn.Create(fmt.Sprintf("%s/s%02d-%03d", heavyRoot, s, i), data, 0, openACL)
				return err
			})
		}
		close(start)
		return nil
	})
}

func loadBigValues(ctx context.Context, h *heavyRun) error {
	if _, err := h.admin.Create(heavyRoot+"/big", nil, 0, openACL); err != nil {
		return err
	}
	conns, err := h.dial(ctx, 1)
	if err != nil {
		return err
	}
	value := make([]byte, 1_000_000)
	return h.withLoad(ctx, func(wg *sync.WaitGroup) error {
		h.pipeline(wg, nil, 50, func(i int) string { return fmt.Sprintf("setData/%d", i) }, func(int) error {
			_, err := conns[0].Set(heavyRoot+"/big", value, -1)
			return err
		})
		return nil
	})
}

const wideChildren = 100_000

func wideName(i int) string { return fmt.Sprintf("c%023d", i) }

func prepareWide(ctx context.Context, h *heavyRun) error {
	if err := prepareRoot(ctx, h); err != nil {
		return err
	}
	return createMany(h, heavyRoot+"/kids", wideChildren, 1000, wideName, nil)
}

func loadWide(ctx context.Context, h *heavyRun) error {
	conns, err := h.dial(ctx, 4)
	if err != nil {
		return err
	}
	return h.withLoad(ctx, func(wg *sync.WaitGroup) error {
		start := make(chan struct{})
		for s, conn := range conns {
			h.pipeline(wg, start, 5, func(i int) string { return fmt.Sprintf("getChildren/%d/%d", s, i) }, func(int) error {
				kids, _, err := conn.Children(heavyRoot + "/kids")
				if err == nil && len(kids) != wideChildren {
					err = fmt.Errorf("%d children, want %d", len(kids), wideChildren)
				}
				return err
			})
		}
		close(start)
		return nil
	})
}

func loadMulti(ctx context.Context, h *heavyRun) error {
	conns, err := h.dial(ctx, 1)
	if err != nil {
		return err
	}
	return h.withLoad(ctx, func(wg *sync.WaitGroup) error {
		h.pipeline(wg, nil, 10, func(m int) string { return fmt.Sprintf("multi/%d", m) }, func(m int) error {
			ops := make([]any, 0, 1000)
			for i := 0; i < 1000; i++ {
				ops = append(ops, &zk.CreateRequest{Path: fmt.Sprintf("%s/m%02d-%04d", heavyRoot, m, i), Acl: openACL})
			}
			_, err := conns[0].Multi(ops...)
			return err
		})
		return nil
	})
}

const (
	slowReaderValue    = 64 << 10
	slowReaderRequests = 500
	slowReaderPause    = 3 * time.Second
)

func prepareSlowReader(ctx context.Context, h *heavyRun) error {
	if err := prepareRoot(ctx, h); err != nil {
		return err
	}
	_, err := h.admin.Create(heavyRoot+"/v", make([]byte, slowReaderValue), 0, openACL)
	return err
}

// loadSlowReader speaks jute itself (go-zookeeper always reads): a session, then every
// request written, then nothing read for 3 s, then every reply read in order.
func loadSlowReader(ctx context.Context, h *heavyRun) error {
	addr := h.target()[0]
	if h.gate == nil {
		// A follower, as zkgate's least-connections routing would pick.
		if f := h.ens.Followers(); len(f) > 0 {
			addr = f[0].ClientAddr
		}
	}
	stop, err := h.bystander(ctx)
	if err != nil {
		return err
	}
	defer stop()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.(*net.TCPConn).SetReadBuffer(64 << 10)
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write(jute.AppendFrame(nil, &jute.ConnectRequest{TimeOut: int32(sessionTimeout / time.Millisecond), Passwd: make([]byte, 16)})); err != nil {
		return err
	}
	fr := jute.NewFrameReaderSize(c, heavyMaxBuffer+jute.FrameSlack, 128<<10)
	frame, err := fr.Next()
	if err != nil {
		return fmt.Errorf("handshake: %w", err)
	}
	var resp jute.ConnectResponse
	if err := jute.Decode(frame[4:], &resp); err != nil || resp.SessionID == 0 {
		return fmt.Errorf("handshake: %+v %v", resp, err)
	}
	// The writes block once the member (or zkgate) stops reading the session: a goroutine
	// writes while this one does not read.
	wrote := make(chan error, 1)
	go func() {
		c.SetWriteDeadline(time.Now().Add(slowReaderPause + 60*time.Second))
		var err error
		for xid := int32(1); xid <= slowReaderRequests && err == nil; xid++ {
			_, err = c.Write(request(xid, jute.OpGetData, &jute.GetDataRequest{Path: heavyRoot + "/v"}))
		}
		wrote <- err
	}()
	if err := sleepCtx(ctx, slowReaderPause); err != nil {
		return err
	}
	c.SetReadDeadline(time.Now().Add(60 * time.Second))
	next := int32(1)
	var readErr error
	for next <= slowReaderRequests {
		frame, err := fr.Next()
		if err != nil {
			readErr = err
			break
		}
		hdr, err := jute.ParseReplyHeader(frame[4:])
		if err != nil {
			readErr = err
			break
		}
		if hdr.Xid < 0 {
			continue // a notification or a ping
		}
		switch {
		case hdr.Xid != next:
			err = fmt.Errorf("reply xid %d, want %d", hdr.Xid, next)
		case hdr.Err != jute.ErrOK:
			err = fmt.Errorf("answered %v", hdr.Err)
		case len(frame) < slowReaderValue:
			err = fmt.Errorf("reply of %d bytes", len(frame))
		}
		h.record(fmt.Sprintf("getData/%d", next), err)
		next++
	}
	for ; next <= slowReaderRequests; next++ {
		h.record(fmt.Sprintf("getData/%d", next), fmt.Errorf("no reply: %w", readErr))
	}
	c.Close()
	<-wrote
	return nil
}

const steadySessions = 16

const steadyFor = 20 * time.Second
