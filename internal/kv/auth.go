package kv

import (
	"fmt"

	"github.com/distkv/distkv/internal/auth"
)

// The auth state (users, roles and the token signing secret, package auth)
// is part of the replicated state, beside the pairs and out of their key
// space: no key API can read or write it. It changes only by OpAuth
// commands, applied in log order as every other command, so every replica
// holds the same auth state at the same index; a snapshot carries it in its
// state pair (state version 2), so a node restarted or restored from a
// snapshot or backup keeps it.

// Auth returns the auth state as of the last applied command. It is
// immutable; nil (the empty state) until an OpAuth is applied.
func (s *Store) Auth() *auth.State {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.auth
}

// Auth returns the auth state of the view.
func (v *View) Auth() *auth.State { return v.auth }

// applyAuth applies an auth change at revision rev; s.mu must be held for
// writing. A delete of a missing user or role is StatusNotFound, an init
// that found the state initialized StatusConflict; neither changes
// anything.
func (s *Store) applyAuth(rev int64, c *auth.Change) Result {
	n, out, err := s.auth.Apply(uint64(rev), c)
	if err != nil {
		// Validate passed before Apply was called.
		return Result{Status: StatusConflict}
	}
	switch out {
	case auth.NotFound:
		return Result{Status: StatusNotFound}
	case auth.Unchanged:
		return Result{Status: StatusConflict}
	}
	s.auth = n
	s.view = nil
	return Result{Status: StatusOK, Revision: rev}
}

// checkAuth reports what in an OpAuth command does not belong there.
func (c Command) checkAuth() error {
	if c.Auth == nil {
		return fmt.Errorf("%w: an auth command without its change", ErrUnknownOp)
	}
	if len(c.Key) != 0 || len(c.Value) != 0 || c.Kind != KindString || c.Cond != (Cond{}) || c.Txn != nil ||
		!c.Request.IsZero() || c.Time != 0 || c.TTL != 0 || c.Deadline != 0 || c.Now != 0 {
		return fmt.Errorf("%w: an auth command carries only its change", ErrUnknownOp)
	}
	if err := c.Auth.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrUnknownOp, err)
	}
	return nil
}

func appendAuth(dst []byte, c *auth.Change) []byte {
	dst = append(dst, codecVersion, byte(OpAuth), 0)
	if c == nil {
		return appendBytes(dst, nil) // refused by the decoder, as Validate refuses it
	}
	return appendBytes(dst, c.Marshal())
}

// auth decodes the change of an OpAuth.
func (d *decoder) auth() *auth.Change {
	b := d.bytes("auth change")
	if d.err != nil {
		return nil
	}
	c, err := auth.UnmarshalChange(b)
	if err != nil {
		d.fail("%v", err)
		return nil
	}
	return c
}

// authState decodes the auth state of a snapshot's state pair.
func (d *decoder) authState() *auth.State {
	b := d.bytes("auth state")
	if d.err != nil {
		return nil
	}
	s, err := auth.UnmarshalState(b)
	if err != nil {
		d.fail("%v", err)
		return nil
	}
	if s.Empty() {
		d.fail("an empty auth state under version %d", stateVersionAuth)
		return nil
	}
	return s
}

// stateVersion returns the state version of v's snapshot state pair: 5 if
// it holds transactions' locks, records or clock, 4 otherwise (which a
// store that predates them reads); versions 1 to 3 are only read.
func (v *View) stateVersion() byte {
	if v.txnClock != 0 || len(v.locks) > 0 || len(v.records) > 0 {
		return stateVersionTxns
	}
	return stateVersionHist
}
