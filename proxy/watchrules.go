package proxy

import "github.com/zkgate/zkgate/jute"

// The watch book mirrors the server's rules. One 3.8 quirk it does not copy: the server
// keeps one mode per (connection, path), so a standard watch set on a path that holds a
// persistent one downgrades it (WatcherModeManager; fixed in 3.9 by ZOOKEEPER-4466). A
// replay re-registers the persistent watch last, as the client's own reconnect would.
// Every rule zkgate copies from ZooKeeper (3.8)
// about watches lives in this file, as tables, each row with the source it comes from;
// watchrules_test.go checks them row by row. The session's book (book.go) only applies
// them.
//
// A session's watches are kept by the kind the client files them under, which is the
// list its reconnect (ClientCnxn.primeConnection, SetWatches2) replays them in: data,
// exist, child, persistent, persistent recursive. A move replays them the same way, so
// the new member answers with exactly the events and registrations the client's own
// reconnect would get (DataTree.setWatches).

// registration is what a request with its watch flag set (or an addWatch) leaves
// registered once its reply comes with err. mode is addWatch's mode, -1 for the others.
type registration struct {
	op   jute.OpCode
	mode int32
	err  jute.ErrCode
	kind watchKind
	src  string
}

// registrations lists what registers a watch; any other (op, mode, err) registers none
// (a NOAUTH getData, say: FinalRequestProcessor checks the ACL before DataTree adds it).
var registrations = []registration{
	// The server adds the watch to dataWatches before it looks the node up
	// (DataTree.statNode), so an exists always watches. The client files it by the
	// result (ZooKeeper.ExistsWatchRegistration.getWatches): a data watch when the node
	// exists, an exist watch when it does not, and replays it from that list.
	{jute.OpExists, -1, jute.ErrOK, watchData, "DataTree.statNode; ExistsWatchRegistration: rc 0 -> dataWatches"},
	{jute.OpExists, -1, jute.ErrNoNode, watchExist, "DataTree.statNode; ExistsWatchRegistration: NONODE -> existWatches"},
	// getData and getChildren throw NoNode before they add the watch
	// (DataTree.getData, getChildren); the client adds it only for rc 0
	// (WatchRegistration.shouldAddWatch).
	{jute.OpGetData, -1, jute.ErrOK, watchData, "DataTree.getData; DataWatchRegistration"},
	{jute.OpGetChildren, -1, jute.ErrOK, watchChild, "DataTree.getChildren; ChildWatchRegistration"},
	{jute.OpGetChildren2, -1, jute.ErrOK, watchChild, "DataTree.getChildren; ChildWatchRegistration"},
	// addWatch (3.6+): AddWatchMode PERSISTENT (0) and PERSISTENT_RECURSIVE (1)
	// (DataTree.addWatch; AddWatchRegistration).
	{jute.OpAddWatch, jute.AddWatchPersistent, jute.ErrOK, watchPersistent, "DataTree.addWatch; AddWatchRegistration"},
	{jute.OpAddWatch, jute.AddWatchPersistentRecursive, jute.ErrOK, watchRecursive, "DataTree.addWatch; AddWatchRegistration"},
}

// registered is the watch a request leaves once answered with err (watchNone for none).
func registered(op jute.OpCode, mode int32, err jute.ErrCode) watchKind {
	for _, r := range registrations {
		if r.op == op && r.mode == mode && r.err == err {
			return r.kind
		}
	}
	return watchNone
}

// consumed is what a notification from the server removes: standard watches fire once,
// persistent ones stay (WatchManager.triggerWatch keeps PERSISTENT and
// PERSISTENT_RECURSIVE). An exist watch sits in the server's dataWatches, so whatever
// fires data watches fires it too.
var consumed = map[jute.EventType]watchSet{
	// DataTree.createNode: dataWatches.triggerWatch(path, NodeCreated)
	jute.EventNodeCreated: 1<<watchData | 1<<watchExist,
	// DataTree.setData: dataWatches.triggerWatch(path, NodeDataChanged)
	jute.EventNodeDataChanged: 1<<watchData | 1<<watchExist,
	// DataTree.deleteNode: dataWatches and childWatches .triggerWatch(path, NodeDeleted)
	jute.EventNodeDeleted: 1<<watchData | 1<<watchExist | 1<<watchChild,
	// DataTree.createNode/deleteNode on a child: childWatches.triggerWatch(parent, NodeChildrenChanged)
	jute.EventNodeChildrenChanged: 1 << watchChild,
}

// removal is what a successful removeWatches of one WatcherType drops
// (DataTree.removeWatch, WatchManager.removeWatcher).
var removal = map[int32]watchSet{
	jute.WatcherChildren: 1 << watchChild,
	jute.WatcherData:     1<<watchData | 1<<watchExist,
	// Any removes the path's watches of every mode, persistent and recursive included.
	jute.WatcherAny: 1<<watchData | 1<<watchExist | 1<<watchChild | 1<<watchPersistent | 1<<watchRecursive,
	// Persistent and PersistentRecursive (3.9+) each remove their own mode only. A 3.8
	// server cannot parse them and answers MARSHALLINGERROR, so nothing is applied there.
	jute.WatcherPersistent:          1 << watchPersistent,
	jute.WatcherPersistentRecursive: 1 << watchRecursive,
}

// replayList is the SetWatches2 list (its Lists() index) a kind is replayed in, the list
// the client's own reconnect would put it in (ClientCnxn.primeConnection).
func replayList(k watchKind) int { return int(k - watchData) }

// noCatchUp: kinds the server re-registers after a move without any catch-up event
// (DataTree.setWatches adds persistent watches unconditionally), so changes made while
// the session moved would be lost without the client knowing. A session holding one
// stays moved only when the new member shows nothing past what the old one had
// delivered (Session.caughtUp); otherwise its client is closed and resyncs, as after
// any reconnect.
const noCatchUp watchSet = 1<<watchPersistent | 1<<watchRecursive
