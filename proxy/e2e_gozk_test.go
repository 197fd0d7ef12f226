package proxy_test

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/zkgate/zkgate/internal/zktest"
	"github.com/zkgate/zkgate/proxy"
)

func TestGoZookeeperThroughZkgate(t *testing.T) {
	ens := zktest.Require(t, shared)
	g := startGate(t, ens, proxy.Config{})
	c, _ := connect(t, g.addr)
	acl := zk.WorldACL(zk.PermAll)
	root := fmt.Sprintf("/gozk-%d", time.Now().UnixNano())

	t.Run("crud", func(t *testing.T) {
		if _, err := c.Create(root, []byte("v1"), 0, acl); err != nil {
			t.Fatal(err)
		}
		data, st, err := c.Get(root)
		if err != nil || string(data) != "v1" || st.Version != 0 {
			t.Fatalf("get: %q %+v %v", data, st, err)
		}
		if _, err := c.Set(root, []byte("v2"), st.Version); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Set(root, []byte("v3"), 0); !errors.Is(err, zk.ErrBadVersion) {
			t.Fatalf("stale set: %v", err)
		}
		if _, _, err := c.Get(root + "/missing"); !errors.Is(err, zk.ErrNoNode) {
			t.Fatalf("missing: %v", err)
		}
		ok, _, err := c.Exists(root)
		if err != nil || !ok {
			t.Fatalf("exists: %v %v", ok, err)
		}
	})

	t.Run("sequential and ephemeral", func(t *testing.T) {
		p1, err := c.Create(root+"/seq-", nil, zk.FlagSequence, acl)
		if err != nil {
			t.Fatal(err)
		}
		p2, err := c.Create(root+"/seq-", nil, zk.FlagSequence|zk.FlagEphemeral, acl)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(p1, root+"/seq-") || p2 <= p1 {
			t.Fatalf("sequential names %q %q", p1, p2)
		}
		_, st, err := c.Get(p2)
		if err != nil || st.EphemeralOwner != c.SessionID() {
			t.Fatalf("ephemeral owner %x, session %x, %v", st.EphemeralOwner, c.SessionID(), err)
		}
	})

	t.Run("1MB value", func(t *testing.T) {
		big := bytes.Repeat([]byte("z"), 1_000_000)
		if _, err := c.Create(root+"/big", big, 0, acl); err != nil {
			t.Fatal(err)
		}
		got, _, err := c.Get(root + "/big")
		if err != nil || !bytes.Equal(got, big) {
			t.Fatalf("1 MB round trip: %d bytes, %v", len(got), err)
		}
	})

	t.Run("multi with a failing op", func(t *testing.T) {
		_, err := c.Multi(
			&zk.CreateRequest{Path: root + "/m1", Data: []byte("x"), Acl: acl},
			&zk.CheckVersionRequest{Path: root + "/does-not-exist", Version: 0},
		)
		if err == nil {
			t.Fatal("multi with a failing check succeeded")
		}
		if ok, _, _ := c.Exists(root + "/m1"); ok {
			t.Fatal("a failed multi left its create behind")
		}
		res, err := c.Multi(&zk.CreateRequest{Path: root + "/m2", Acl: acl}, &zk.SetDataRequest{Path: root + "/m2", Data: []byte("y"), Version: 0})
		if err != nil || len(res) != 2 {
			t.Fatalf("good multi: %v %v", res, err)
		}
	})

	t.Run("watch fires exactly once", func(t *testing.T) {
		_, _, ch, err := c.GetW(root)
		if err != nil {
			t.Fatal(err)
		}
		other, _ := connect(t, g.addr)
		for i := 0; i < 2; i++ {
			if _, err := other.Set(root, []byte(fmt.Sprint(i)), -1); err != nil {
				t.Fatal(err)
			}
		}
		select {
		case ev := <-ch:
			if ev.Type != zk.EventNodeDataChanged || ev.Path != root {
				t.Fatalf("event %+v", ev)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("watch did not fire")
		}
		// A one-shot watch fires once: go-zookeeper closes the channel after the event.
		if ev, ok := <-ch; ok {
			t.Fatalf("second event on a one-shot watch: %+v", ev)
		}
	})

	t.Run("digest auth and ACL", func(t *testing.T) {
		owner, _ := connect(t, g.addr)
		if err := owner.AddAuth("digest", []byte("alice:secret")); err != nil {
			t.Fatal(err)
		}
		if _, err := owner.Create(root+"/private", []byte("s"), 0, zk.DigestACL(zk.PermAll, "alice", "secret")); err != nil {
			t.Fatal(err)
		}
		if _, _, err := owner.Get(root + "/private"); err != nil {
			t.Fatalf("owner read: %v", err)
		}
		if _, _, err := c.Get(root + "/private"); !errors.Is(err, zk.ErrNoAuth) {
			t.Fatalf("stranger read: %v, want NOAUTH", err)
		}
	})

	t.Run("50 concurrent sessions", func(t *testing.T) {
		var wg sync.WaitGroup
		errs := make(chan error, 50)
		for i := 0; i < 50; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				cc, _, err := zk.Connect([]string{g.addr}, 4*time.Second, zk.WithLogger(quietLogger{t}))
				if err != nil {
					errs <- err
					return
				}
				defer cc.Close()
				p := fmt.Sprintf("%s/s%d", root, i)
				if _, err := cc.Create(p, []byte(p), zk.FlagEphemeral, acl); err != nil {
					errs <- fmt.Errorf("%s: %w", p, err)
					return
				}
				if d, _, err := cc.Get(p); err != nil || string(d) != p {
					errs <- fmt.Errorf("%s read back %q: %v", p, d, err)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})

	t.Run("close removes ephemerals", func(t *testing.T) {
		tmp, _ := connect(t, g.addr)
		if _, err := tmp.Create(root+"/eph", nil, zk.FlagEphemeral, acl); err != nil {
			t.Fatal(err)
		}
		tmp.Close()
		// c may sit on another member, which applies the closeSession a moment later.
		deadline := time.Now().Add(10 * time.Second)
		for {
			ok, _, err := c.Exists(root + "/eph")
			if err == nil && !ok {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("ephemeral still there 10s after close: exists=%v %v", ok, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}
