package auth

import (
	"bytes"
	"slices"
)

// Perms is what one user may do, resolved from its roles. The zero Perms
// allows nothing.
type Perms struct {
	root bool
	// read and write are the key ranges the user may read and write,
	// sorted and merged: no two overlap or touch. write is within read.
	read, write []span
}

// span is the key range start <= key < end; a nil end is unbounded.
type span struct{ start, end []byte }

// Perms resolves the permissions of user: nothing for a user that does not
// exist; everything for one with RootRole. Roles that do not exist grant
// nothing.
func (s *State) Perms(user string) Perms {
	u, ok := s.User(user)
	if !ok {
		return Perms{}
	}
	var read, write []span
	for _, name := range u.Roles {
		if name == RootRole {
			return Perms{root: true}
		}
		r, ok := s.Role(name)
		if !ok {
			continue
		}
		for _, p := range r.Permissions {
			sp := span{start: p.Prefix, end: prefixEnd(p.Prefix)}
			read = append(read, sp)
			if p.Access == AccessReadWrite {
				write = append(write, sp)
			}
		}
	}
	return Perms{read: merge(read), write: merge(write)}
}

// Root reports whether the user holds RootRole: cluster and auth
// administration, and every key.
func (p Perms) Root() bool { return p.root }

// Key reports whether the user may have access a to key.
func (p Perms) Key(key []byte, a Access) bool {
	if p.root {
		return true
	}
	return covered(p.spans(a), key, keyEnd(key))
}

// Range reports whether the user may have access a to every key of start <=
// key < end (a nil or empty end: unbounded). A range the user's permissions
// cover only in part is refused; an empty range (end <= start) is allowed,
// as it reads nothing.
func (p Perms) Range(start, end []byte, a Access) bool {
	if p.root {
		return true
	}
	if len(end) == 0 {
		end = nil
	} else if bytes.Compare(start, end) >= 0 {
		return true
	}
	return covered(p.spans(a), start, end)
}

func (p Perms) spans(a Access) []span {
	if a == AccessReadWrite {
		return p.write
	}
	return p.read
}

// covered reports whether [start, end) lies within one of spans, which are
// merged (see Perms).
func covered(spans []span, start, end []byte) bool {
	for _, s := range spans {
		if bytes.Compare(s.start, start) > 0 {
			return false // sorted: no later span starts at or before start
		}
		if s.end == nil {
			return true
		}
		if end != nil && bytes.Compare(end, s.end) <= 0 {
			return true
		}
	}
	return false
}

// merge sorts spans by start and joins those that overlap or touch.
func merge(spans []span) []span {
	if len(spans) == 0 {
		return nil
	}
	slices.SortFunc(spans, func(a, b span) int { return bytes.Compare(a.start, b.start) })
	out := spans[:1]
	for _, s := range spans[1:] {
		last := &out[len(out)-1]
		if last.end == nil {
			break // unbounded: covers the rest
		}
		if bytes.Compare(s.start, last.end) <= 0 {
			if s.end == nil || bytes.Compare(s.end, last.end) > 0 {
				last.end = s.end
			}
			continue
		}
		out = append(out, s)
	}
	return out
}

// prefixEnd returns the smallest key after every key with prefix; nil
// (unbounded) when prefix is empty or all 0xff.
func prefixEnd(prefix []byte) []byte {
	for i := len(prefix) - 1; i >= 0; i-- {
		if prefix[i] != 0xff {
			end := bytes.Clone(prefix[:i+1])
			end[i]++
			return end
		}
	}
	return nil
}

// keyEnd returns the smallest key after key: key with a zero byte appended.
func keyEnd(key []byte) []byte {
	end := make([]byte, len(key)+1)
	copy(end, key)
	return end
}
