package jute

import "testing"

// The wire values are the protocol: a renumbering here would corrupt every session.
func TestWireConstantsPinned(t *testing.T) {
	ops := map[OpCode]int32{
		OpNotification: 0, OpCreate: 1, OpDelete: 2, OpExists: 3, OpGetData: 4, OpSetData: 5,
		OpGetACL: 6, OpSetACL: 7, OpGetChildren: 8, OpSync: 9, OpPing: 11, OpGetChildren2: 12,
		OpCheck: 13, OpMulti: 14, OpCreate2: 15, OpReconfig: 16, OpCheckWatches: 17,
		OpRemoveWatches: 18, OpCreateContainer: 19, OpDeleteContainer: 20, OpCreateTTL: 21,
		OpMultiRead: 22, OpAuth: 100, OpSetWatches: 101, OpSASL: 102, OpGetEphemerals: 103,
		OpGetAllChildrenNumber: 104, OpSetWatches2: 105, OpAddWatch: 106, OpWhoAmI: 107,
		OpCreateSession: -10, OpCloseSession: -11, OpError: -1,
	}
	for op, want := range ops {
		if int32(op) != want {
			t.Errorf("%v = %d, want %d", op, op, want)
		}
	}
	if len(opNames) != len(ops) {
		t.Errorf("%d opcode names, %d pinned", len(opNames), len(ops))
	}
	errs := map[ErrCode]int32{
		ErrOK: 0, ErrSystemError: -1, ErrRuntimeInconsistency: -2, ErrDataInconsistency: -3,
		ErrConnectionLoss: -4, ErrMarshallingError: -5, ErrUnimplemented: -6,
		ErrOperationTimeout: -7, ErrBadArguments: -8, ErrUnknownSession: -12,
		ErrNewConfigNoQuorum: -13, ErrReconfigInProgress: -14, ErrAPIError: -100, ErrNoNode: -101,
		ErrNoAuth: -102, ErrBadVersion: -103, ErrNoChildrenForEphemerals: -108,
		ErrNodeExists: -110, ErrNotEmpty: -111, ErrSessionExpired: -112,
		ErrInvalidCallback: -113, ErrInvalidACL: -114, ErrAuthFailed: -115,
		ErrSessionMoved: -118, ErrNotReadOnly: -119, ErrEphemeralOnLocalSession: -120,
		ErrNoWatcher: -121, ErrRequestTimeout: -122, ErrReconfigDisabled: -123,
		ErrSessionClosedRequireSASL: -124, ErrQuotaExceeded: -125, ErrThrottledOp: -127,
	}
	for c, want := range errs {
		if int32(c) != want {
			t.Errorf("%v = %d, want %d", c, c, want)
		}
	}
	if len(errNames) != len(errs) {
		t.Errorf("%d error names, %d pinned", len(errNames), len(errs))
	}
	events := map[EventType]int32{EventNone: -1, EventNodeCreated: 1, EventNodeDeleted: 2,
		EventNodeDataChanged: 3, EventNodeChildrenChanged: 4, EventDataWatchRemoved: 5,
		EventChildWatchRemoved: 6, EventPersistentWatchRemoved: 7}
	for e, want := range events {
		if int32(e) != want {
			t.Errorf("%v = %d, want %d", e, e, want)
		}
	}
	states := map[KeeperState]int32{StateUnknown: -1, StateDisconnected: 0, StateNoSyncConnected: 1,
		StateSyncConnected: 3, StateAuthFailed: 4, StateConnectedReadOnly: 5,
		StateSaslAuthenticated: 6, StateExpired: -112, StateClosed: 7}
	for s, want := range states {
		if int32(s) != want {
			t.Errorf("%v = %d, want %d", s, s, want)
		}
	}
	modes := map[CreateMode]int32{ModePersistent: 0, ModeEphemeral: 1, ModePersistentSequential: 2,
		ModeEphemeralSequential: 3, ModeContainer: 4, ModePersistentWithTTL: 5, ModePersistentSequentialTTL: 6}
	for m, want := range modes {
		if int32(m) != want {
			t.Errorf("%v = %d, want %d", m, m, want)
		}
	}
	for name, got := range map[string]int32{"XidNotification": XidNotification, "XidPing": XidPing,
		"XidAuth": XidAuth, "XidSetWatches": XidSetWatches} {
		want := map[string]int32{"XidNotification": -1, "XidPing": -2, "XidAuth": -4, "XidSetWatches": -8}[name]
		if got != want {
			t.Errorf("%s = %d, want %d", name, got, want)
		}
	}
	if DefaultMaxBuffer != 1048575 || StatLen != 68 || PermAll != 31 {
		t.Error("DefaultMaxBuffer, StatLen or PermAll changed")
	}
}

func TestNames(t *testing.T) {
	for _, c := range []struct{ got, want string }{
		{OpGetData.String(), "getData"}, {OpCloseSession.String(), "closeSession"},
		{OpCode(999).String(), "op(999)"}, {ErrNoNode.String(), "NONODE"},
		{ErrThrottledOp.String(), "THROTTLEDOP"}, {ErrCode(-55).String(), "err(-55)"},
		{EventNodeDataChanged.String(), "NodeDataChanged"}, {StateExpired.String(), "Expired"},
		{ModeEphemeralSequential.String(), "EPHEMERAL_SEQUENTIAL"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
	if !ErrOperationTimeout.System() || ErrNoNode.System() || ErrOK.System() {
		t.Error("System() misclassifies")
	}
}
