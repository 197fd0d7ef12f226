package proxy

import (
	"fmt"
	"testing"

	"github.com/zkgate/zkgate/jute"
)

// The watch rules row by row, each against the ZooKeeper 3.8 source it copies
// (zookeeper-server, org.apache.zookeeper; see the comments in watchrules.go).
func TestWatchRegistrations(t *testing.T) {
	for _, tc := range []struct {
		op   jute.OpCode
		mode int32
		err  jute.ErrCode
		want watchKind
		src  string
	}{
		// DataTree.statNode adds to dataWatches before `if (n == null) throw NoNode`;
		// ExistsWatchRegistration files rc 0 under dataWatches, NONODE under existWatches.
		{jute.OpExists, -1, jute.ErrOK, watchData, "exists on an existing node: a data watch"},
		{jute.OpExists, -1, jute.ErrNoNode, watchExist, "exists on a missing node: an exist watch"},
		// DataTree.getData: `if (n == null) throw NoNode` before dataWatches.addWatch.
		{jute.OpGetData, -1, jute.ErrOK, watchData, "getData"},
		{jute.OpGetData, -1, jute.ErrNoNode, watchNone, "getData on a missing node"},
		{jute.OpGetData, -1, jute.ErrNoAuth, watchNone, "getData refused by the ACL (checked before)"},
		// DataTree.getChildren: NoNode first, then childWatches.addWatch.
		{jute.OpGetChildren, -1, jute.ErrOK, watchChild, "getChildren"},
		{jute.OpGetChildren2, -1, jute.ErrOK, watchChild, "getChildren2"},
		{jute.OpGetChildren, -1, jute.ErrNoNode, watchNone, "getChildren on a missing node"},
		{jute.OpGetChildren2, -1, jute.ErrNoNode, watchNone, "getChildren2 on a missing node"},
		// DataTree.addWatch: both managers, the request's mode; always rc 0 in 3.8.0.
		{jute.OpAddWatch, jute.AddWatchPersistent, jute.ErrOK, watchPersistent, "addWatch persistent"},
		{jute.OpAddWatch, jute.AddWatchPersistentRecursive, jute.ErrOK, watchRecursive, "addWatch recursive"},
		{jute.OpAddWatch, jute.AddWatchPersistent, jute.ErrNoAuth, watchNone, "addWatch refused"},
		// No watch flag on these (multiRead's getData is sent with watch false: Op.toRequestRecord).
		{jute.OpSetData, -1, jute.ErrOK, watchNone, "setData"},
		{jute.OpMultiRead, -1, jute.ErrOK, watchNone, "multiRead"},
	} {
		if got := registered(tc.op, tc.mode, tc.err); got != tc.want {
			t.Errorf("%s (%v mode %d, %v): registers %v, want %v", tc.src, tc.op, tc.mode, tc.err, got, tc.want)
		}
	}
}

func TestWatchNotifications(t *testing.T) {
	all := watchSet(1<<watchData | 1<<watchExist | 1<<watchChild | 1<<watchPersistent | 1<<watchRecursive)
	for _, tc := range []struct {
		ev   jute.EventType
		left watchSet // of all five kinds on the path, what stays
		src  string
	}{
		// createNode: dataWatches.triggerWatch(path, NodeCreated) — an exist watch sits in dataWatches.
		{jute.EventNodeCreated, 1<<watchChild | 1<<watchPersistent | 1<<watchRecursive, "NodeCreated"},
		// setData: dataWatches.triggerWatch(path, NodeDataChanged)
		{jute.EventNodeDataChanged, 1<<watchChild | 1<<watchPersistent | 1<<watchRecursive, "NodeDataChanged"},
		// deleteNode: dataWatches, then childWatches (suppressed, but the standard entry is removed)
		{jute.EventNodeDeleted, 1<<watchPersistent | 1<<watchRecursive, "NodeDeleted"},
		// a child created or deleted: childWatches.triggerWatch(parent, NodeChildrenChanged)
		{jute.EventNodeChildrenChanged, 1<<watchData | 1<<watchExist | 1<<watchPersistent | 1<<watchRecursive, "NodeChildrenChanged"},
		// the *WatchRemoved events are the client's own (never on the wire): nothing changes
		{jute.EventDataWatchRemoved, all, "DataWatchRemoved"},
		{jute.EventPersistentWatchRemoved, all, "PersistentWatchRemoved"},
	} {
		s := &Session{}
		for k := watchData; k <= watchRecursive; k++ {
			s.addWatch("/p", k)
		}
		s.fired(tc.ev, "/p")
		if got := s.watches["/p"]; got != tc.left {
			t.Errorf("%s: left %s, want %s", tc.src, kinds(got), kinds(tc.left))
		}
		if tc.left == 0 && s.watchBytes != 0 {
			t.Errorf("%s: %d watch bytes left", tc.src, s.watchBytes)
		}
	}
}

