package jute

// PathResponse is create's and sync's reply: the path (a sequential create's real name).
type PathResponse struct{ Path string }

// Aliases of PathResponse named as in zookeeper.jute.
type (
	CreateResponse = PathResponse
	SyncResponse   = PathResponse
)

// Append implements Record.
func (r *PathResponse) Append(dst []byte) []byte { return AppendString(dst, r.Path) }

// Read implements Record.
func (r *PathResponse) Read(d *Decoder) { r.Path = d.String() }

// Create2Response is the reply of create2, createContainer and createTTL.
type Create2Response struct {
	Path string
	Stat Stat
}

// Append implements Record.
func (r *Create2Response) Append(dst []byte) []byte { return r.Stat.Append(AppendString(dst, r.Path)) }

// Read implements Record.
func (r *Create2Response) Read(d *Decoder) { r.Path = d.String(); r.Stat.Read(d) }

// StatResponse is exists', setData's and setACL's reply.
type StatResponse struct{ Stat Stat }

// Aliases of StatResponse named as in zookeeper.jute.
type (
	ExistsResponse  = StatResponse
	SetDataResponse = StatResponse
	SetACLResponse  = StatResponse
)

// Append implements Record.
func (r *StatResponse) Append(dst []byte) []byte { return r.Stat.Append(dst) }

// Read implements Record.
func (r *StatResponse) Read(d *Decoder) { r.Stat.Read(d) }

// GetDataResponse is getData's (and reconfig's) reply.
type GetDataResponse struct {
	Data []byte
	Stat Stat
}

// Append implements Record.
func (r *GetDataResponse) Append(dst []byte) []byte { return r.Stat.Append(AppendBuffer(dst, r.Data)) }

// Read implements Record.
func (r *GetDataResponse) Read(d *Decoder) { r.Data = d.Buffer(); r.Stat.Read(d) }

// GetACLResponse is getACL's reply.
type GetACLResponse struct {
	ACL  []ACL
	Stat Stat
}

// Append implements Record.
func (r *GetACLResponse) Append(dst []byte) []byte { return r.Stat.Append(appendACLs(dst, r.ACL)) }

// Read implements Record.
func (r *GetACLResponse) Read(d *Decoder) { r.ACL = readACLs(d); r.Stat.Read(d) }

// StringsResponse is getChildren's and getEphemerals' reply.
type StringsResponse struct{ Strings []string }

// Aliases of StringsResponse named as in zookeeper.jute.
type (
	GetChildrenResponse   = StringsResponse
	GetEphemeralsResponse = StringsResponse
)

// Append implements Record.
func (r *StringsResponse) Append(dst []byte) []byte { return AppendStrings(dst, r.Strings) }

// Read implements Record.
func (r *StringsResponse) Read(d *Decoder) { r.Strings = d.Strings() }

// GetChildren2Response is getChildren2's reply.
type GetChildren2Response struct {
	Children []string
	Stat     Stat
}

// Append implements Record.
func (r *GetChildren2Response) Append(dst []byte) []byte {
	return r.Stat.Append(AppendStrings(dst, r.Children))
}

// Read implements Record.
func (r *GetChildren2Response) Read(d *Decoder) { r.Children = d.Strings(); r.Stat.Read(d) }

// IntResponse is a body of one int: getAllChildrenNumber's total, and ErrorResponse (a
// failed op inside multi, and addWatch's reply).
type IntResponse struct{ Value int32 }

// Aliases of IntResponse named as in zookeeper.jute.
type (
	GetAllChildrenNumberResponse = IntResponse
	ErrorResponse                = IntResponse
)

// Append implements Record.
func (r *IntResponse) Append(dst []byte) []byte { return AppendInt(dst, r.Value) }

// Read implements Record.
func (r *IntResponse) Read(d *Decoder) { r.Value = d.Int() }

// WhoAmIResponse lists the identities the session is authenticated as.
type WhoAmIResponse struct{ ClientInfo []ClientInfo }

// Append implements Record.
func (r *WhoAmIResponse) Append(dst []byte) []byte {
	if r.ClientInfo == nil {
		return AppendInt(dst, -1)
	}
	dst = AppendInt(dst, int32(len(r.ClientInfo)))
	for i := range r.ClientInfo {
		dst = r.ClientInfo[i].Append(dst)
	}
	return dst
}

// Read implements Record.
func (r *WhoAmIResponse) Read(d *Decoder) {
	n := d.Count(8)
	if n < 0 {
		r.ClientInfo = nil
		return
	}
	r.ClientInfo = make([]ClientInfo, n)
	for i := range r.ClientInfo {
		r.ClientInfo[i].Read(d)
	}
}
