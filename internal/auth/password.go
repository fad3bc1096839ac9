package auth

import (
	"errors"
	"fmt"
	"sync"

	"golang.org/x/crypto/bcrypt"
)

// MaxPasswordLen is the longest password accepted: bcrypt reads no further.
const MaxPasswordLen = 72

// DefaultHashCost is the bcrypt cost of password hashes (about 50 ms of one
// core each): a login is slow enough to make guessing expensive.
const DefaultHashCost = bcrypt.DefaultCost

// HashPassword returns the bcrypt hash of password at cost (DefaultHashCost
// when 0). The salt is random, so the hash is made by the node that proposes
// the change, never by the state machine.
func HashPassword(password []byte, cost int) ([]byte, error) {
	if len(password) == 0 || len(password) > MaxPasswordLen {
		return nil, fmt.Errorf("a password is 1 to %d bytes, not %d", MaxPasswordLen, len(password))
	}
	if cost == 0 {
		cost = DefaultHashCost
	}
	return bcrypt.GenerateFromPassword(password, cost)
}

// dummyHash is compared against when the user does not exist, so that a
// login takes as long for a missing user as for a wrong password (of a
// hash at the default cost). It is made at its first use: making it costs
// what a login does.
var dummyHash = sync.OnceValue(func() []byte {
	h, _ := bcrypt.GenerateFromPassword([]byte("distkv: no such user"), DefaultHashCost)
	return h
})

// CheckPassword returns nil if user exists and password is its password,
// ErrBadPassword otherwise.
func (s *State) CheckPassword(user string, password []byte) error {
	u, ok := s.User(user)
	if !ok || len(u.PasswordHash) == 0 {
		_ = bcrypt.CompareHashAndPassword(dummyHash(), password)
		return ErrBadPassword
	}
	if err := bcrypt.CompareHashAndPassword(u.PasswordHash, password); err != nil {
		if errors.Is(err, bcrypt.ErrMismatchedHashAndPassword) {
			return ErrBadPassword
		}
		return fmt.Errorf("%w: %v", ErrBadPassword, err)
	}
	return nil
}
