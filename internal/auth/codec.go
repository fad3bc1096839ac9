package auth

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ErrMalformed is wrapped by every error of UnmarshalChange, UnmarshalState
// and ParseToken.
var ErrMalformed = errors.New("malformed auth encoding")

// encodingVersion is the first byte of an encoded Change and State.
const encodingVersion = 1

// Flags of an encoded ChangePutUser.
const (
	flagSetPassword = 1 << 0
	flagSetRoles    = 1 << 1
	knownFlags      = flagSetPassword | flagSetRoles
)

// Marshal returns the binary encoding of c:
//
//	version  1 byte (1)
//	kind     1 byte
//	flags    1 byte: 1 SetPassword, 2 SetRoles (ChangePutUser only)
//	then, by kind:
//	  init        secret, password hash
//	  put-user    name, [hash if flag 1], [roles if flag 2: uvarint count,
//	              then each name]
//	  put-role    name, permissions: uvarint count, then each: access 1
//	              byte, prefix
//	  delete-*    name
//
// Byte strings are a uvarint length then the bytes. Every valid Change has
// exactly one encoding.
func (c *Change) Marshal() []byte {
	var flags byte
	if c.SetPassword {
		flags |= flagSetPassword
	}
	if c.SetRoles {
		flags |= flagSetRoles
	}
	b := []byte{encodingVersion, byte(c.Kind), flags}
	switch c.Kind {
	case ChangeInit:
		b = appendBytes(b, c.Secret)
		return appendBytes(b, c.PasswordHash)
	}
	b = appendBytes(b, []byte(c.Name))
	switch c.Kind {
	case ChangePutUser:
		if c.SetPassword {
			b = appendBytes(b, c.PasswordHash)
		}
		if c.SetRoles {
			b = binary.AppendUvarint(b, uint64(len(c.Roles)))
			for _, r := range c.Roles {
				b = appendBytes(b, []byte(r))
			}
		}
	case ChangePutRole:
		b = appendPermissions(b, c.Permissions)
	}
	return b
}

// UnmarshalChange decodes a Change encoded by Marshal. It refuses anything
// else, and any Change that fails Validate, with an error wrapping
// ErrMalformed, and never panics. The result shares no memory with b.
func UnmarshalChange(b []byte) (*Change, error) {
	d := decoder{b: b, what: "auth change"}
	if v := d.u8("version"); d.err == nil && v != encodingVersion {
		return nil, d.fail("unknown version %d", v)
	}
	c := &Change{Kind: ChangeKind(d.u8("kind"))}
	flags := d.u8("flags")
	if d.err == nil && (flags&^knownFlags != 0 || (flags != 0 && c.Kind != ChangePutUser)) {
		return nil, d.fail("flags %#x on a %v", flags, c.Kind)
	}
	switch c.Kind {
	case ChangeInit:
		c.Secret = d.bytes("secret")
		c.PasswordHash = d.bytes("password hash")
		if len(c.PasswordHash) == 0 {
			c.PasswordHash = nil
		}
	case ChangePutUser, ChangeDeleteUser, ChangePutRole, ChangeDeleteRole:
		c.Name = string(d.bytes("name"))
	default:
		if d.err == nil {
			return nil, d.fail("unknown kind %d", c.Kind)
		}
	}
	switch c.Kind {
	case ChangePutUser:
		c.SetPassword = flags&flagSetPassword != 0
		c.SetRoles = flags&flagSetRoles != 0
		if c.SetPassword {
			c.PasswordHash = d.bytes("password hash")
		}
		if c.SetRoles {
			c.Roles = d.names("roles", MaxRoles)
		}
	case ChangePutRole:
		c.Permissions = d.permissions()
	}
	if err := d.finish(); err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return c, nil
}

// Marshal returns the binary encoding of s, as a snapshot keeps it:
//
//	version  1 byte (1)
//	secret   byte string
//	users    uvarint count, then each, by name: name, hash, generation
//	         uvarint, roles (uvarint count, then each name)
//	roles    uvarint count, then each, by name: name, permissions (as in a
//	         put-role Change)
func (s *State) Marshal() []byte {
	b := []byte{encodingVersion}
	b = appendBytes(b, s.Secret())
	users := s.Users()
	b = binary.AppendUvarint(b, uint64(len(users)))
	for _, u := range users {
		b = appendBytes(b, []byte(u.Name))
		b = appendBytes(b, u.PasswordHash)
		b = binary.AppendUvarint(b, u.Generation)
		b = binary.AppendUvarint(b, uint64(len(u.Roles)))
		for _, r := range u.Roles {
			b = appendBytes(b, []byte(r))
		}
	}
	roles := s.Roles()
	b = binary.AppendUvarint(b, uint64(len(roles)))
	for _, r := range roles {
		b = appendBytes(b, []byte(r.Name))
		b = appendPermissions(b, r.Permissions)
	}
	return b
}