func TestWatchRemovals(t *testing.T) {
	for _, tc := range []struct {
		typ  int32
		err  jute.ErrCode
		left watchSet
		src  string
	}{
		// DataTree.removeWatch: Children -> childWatches, Data -> dataWatches (data and exist),
		// Any -> both managers, whatever the mode.
		{jute.WatcherChildren, jute.ErrOK, 1<<watchData | 1<<watchExist | 1<<watchPersistent | 1<<watchRecursive, "Children"},
		{jute.WatcherData, jute.ErrOK, 1<<watchChild | 1<<watchPersistent | 1<<watchRecursive, "Data"},
		{jute.WatcherAny, jute.ErrOK, 0, "Any: every mode"},
		// 3.9+ (WatcherType.Persistent, PersistentRecursive): each its own mode.
		{jute.WatcherPersistent, jute.ErrOK, 1<<watchData | 1<<watchExist | 1<<watchChild | 1<<watchRecursive, "Persistent"},
		{jute.WatcherPersistentRecursive, jute.ErrOK, 1<<watchData | 1<<watchExist | 1<<watchChild | 1<<watchPersistent, "PersistentRecursive"},
		// A removal the server refuses removes nothing: NOWATCHER, or MARSHALLINGERROR
		// from a 3.8 server that does not know types 4 and 5.
		{jute.WatcherAny, jute.ErrNoWatcher, 1<<watchData | 1<<watchExist | 1<<watchChild | 1<<watchPersistent | 1<<watchRecursive, "refused"},
		{jute.WatcherPersistent, jute.ErrMarshallingError, 1<<watchData | 1<<watchExist | 1<<watchChild | 1<<watchPersistent | 1<<watchRecursive, "3.8 and type 4"},
	} {
		s := &Session{}
		for k := watchData; k <= watchRecursive; k++ {
			s.addWatch("/p", k)
		}
		s.applyWatch(jute.OpRemoveWatches, "/p", tc.typ, tc.err)
		if got := s.watches["/p"]; got != tc.left {
			t.Errorf("%s: left %s, want %s", tc.src, kinds(got), kinds(tc.left))
		}
	}
}

// Each kind is replayed in the list the client's own reconnect puts it in
// (ClientCnxn.primeConnection: data, exist, child, persistent, persistentRecursive).
func TestWatchReplayLists(t *testing.T) {
	s := &Session{}
	paths := map[watchKind]string{watchData: "/d", watchExist: "/e", watchChild: "/c", watchPersistent: "/p", watchRecursive: "/r"}
	for k, p := range paths {
		s.addWatch(p, k)
	}
	w := s.Watches()
	lists := w.Lists()
	for k, p := range paths {
		l := *lists[replayList(k)]
		if len(l) != 1 || l[0] != p {
			t.Errorf("kind %d replayed in list %d as %v, want [%s]", k, replayList(k), l, p)
		}
	}
}

// The book is bounded: past maxWatchBytes of paths it is dropped, and the session can no
// longer move (its client re-registers its own watches, as after any reconnect).
func TestWatchBound(t *testing.T) {
	s := &Session{}
	for i := 0; s.unmovable() == ""; i++ {
		if i > maxWatchBytes {
			t.Fatal("no bound")
		}
		s.addWatch(fmt.Sprintf("/%0250d", i), watchData)
	}
	if s.watches != nil || s.watchBytes != 0 {
		t.Fatalf("book kept past the bound: %d paths, %d bytes", len(s.watches), s.watchBytes)
	}
	s.addWatch("/more", watchData)
	if len(s.watches) != 0 {
		t.Fatal("watches kept after the bound")
	}
}

func kinds(w watchSet) string {
	names := []string{"", "data", "exist", "child", "persistent", "recursive"}
	out := ""
	for k := watchData; k <= watchRecursive; k++ {
		if w.has(k) {
			out += names[k] + " "
		}
	}
	return "[" + out + "]"
}
