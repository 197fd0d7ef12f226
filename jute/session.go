package jute

// ConnectRequest is the first frame a client sends: no RequestHeader before it. The
// trailing readOnly byte is optional (go-zookeeper and node-zookeeper-client omit it);
// HasReadOnly remembers whether it was on the wire so that Append gives the same bytes.
type ConnectRequest struct {
	ProtocolVersion int32
	LastZxidSeen    int64
	TimeOut         int32
	SessionID       int64
	Passwd          []byte
	ReadOnly        bool
	HasReadOnly     bool
}

// Append implements Record.
func (r *ConnectRequest) Append(dst []byte) []byte {
	dst = AppendInt(dst, r.ProtocolVersion)
	dst = AppendLong(dst, r.LastZxidSeen)
	dst = AppendInt(dst, r.TimeOut)
	dst = AppendLong(dst, r.SessionID)
	dst = AppendBuffer(dst, r.Passwd)
	if r.HasReadOnly {
		dst = AppendBool(dst, r.ReadOnly)
	}
	return dst
}

// Read implements Record.
func (r *ConnectRequest) Read(d *Decoder) {
	r.ProtocolVersion, r.LastZxidSeen, r.TimeOut = d.Int(), d.Long(), d.Int()
	r.SessionID, r.Passwd = d.Long(), d.Buffer()
	r.HasReadOnly = d.err == nil && d.Remaining() > 0
	r.ReadOnly = r.HasReadOnly && d.Bool()
}

// ConnectResponse is the server's first frame: no ReplyHeader before it. A refused
// session (expired, bad password) has TimeOut 0 and SessionID 0.
type ConnectResponse struct {
	ProtocolVersion int32
	TimeOut         int32
	SessionID       int64
	Passwd          []byte
	ReadOnly        bool
	HasReadOnly     bool
}

// Append implements Record.
func (r *ConnectResponse) Append(dst []byte) []byte {
	dst = AppendInt(dst, r.ProtocolVersion)
	dst = AppendInt(dst, r.TimeOut)
	dst = AppendLong(dst, r.SessionID)
	dst = AppendBuffer(dst, r.Passwd)
	if r.HasReadOnly {
		dst = AppendBool(dst, r.ReadOnly)
	}
	return dst
}

// Read implements Record.
func (r *ConnectResponse) Read(d *Decoder) {
	r.ProtocolVersion, r.TimeOut, r.SessionID, r.Passwd = d.Int(), d.Int(), d.Long(), d.Buffer()
	r.HasReadOnly = d.err == nil && d.Remaining() > 0
	r.ReadOnly = r.HasReadOnly && d.Bool()
}

// Expired reports whether the server refused the session (expired or wrong password).
func (r *ConnectResponse) Expired() bool { return r.TimeOut <= 0 || r.SessionID == 0 }

// WatcherEvent is the body of a notification (xid -1).
type WatcherEvent struct {
	Type  EventType
	State KeeperState
	Path  string
}

// Append implements Record.
func (r *WatcherEvent) Append(dst []byte) []byte {
	return AppendString(AppendInt(AppendInt(dst, int32(r.Type)), int32(r.State)), r.Path)
}

// Read implements Record.
func (r *WatcherEvent) Read(d *Decoder) {
	r.Type, r.State, r.Path = EventType(d.Int()), KeeperState(d.Int()), d.String()
}

// AuthPacket is the body of an auth request (opcode 100, xid -4).
type AuthPacket struct {
	Type   int32
	Scheme string
	Auth   []byte
}

// Append implements Record.
func (r *AuthPacket) Append(dst []byte) []byte {
	return AppendBuffer(AppendString(AppendInt(dst, r.Type), r.Scheme), r.Auth)
}

// Read implements Record.
func (r *AuthPacket) Read(d *Decoder) { r.Type, r.Scheme, r.Auth = d.Int(), d.String(), d.Buffer() }

// SetWatches re-registers a connection's watches after a reconnect (opcode 101).
type SetWatches struct {
	RelativeZxid int64
	DataWatches  []string
	ExistWatches []string
	ChildWatches []string
}

// Append implements Record.
func (r *SetWatches) Append(dst []byte) []byte {
	dst = AppendLong(dst, r.RelativeZxid)
	dst = AppendStrings(dst, r.DataWatches)
	dst = AppendStrings(dst, r.ExistWatches)
	return AppendStrings(dst, r.ChildWatches)
}

// Read implements Record.
func (r *SetWatches) Read(d *Decoder) {
	r.RelativeZxid, r.DataWatches, r.ExistWatches, r.ChildWatches = d.Long(), d.Strings(), d.Strings(), d.Strings()
}

// SetWatches2 adds persistent and persistent-recursive watches (opcode 105).
type SetWatches2 struct {
	RelativeZxid               int64
	DataWatches                []string
	ExistWatches               []string
	ChildWatches               []string
	PersistentWatches          []string
	PersistentRecursiveWatches []string
}

// Append implements Record.
func (r *SetWatches2) Append(dst []byte) []byte {
	dst = AppendLong(dst, r.RelativeZxid)
	for _, v := range r.Lists() {
		dst = AppendStrings(dst, *v)
	}
	return dst
}

// Lists are the five watch lists in wire order: data, exist, child, persistent,
// persistent recursive.
func (r *SetWatches2) Lists() [5]*[]string {
	return [5]*[]string{&r.DataWatches, &r.ExistWatches, &r.ChildWatches, &r.PersistentWatches, &r.PersistentRecursiveWatches}
}

// Read implements Record.
func (r *SetWatches2) Read(d *Decoder) {
	r.RelativeZxid = d.Long()
	r.DataWatches, r.ExistWatches, r.ChildWatches = d.Strings(), d.Strings(), d.Strings()
	r.PersistentWatches, r.PersistentRecursiveWatches = d.Strings(), d.Strings()
}