// UnmarshalState decodes a State encoded by Marshal, with the same
// strictness as UnmarshalChange: names valid, sorted and unique, a secret of
// SecretSize bytes or none. The result shares no memory with b.
func UnmarshalState(b []byte) (*State, error) {
	d := decoder{b: b, what: "auth state"}
	if v := d.u8("version"); d.err == nil && v != encodingVersion {
		return nil, d.fail("unknown version %d", v)
	}
	s := &State{users: map[string]*User{}, roles: map[string]*Role{}}
	s.secret = d.bytes("secret")
	if d.err == nil && len(s.secret) != 0 && len(s.secret) != SecretSize {
		return nil, d.fail("secret of %d bytes", len(s.secret))
	}
	if len(s.secret) == 0 {
		s.secret = nil
	}
	n := d.count("users", 4)
	prev := ""
	for i := 0; i < n && d.err == nil; i++ {
		u := &User{Name: string(d.bytes("user name"))}
		u.PasswordHash = d.bytes("password hash")
		if len(u.PasswordHash) == 0 {
			u.PasswordHash = nil
		}
		u.Generation = d.uvarint("generation")
		u.Roles = d.names("user roles", MaxRoles)
		if d.err != nil {
			break
		}
		if err := ValidName(u.Name); err != nil {
			return nil, d.fail("user %d: %v", i, err)
		}
		if i > 0 && u.Name <= prev {
			return nil, d.fail("user %q not after %q", u.Name, prev)
		}
		if len(u.PasswordHash) > MaxHashLen {
			return nil, d.fail("user %q: hash of %d bytes", u.Name, len(u.PasswordHash))
		}
		prev = u.Name
		s.users[u.Name] = u
	}
	n = d.count("roles", 2)
	for i := 0; i < n && d.err == nil; i++ {
		r := &Role{Name: string(d.bytes("role name"))}
		r.Permissions = d.permissions()
		if d.err != nil {
			break
		}
		if err := ValidName(r.Name); err != nil || r.Name == RootRole {
			return nil, d.fail("role %d: name %q is not allowed", i, r.Name)
		}
		if i > 0 && r.Name <= prev {
			return nil, d.fail("role %q not after %q", r.Name, prev)
		}
		prev = r.Name
		s.roles[r.Name] = r
	}
	if err := d.finish(); err != nil {
		return nil, err
	}
	return s, nil
}

func appendBytes(b, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

func appendPermissions(b []byte, perms []Permission) []byte {
	b = binary.AppendUvarint(b, uint64(len(perms)))
	for _, p := range perms {
		b = append(b, byte(p.Access))
		b = appendBytes(b, p.Prefix)
	}
	return b
}

// decoder reads an encoding; the first error sticks and later reads return
// zero values.
type decoder struct {
	b    []byte
	what string
	err  error
}

func (d *decoder) fail(format string, args ...any) error {
	if d.err == nil {
		d.err = fmt.Errorf("%s: %s: %w", d.what, fmt.Sprintf(format, args...), ErrMalformed)
	}
	return d.err
}

func (d *decoder) u8(name string) byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) < 1 {
		d.fail("truncated %s", name)
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) uvarint(name string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("bad %s", name)
		return 0
	}
	if n != len(binary.AppendUvarint(nil, v)) {
		d.fail("non-minimal %s", name)
		return 0
	}
	d.b = d.b[n:]
	return v
}

// count reads a count of elements of at least minSize bytes each, refusing
// one that the bytes left cannot hold.
func (d *decoder) count(name string, minSize int) int {
	n := d.uvarint(name)
	if d.err == nil && n > uint64(len(d.b)/minSize) {
		d.fail("%s %d exceeds the bytes left", name, n)
		return 0
	}
	return int(n)
}

// bytes reads a byte string and returns a copy of it.
func (d *decoder) bytes(name string) []byte {
	n := d.uvarint(name + " length")
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.fail("truncated %s", name)
		return nil
	}
	v := slices.Clone(d.b[:n])
	d.b = d.b[n:]
	return v
}

// names reads a count and that many names, sorted and unique.
func (d *decoder) names(what string, limit int) []string {
	n := d.count(what, 2)
	if d.err == nil && n > limit {
		d.fail("%d %s; at most %d", n, what, limit)
	}
	var out []string
	for i := 0; i < n && d.err == nil; i++ {
		s := string(d.bytes(what))
		if d.err != nil {
			break
		}
		if err := ValidName(s); err != nil {
			d.fail("%s %d: %v", what, i, err)
			break
		}
		if i > 0 && strings.Compare(out[i-1], s) >= 0 {
			d.fail("%s not sorted or repeated", what)
			break
		}
		out = append(out, s)
	}
	return out
}

func (d *decoder) permissions() []Permission {
	n := d.count("permissions", 2)
	if d.err == nil && n > MaxPermissions {
		d.fail("%d permissions; at most %d", n, MaxPermissions)
	}
	out := []Permission{}
	for i := 0; i < n && d.err == nil; i++ {
		a := Access(d.u8("access"))
		p := d.bytes("prefix")
		if d.err != nil {
			break
		}
		if a != AccessRead && a != AccessReadWrite {
			d.fail("permission %d: unknown access %d", i, a)
			break
		}
		if len(p) > MaxPrefixLen {
			d.fail("permission %d: prefix of %d bytes", i, len(p))
			break
		}
		out = append(out, Permission{Prefix: p, Access: a})
	}
	return out
}

func (d *decoder) finish() error {
	if d.err == nil && len(d.b) != 0 {
		d.fail("%d trailing bytes", len(d.b))
	}
	return d.err
}
