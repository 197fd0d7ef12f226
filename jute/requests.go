package jute

// Request bodies. Several opcodes share a shape; each shape is one type, with aliases
// named after ZooKeeper's records so code reads like zookeeper.jute.

// PathRequest is a body holding only a path: getACL, sync, getEphemerals (a prefix),
// getAllChildrenNumber.
type PathRequest struct{ Path string }

// Aliases of PathRequest named as in zookeeper.jute.
type (
	GetACLRequest               = PathRequest
	SyncRequest                 = PathRequest
	GetEphemeralsRequest        = PathRequest
	GetAllChildrenNumberRequest = PathRequest
)

// Append implements Record.
func (r *PathRequest) Append(dst []byte) []byte { return AppendString(dst, r.Path) }

// Read implements Record.
func (r *PathRequest) Read(d *Decoder) { r.Path = d.String() }

// PathWatchRequest is exists, getData, getChildren and getChildren2: a path and whether to
// leave a watch.
type PathWatchRequest struct {
	Path  string
	Watch bool
}

// Aliases of PathWatchRequest named as in zookeeper.jute.
type (
	ExistsRequest       = PathWatchRequest
	GetDataRequest      = PathWatchRequest
	GetChildrenRequest  = PathWatchRequest
	GetChildren2Request = PathWatchRequest
)

// Append implements Record.
func (r *PathWatchRequest) Append(dst []byte) []byte {
	return AppendBool(AppendString(dst, r.Path), r.Watch)
}

// Read implements Record.
func (r *PathWatchRequest) Read(d *Decoder) { r.Path, r.Watch = d.String(), d.Bool() }

// PathVersionRequest is delete and check: a path and an expected version (-1 any).
type PathVersionRequest struct {
	Path    string
	Version int32
}

// Aliases of PathVersionRequest named as in zookeeper.jute.
type (
	DeleteRequest       = PathVersionRequest
	CheckVersionRequest = PathVersionRequest
)

// Append implements Record.
func (r *PathVersionRequest) Append(dst []byte) []byte {
	return AppendInt(AppendString(dst, r.Path), r.Version)
}

// Read implements Record.
func (r *PathVersionRequest) Read(d *Decoder) { r.Path, r.Version = d.String(), d.Int() }

// PathTypeRequest is checkWatches, removeWatches (Type: WatcherChildren/Data/Any) and
// addWatch (Type: AddWatchPersistent/AddWatchPersistentRecursive).
type PathTypeRequest struct {
	Path string
	Type int32
}

// Aliases of PathTypeRequest named as in zookeeper.jute.
type (
	CheckWatchesRequest  = PathTypeRequest
	RemoveWatchesRequest = PathTypeRequest
	AddWatchRequest      = PathTypeRequest
)

// Append implements Record.
func (r *PathTypeRequest) Append(dst []byte) []byte {
	return AppendInt(AppendString(dst, r.Path), r.Type)
}

// Read implements Record.
func (r *PathTypeRequest) Read(d *Decoder) { r.Path, r.Type = d.String(), d.Int() }

// CreateRequest is create, create2 and createContainer. Data nil is null on the wire.
type CreateRequest struct {
	Path  string
	Data  []byte
	ACL   []ACL
	Flags CreateMode
}

// Append implements Record.
func (r *CreateRequest) Append(dst []byte) []byte {
	dst = AppendBuffer(AppendString(dst, r.Path), r.Data)
	return AppendInt(appendACLs(dst, r.ACL), int32(r.Flags))
}

// Read implements Record.
func (r *CreateRequest) Read(d *Decoder) {
	r.Path, r.Data, r.ACL, r.Flags = d.String(), d.Buffer(), readACLs(d), CreateMode(d.Int())
}

// CreateTTLRequest is createTTL: a CreateRequest with a time to live in milliseconds.
type CreateTTLRequest struct {
	CreateRequest
	TTL int64
}

// Append implements Record.
func (r *CreateTTLRequest) Append(dst []byte) []byte {
	return AppendLong(r.CreateRequest.Append(dst), r.TTL)
}

// Read implements Record.
func (r *CreateTTLRequest) Read(d *Decoder) { r.CreateRequest.Read(d); r.TTL = d.Long() }

// SetDataRequest replaces a node's data if Version matches (-1 any).
type SetDataRequest struct {
	Path    string
	Data    []byte
	Version int32
}

// Append implements Record.
func (r *SetDataRequest) Append(dst []byte) []byte {
	return AppendInt(AppendBuffer(AppendString(dst, r.Path), r.Data), r.Version)
}

// Read implements Record.
func (r *SetDataRequest) Read(d *Decoder) {
	r.Path, r.Data, r.Version = d.String(), d.Buffer(), d.Int()
}

// SetACLRequest replaces a node's ACL if its ACL version matches.
type SetACLRequest struct {
	Path    string
	ACL     []ACL
	Version int32
}

// Append implements Record.
func (r *SetACLRequest) Append(dst []byte) []byte {
	return AppendInt(appendACLs(AppendString(dst, r.Path), r.ACL), r.Version)
}

// Read implements Record.
func (r *SetACLRequest) Read(d *Decoder) { r.Path, r.ACL, r.Version = d.String(), readACLs(d), d.Int() }

// ReconfigRequest changes the ensemble's membership. The three member lists are ustrings
// that clients send as null when unused, so they are kept as bytes (nil = null).
type ReconfigRequest struct {
	JoiningServers []byte
	LeavingServers []byte
	NewMembers     []byte
	CurConfigID    int64
}

// Append implements Record.
func (r *ReconfigRequest) Append(dst []byte) []byte {
	dst = AppendBuffer(AppendBuffer(AppendBuffer(dst, r.JoiningServers), r.LeavingServers), r.NewMembers)
	return AppendLong(dst, r.CurConfigID)
}

// Read implements Record.
func (r *ReconfigRequest) Read(d *Decoder) {
	r.JoiningServers, r.LeavingServers, r.NewMembers, r.CurConfigID = d.Buffer(), d.Buffer(), d.Buffer(), d.Long()
}

// SASLToken is a SASL request (GetSASLRequest) or reply (SetSASLResponse) body.
type SASLToken struct{ Token []byte }

// Aliases of SASLToken named as in zookeeper.jute.
type (
	GetSASLRequest  = SASLToken
	SetSASLResponse = SASLToken
)

// Append implements Record.
func (r *SASLToken) Append(dst []byte) []byte { return AppendBuffer(dst, r.Token) }

// Read implements Record.
func (r *SASLToken) Read(d *Decoder) { r.Token = d.Buffer() }

// Empty is the body of ping, closeSession, whoAmI requests and of replies that carry
// nothing (delete, setWatches, auth, ...).
type Empty struct{}

// Append implements Record.
func (Empty) Append(dst []byte) []byte { return dst }

// Read implements Record.
func (Empty) Read(*Decoder) {}
