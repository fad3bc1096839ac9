package auth

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// RootRole is the built-in role that may do everything. RootUser is the user
// that the first start of a cluster with auth creates, holding RootRole.
const (
	RootRole = "root"
	RootUser = "root"
)

// SecretSize is the size of the token signing secret, in bytes.
const SecretSize = 32

// Limits of what a Change may carry; they keep the state small enough to be
// copied on every change.
const (
	MaxNameLen     = 128
	MaxRoles       = 64   // roles of one user
	MaxPermissions = 256  // permissions of one role
	MaxPrefixLen   = 4096 // bytes of one permission's prefix
	MaxHashLen     = 128  // bytes of a password hash (bcrypt's are 60)
)

// ErrInvalid is wrapped by the errors of Change.Validate.
var ErrInvalid = errors.New("invalid auth change")

// Access is what a Permission allows on the keys under its prefix.
type Access uint8

// The kinds of access.
const (
	AccessRead      Access = 1
	AccessReadWrite Access = 2
)

func (a Access) String() string {
	switch a {
	case AccessRead:
		return "read"
	case AccessReadWrite:
		return "readwrite"
	}
	return fmt.Sprintf("access(%d)", uint8(a))
}

// ParseAccess returns the Access named s ("read" or "readwrite").
func ParseAccess(s string) (Access, bool) {
	switch s {
	case "read":
		return AccessRead, true
	case "readwrite":
		return AccessReadWrite, true
	}
	return 0, false
}

// Permission allows Access on every key that starts with Prefix (every key
// when Prefix is empty).
type Permission struct {
	Prefix []byte
	Access Access
}

// User is an account. Its fields are read-only: they are shared by States.
type User struct {
	Name string
	// PasswordHash is the bcrypt hash of its password; empty: no password
	// login (a client certificate may still name the user).
	PasswordHash []byte
	// Roles, sorted and without duplicates.
	Roles []string
	// Generation is the log index of the user's creation or of the last
	// change of its password or roles. Tokens name it (see the package
	// documentation).
	Generation uint64
}

// Role is a named set of permissions. Its fields are read-only.
type Role struct {
	Name        string
	Permissions []Permission
}

// State is the replicated auth state: the token secret, users and roles. The
// zero value (and nil) is the empty state: no secret, no users, no roles.
// A State is immutable (see the package documentation).
type State struct {
	secret []byte
	users  map[string]*User
	roles  map[string]*Role
}

// Secret returns the token signing secret, nil before ChangeInit applied.
func (s *State) Secret() []byte {
	if s == nil {
		return nil
	}
	return s.secret
}

// Empty reports whether s holds nothing.
func (s *State) Empty() bool {
	return s == nil || (len(s.secret) == 0 && len(s.users) == 0 && len(s.roles) == 0)
}

// User returns the user called name.
func (s *State) User(name string) (User, bool) {
	if s == nil {
		return User{}, false
	}
	u, ok := s.users[name]
	if !ok {
		return User{}, false
	}
	return *u, true
}

