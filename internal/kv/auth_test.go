package kv

import (
	"bytes"
	"errors"
	"testing"

	"github.com/distkv/distkv/internal/auth"
)

func authCommands() []Command {
	return []Command{
		{Op: OpAuth, Auth: &auth.Change{Kind: auth.ChangeInit, Secret: bytes.Repeat([]byte{1}, auth.SecretSize), PasswordHash: []byte("$2a$04$hash")}},
		{Op: OpAuth, Auth: &auth.Change{Kind: auth.ChangePutRole, Name: "app", Permissions: []auth.Permission{{Prefix: []byte("app/"), Access: auth.AccessReadWrite}}}},
		{Op: OpAuth, Auth: &auth.Change{Kind: auth.ChangePutUser, Name: "alice", SetPassword: true, PasswordHash: []byte("h"), SetRoles: true, Roles: []string{"app"}}},
		{Op: OpAuth, Auth: &auth.Change{Kind: auth.ChangeDeleteUser, Name: "alice"}},
	}
}

// authStore is a store with keys and an auth state.
func authStore() *Store {
	s := NewStore()
	index := uint64(1)
	for _, c := range append(authCommands()[:3], put("app/x", "1", Cond{})) {
		if _, err := s.Apply(index, c); err != nil {
			panic(err)
		}
		index++
	}
	return s
}

func TestAuthCommandRoundTrip(t *testing.T) {
	for _, c := range authCommands() {
		b := c.Marshal()
		got, err := UnmarshalCommand(b)
		if err != nil {
			t.Fatalf("%v: %v", c.Auth.Kind, err)
		}
		if got.Op != OpAuth || got.Auth.Kind != c.Auth.Kind || !bytes.Equal(got.Marshal(), b) {
			t.Fatalf("%v: decoded %+v", c.Auth.Kind, got)
		}
		if err := got.Validate(); err != nil {
			t.Fatalf("%v: %v", c.Auth.Kind, err)
		}
	}
	bad := []Command{
		{Op: OpAuth},
		{Op: OpAuth, Key: []byte("k"), Auth: authCommands()[1].Auth},
		{Op: OpAuth, Auth: &auth.Change{Kind: auth.ChangeDeleteUser, Name: auth.RootUser}},
	}
	for i, c := range bad {
		if err := c.Validate(); !errors.Is(err, ErrUnknownOp) {
			t.Errorf("bad %d: Validate: %v", i, err)
		}
		if _, err := NewStore().Apply(1, c); err == nil {
			t.Errorf("bad %d: applied", i)
		}
		if _, err := UnmarshalCommand(c.Marshal()); i != 1 && !errors.Is(err, ErrMalformed) { // a key is not encoded
			t.Errorf("bad %d: decoded: %v", i, err)
		}
	}
}

// Users and roles are replicated state outside the key space: no read of
// keys sees them, and a snapshot carries them to a restored replica.
func TestAuthStateInSnapshotNotInKeys(t *testing.T) {
	s := authStore()
	if _, ok := s.Auth().User("alice"); !ok {
		t.Fatal("alice not created")
	}
	kvs, _ := s.Range(nil, nil, 0)
	if len(kvs) != 1 || string(kvs[0].Key) != "app/x" || s.Len() != 1 {
		t.Fatalf("keys: %v", kvs)
	}
	if _, ok := s.Get([]byte{}); ok {
		t.Fatal("the empty key exists")
	}
	view := s.Snapshot()
	// A change after the snapshot is not in it.
	if res, err := s.Apply(10, authCommands()[3]); err != nil || res.Status != StatusOK || res.Revision != 10 {
		t.Fatalf("delete alice: %+v %v", res, err)
	}
	if res, _ := s.Apply(11, authCommands()[3]); res.Status != StatusNotFound {
		t.Fatalf("second delete: %+v", res)
	}
	if res, _ := s.Apply(12, authCommands()[0]); res.Status != StatusConflict {
		t.Fatalf("second init: %+v", res)
	}
	var pairs []KeyValue
	for p := range view.SnapshotPairs() {
		p.Value = bytes.Clone(p.Value)
		pairs = append(pairs, p)
	}
	dst := NewStore()
	if err := dst.RestoreSnapshot(4, func(yield func(KeyValue, error) bool) {
		for _, p := range pairs {
			if !yield(p, nil) {
				return
			}
		}
	}); err != nil {
		t.Fatal(err)
	}
	a := dst.Auth()
	if u, ok := a.User("alice"); !ok || u.Generation != 3 || a.Perms("alice").Key([]byte("app/y"), auth.AccessReadWrite) != true {
		t.Fatalf("restored alice %+v %v", u, ok)
	}
	if !bytes.Equal(a.Secret(), authCommands()[0].Auth.Secret) || dst.Len() != 1 {
		t.Fatal("restored secret or keys differ")
	}
	// The restored store writes the same snapshot.
	i := 0
	for p := range dst.Snapshot().SnapshotPairs() {
		if !bytes.Equal(p.Value, pairs[i].Value) {
			t.Fatalf("pair %d differs after restore", i)
		}
		i++
	}
	// A store without auth writes a version 4 state pair whose auth state
	// is empty (length 0), then its revision, mark and compaction revision.
	for p := range NewStore().Snapshot().SnapshotPairs() {
		if got, want := p.Value[len(stateMagic):], []byte{stateVersionHist, 0, 0, 0, 0, 0, 0}; !bytes.Equal(got, want) {
			t.Fatalf("state % x without auth, want % x", got, want)
		}
		break
	}
	// Restore of plain pairs empties it.
	if err := dst.Restore(5, func(func(KeyValue, error) bool) {}); err != nil || !dst.Auth().Empty() {
		t.Fatalf("after Restore: %v", err)
	}
}
