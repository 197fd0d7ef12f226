package jute

// ID names an identity in an ACL: a scheme and an id ("world" "anyone", "digest" "u:hash").
type ID struct {
	Scheme string
	ID     string
}

// ACL grants Perms to an identity.
type ACL struct {
	Perms int32
	ID    ID
}

// Append implements Record.
func (a *ACL) Append(dst []byte) []byte {
	return AppendString(AppendString(AppendInt(dst, a.Perms), a.ID.Scheme), a.ID.ID)
}

// Read implements Record.
func (a *ACL) Read(d *Decoder) { a.Perms, a.ID.Scheme, a.ID.ID = d.Int(), d.String(), d.String() }

const aclMinSize = 12 // perms + two empty ustrings

func appendACLs(dst []byte, v []ACL) []byte {
	if v == nil {
		return AppendInt(dst, -1)
	}
	dst = AppendInt(dst, int32(len(v)))
	for i := range v {
		dst = v[i].Append(dst)
	}
	return dst
}

func readACLs(d *Decoder) []ACL {
	n := d.Count(aclMinSize)
	if n < 0 {
		return nil
	}
	out := make([]ACL, n)
	for i := range out {
		out[i].Read(d)
	}
	return out
}

// StatLen is the wire size of a Stat.
const StatLen = 68

// Stat is a znode's metadata.
type Stat struct {
	Czxid          int64
	Mzxid          int64
	Ctime          int64
	Mtime          int64
	Version        int32
	Cversion       int32
	Aversion       int32
	EphemeralOwner int64
	DataLength     int32
	NumChildren    int32
	Pzxid          int64
}

// Append implements Record.
func (s *Stat) Append(dst []byte) []byte {
	dst = AppendLong(dst, s.Czxid)
	dst = AppendLong(dst, s.Mzxid)
	dst = AppendLong(dst, s.Ctime)
	dst = AppendLong(dst, s.Mtime)
	dst = AppendInt(dst, s.Version)
	dst = AppendInt(dst, s.Cversion)
	dst = AppendInt(dst, s.Aversion)
	dst = AppendLong(dst, s.EphemeralOwner)
	dst = AppendInt(dst, s.DataLength)
	dst = AppendInt(dst, s.NumChildren)
	return AppendLong(dst, s.Pzxid)
}

// Read implements Record.
func (s *Stat) Read(d *Decoder) {
	s.Czxid, s.Mzxid, s.Ctime, s.Mtime = d.Long(), d.Long(), d.Long(), d.Long()
	s.Version, s.Cversion, s.Aversion = d.Int(), d.Int(), d.Int()
	s.EphemeralOwner, s.DataLength, s.NumChildren, s.Pzxid = d.Long(), d.Int(), d.Int(), d.Long()
}

// ClientInfo is one identity in a whoAmI reply.
type ClientInfo struct {
	AuthScheme string
	User       string
}

// Append implements Record.
func (c *ClientInfo) Append(dst []byte) []byte {
	return AppendString(AppendString(dst, c.AuthScheme), c.User)
}

// Read implements Record.
func (c *ClientInfo) Read(d *Decoder) { c.AuthScheme, c.User = d.String(), d.String() }