// Users returns every user, sorted by name.
func (s *State) Users() []User {
	if s == nil {
		return nil
	}
	out := make([]User, 0, len(s.users))
	for _, u := range s.users {
		out = append(out, *u)
	}
	slices.SortFunc(out, func(a, b User) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Role returns the role called name; RootRole is not stored and not
// returned.
func (s *State) Role(name string) (Role, bool) {
	if s == nil {
		return Role{}, false
	}
	r, ok := s.roles[name]
	if !ok {
		return Role{}, false
	}
	return *r, true
}

// Roles returns every defined role, sorted by name.
func (s *State) Roles() []Role {
	if s == nil {
		return nil
	}
	out := make([]Role, 0, len(s.roles))
	for _, r := range s.roles {
		out = append(out, *r)
	}
	slices.SortFunc(out, func(a, b Role) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// ChangeKind is the kind of a Change.
type ChangeKind uint8

// The kinds of changes.
const (
	// ChangeInit sets the token secret if there is none, and creates
	// RootUser with RootRole and PasswordHash if it is not empty and there
	// is no user yet. Several nodes may propose it; the first applied
	// wins.
	ChangeInit ChangeKind = 1
	// ChangePutUser creates or updates user Name: its password hash if
	// SetPassword, its roles if SetRoles (a new user gets what is not set
	// empty).
	ChangePutUser ChangeKind = 2
	// ChangeDeleteUser deletes user Name.
	ChangeDeleteUser ChangeKind = 3
	// ChangePutRole creates role Name or replaces its permissions.
	ChangePutRole ChangeKind = 4
	// ChangeDeleteRole deletes role Name and takes it from every user.
	ChangeDeleteRole ChangeKind = 5
)

func (k ChangeKind) String() string {
	switch k {
	case ChangeInit:
		return "init"
	case ChangePutUser:
		return "put-user"
	case ChangeDeleteUser:
		return "delete-user"
	case ChangePutRole:
		return "put-role"
	case ChangeDeleteRole:
		return "delete-role"
	}
	return fmt.Sprintf("change(%d)", uint8(k))
}

// Change is one change of the auth state, carried by a log entry.
type Change struct {
	Kind ChangeKind
	// Name of the user or role (not for ChangeInit).
	Name string
	// Secret (ChangeInit only): SecretSize random bytes.
	Secret []byte
	// PasswordHash: RootUser's (ChangeInit; empty: no root user is made) or
	// the user's (ChangePutUser with SetPassword; empty: no password).
	PasswordHash []byte
	SetPassword  bool
	// Roles (ChangePutUser with SetRoles).
	Roles    []string
	SetRoles bool
	// Permissions (ChangePutRole).
	Permissions []Permission
}

// ValidName reports why name cannot name a user or role: 1 to MaxNameLen
// bytes of printable ASCII other than space, '/', '%', '?' and '#' (names
// travel in URL paths).
func ValidName(name string) error {
	if name == "" || len(name) > MaxNameLen {
		return fmt.Errorf("a name is 1 to %d bytes, not %d", MaxNameLen, len(name))
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c <= ' ' || c >= 0x7f || c == '/' || c == '%' || c == '?' || c == '#' {
			return fmt.Errorf("name %q: byte %d (%q) is not allowed: use printable ASCII without space, '/', '%%', '?' or '#'", name, i, c)
		}
	}
	return nil
}

// Validate reports why c cannot be applied, with an error wrapping
// ErrInvalid.
func (c *Change) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %v: %s", ErrInvalid, c.Kind, fmt.Sprintf(format, args...))
	}
	if len(c.PasswordHash) > MaxHashLen {
		return bad("password hash of %d bytes", len(c.PasswordHash))
	}
	switch c.Kind {
	case ChangeInit:
		if c.Name != "" || c.SetPassword || c.SetRoles || c.Roles != nil || c.Permissions != nil {
			return bad("carries more than a secret and a hash")
		}
		if len(c.Secret) != SecretSize {
			return bad("secret of %d bytes, want %d", len(c.Secret), SecretSize)
		}
		return nil
	case ChangePutUser, ChangeDeleteUser, ChangePutRole, ChangeDeleteRole:
	default:
		return bad("unknown kind")
	}
	if err := ValidName(c.Name); err != nil {
		return bad("%v", err)
	}
	if c.Secret != nil {
		return bad("a secret")
	}
	if c.Kind != ChangePutUser && (c.SetPassword || c.SetRoles || c.PasswordHash != nil || c.Roles != nil) {
		return bad("user fields")
	}
	if c.Kind != ChangePutRole && c.Permissions != nil {
		return bad("permissions")
	}
	switch c.Kind {
	case ChangePutUser:
		if !c.SetPassword && c.PasswordHash != nil {
			return bad("a hash without SetPassword")
		}
		if !c.SetRoles && c.Roles != nil {
			return bad("roles without SetRoles")
		}
		if len(c.Roles) > MaxRoles {
			return bad("%d roles; at most %d", len(c.Roles), MaxRoles)
		}
		for i, r := range c.Roles {
			if err := ValidName(r); err != nil {
				return bad("role %d: %v", i, err)
			}
			if i > 0 && c.Roles[i-1] >= r {
				return bad("roles not sorted or repeated")
			}
		}
		if c.Name == RootUser && c.SetRoles && !slices.Contains(c.Roles, RootRole) {
			return bad("user %s keeps role %s", RootUser, RootRole)
		}
	case ChangeDeleteUser:
		if c.Name == RootUser {
			return bad("user %s cannot be deleted", RootUser)
		}
	case ChangePutRole, ChangeDeleteRole:
		if c.Name == RootRole {
			return bad("role %s is built in", RootRole)
		}
		if len(c.Permissions) > MaxPermissions {
			return bad("%d permissions; at most %d", len(c.Permissions), MaxPermissions)
		}
		for i, p := range c.Permissions {
			if p.Access != AccessRead && p.Access != AccessReadWrite {
				return bad("permission %d: unknown access %d", i, p.Access)
			}
			if len(p.Prefix) > MaxPrefixLen {
				return bad("permission %d: prefix of %d bytes; at most %d", i, len(p.Prefix), MaxPrefixLen)
			}
		}
	}
	return nil
}

// Outcome is what applying a Change did.
type Outcome uint8

// The outcomes of Apply.
const (
	// Applied: the state changed as the Change says.
	Applied Outcome = iota
	// NotFound: the user or role to delete does not exist; nothing changed.
	NotFound
	// Unchanged: a ChangeInit found a secret and users already; nothing
	// changed.
	Unchanged
)

// Apply returns the state after c, applied as the log entry at index (which
// becomes the Generation of a user it creates or changes), and what it did.
// s is not modified. c must pass Validate (Apply checks it, and changes
// nothing for an invalid one).
func (s *State) Apply(index uint64, c *Change) (*State, Outcome, error) {
	if err := c.Validate(); err != nil {
		return s, Unchanged, err
	}
	n := s.clone()
	switch c.Kind {
	case ChangeInit:
		changed := false
		if len(n.secret) == 0 {
			n.secret = slices.Clone(c.Secret)
			changed = true
		}
		if len(c.PasswordHash) > 0 && len(n.users) == 0 {
			n.users[RootUser] = &User{Name: RootUser, PasswordHash: slices.Clone(c.PasswordHash), Roles: []string{RootRole}, Generation: index}
			changed = true
		}
		if !changed {
			return s, Unchanged, nil
		}
	case ChangePutUser:
		u := &User{Name: c.Name, Generation: index}
		if old, ok := n.users[c.Name]; ok {
			u.PasswordHash, u.Roles = old.PasswordHash, old.Roles
		}
		if c.SetPassword {
			u.PasswordHash = slices.Clone(c.PasswordHash)
		}
		if c.SetRoles {
			u.Roles = slices.Clone(c.Roles)
		}
		n.users[c.Name] = u
	case ChangeDeleteUser:
		if _, ok := n.users[c.Name]; !ok {
			return s, NotFound, nil
		}
		delete(n.users, c.Name)
	case ChangePutRole:
		perms := make([]Permission, len(c.Permissions))
		for i, p := range c.Permissions {
			perms[i] = Permission{Prefix: slices.Clone(p.Prefix), Access: p.Access}
		}
		n.roles[c.Name] = &Role{Name: c.Name, Permissions: perms}
	case ChangeDeleteRole:
		if _, ok := n.roles[c.Name]; !ok {
			return s, NotFound, nil
		}
		delete(n.roles, c.Name)
		for name, u := range n.users {
			if i := slices.Index(u.Roles, c.Name); i >= 0 {
				nu := *u
				nu.Roles = slices.Delete(slices.Clone(u.Roles), i, i+1)
				nu.Generation = index
				n.users[name] = &nu
			}
		}
	}
	return n, Applied, nil
}

// clone returns a shallow copy of s whose maps may be changed; the users and
// roles they point to are shared and must be replaced, not modified.
func (s *State) clone() *State {
	n := &State{users: map[string]*User{}, roles: map[string]*Role{}}
	if s == nil {
		return n
	}
	n.secret = s.secret
	for k, v := range s.users {
		n.users[k] = v
	}
	for k, v := range s.roles {
		n.roles[k] = v
	}
	return n
}
