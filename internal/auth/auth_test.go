package auth

import (
	"bytes"
	"encoding/base64"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

var testSecret = bytes.Repeat([]byte{7}, SecretSize)

func mustApply(t *testing.T, s *State, index uint64, c *Change) *State {
	t.Helper()
	n, out, err := s.Apply(index, c)
	if err != nil || out != Applied {
		t.Fatalf("apply %v at %d: outcome %d, err %v", c.Kind, index, out, err)
	}
	return n
}

func hash(t testing.TB, pw string) []byte {
	t.Helper()
	h, err := HashPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// testState has root (password "rootpw"), role "app-rw" (readwrite on app/),
// "cfg-r" (read on cfg/), and users alice (app-rw, cfg-r; password "alicepw")
// and bob (no roles).
func testState(t testing.TB) *State {
	t.Helper()
	var s *State
	steps := []*Change{
		{Kind: ChangeInit, Secret: testSecret, PasswordHash: hash(t, "rootpw")},
		{Kind: ChangePutRole, Name: "app-rw", Permissions: []Permission{{Prefix: []byte("app/"), Access: AccessReadWrite}}},
		{Kind: ChangePutRole, Name: "cfg-r", Permissions: []Permission{{Prefix: []byte("cfg/"), Access: AccessRead}}},
		{Kind: ChangePutUser, Name: "alice", PasswordHash: hash(t, "alicepw"), SetPassword: true, Roles: []string{"app-rw", "cfg-r"}, SetRoles: true},
		{Kind: ChangePutUser, Name: "bob", PasswordHash: hash(t, "bobpw"), SetPassword: true},
	}
	for i, c := range steps {
		var err error
		var out Outcome
		s, out, err = s.Apply(uint64(i+1), c)
		if err != nil || out != Applied {
			t.Fatalf("step %d: %v %v", i, out, err)
		}
	}
	return s
}

func TestInitOnce(t *testing.T) {
	s := mustApply(t, nil, 1, &Change{Kind: ChangeInit, Secret: testSecret, PasswordHash: hash(t, "a")})
	other := bytes.Repeat([]byte{9}, SecretSize)
	n, out, err := s.Apply(2, &Change{Kind: ChangeInit, Secret: other, PasswordHash: hash(t, "b")})
	if err != nil || out != Unchanged || n != s {
		t.Fatalf("second init: outcome %d err %v, changed state %v", out, err, n != s)
	}
	if !bytes.Equal(s.Secret(), testSecret) {
		t.Fatal("secret replaced")
	}
	if err := s.CheckPassword(RootUser, []byte("a")); err != nil {
		t.Fatalf("root password of the first init: %v", err)
	}
	if u, _ := s.User(RootUser); !reflect.DeepEqual(u.Roles, []string{RootRole}) || u.Generation != 1 {
		t.Fatalf("root user %+v", u)
	}
	// An init without a hash makes no user.
	s2 := mustApply(t, nil, 1, &Change{Kind: ChangeInit, Secret: testSecret})
	if len(s2.Users()) != 0 {
		t.Fatalf("users %v", s2.Users())
	}
}

func TestApplyUsersAndRoles(t *testing.T) {
	s := testState(t)
	if got := len(s.Users()); got != 3 {
		t.Fatalf("%d users", got)
	}
	// A put without a password keeps it and bumps the generation.
	s2 := mustApply(t, s, 10, &Change{Kind: ChangePutUser, Name: "alice", Roles: []string{"cfg-r"}, SetRoles: true})
	u, _ := s2.User("alice")
	if u.Generation != 10 || !reflect.DeepEqual(u.Roles, []string{"cfg-r"}) || s2.CheckPassword("alice", []byte("alicepw")) != nil {
		t.Fatalf("alice after role change: %+v", u)
	}
	if old, _ := s.User("alice"); old.Generation != 4 || len(old.Roles) != 2 {
		t.Fatalf("the old state changed: %+v", old)
	}
	// Deleting a role takes it from its users.
	s3 := mustApply(t, s, 11, &Change{Kind: ChangeDeleteRole, Name: "app-rw"})
	if u, _ := s3.User("alice"); !reflect.DeepEqual(u.Roles, []string{"cfg-r"}) || u.Generation != 11 {
		t.Fatalf("alice after the role's delete: %+v", u)
	}
	if _, out, _ := s3.Apply(12, &Change{Kind: ChangeDeleteRole, Name: "app-rw"}); out != NotFound {
		t.Fatalf("delete of a missing role: %d", out)
	}
	if _, out, _ := s3.Apply(12, &Change{Kind: ChangeDeleteUser, Name: "nobody"}); out != NotFound {
		t.Fatalf("delete of a missing user: %d", out)
	}
	for _, c := range []*Change{
		{Kind: ChangeDeleteUser, Name: RootUser},
		{Kind: ChangePutRole, Name: RootRole},
		{Kind: ChangeDeleteRole, Name: RootRole},
		{Kind: ChangePutUser, Name: RootUser, SetRoles: true, Roles: []string{"app-rw"}},
		{Kind: ChangePutUser, Name: "a/b"},
		{Kind: ChangePutUser, Name: "x", SetRoles: true, Roles: []string{"b", "a"}},
		{Kind: ChangePutRole, Name: "r", Permissions: []Permission{{Access: 3}}},
		{Kind: ChangeInit, Secret: []byte("short")},
	} {
		if n, _, err := s.Apply(20, c); !errors.Is(err, ErrInvalid) || n != s {
			t.Errorf("%+v: err %v", c, err)
		}
	}
}

func TestTokens(t *testing.T) {
	s := testState(t)
	now := time.Unix(1_800_000_000, 0)
	tok, exp, err := s.IssueToken("alice", now, time.Hour)
	if err != nil || !exp.Equal(now.Add(time.Hour)) {
		t.Fatalf("issue: %v %v", exp, err)
	}
	if u, err := s.Authenticate(tok, now.Add(time.Minute)); err != nil || u != "alice" {
		t.Fatalf("fresh token: %q %v", u, err)
	}
	tampered := []byte(tok)
	tampered[len(tampered)/2] ^= 1
	if tampered[len(tampered)/2] == '-'^1 || tampered[len(tampered)/2] == '_'^1 {
		tampered[len(tampered)/2] = 'A'
	}
	// A token naming another user with alice's signature.
	_, payload, sig, _ := ParseToken(tok)
	forged := SignToken([]byte("wrong secret of thirty-two bytes"), Token{User: "root", Expires: now.Add(time.Hour), Generation: 1})
	swapped := []byte(strings.Replace(string(payload), "alice", "bobby", 1))
	cases := []struct {
		name  string
		state *State
		tok   string
		at    time.Time
		want  error
	}{
		{"expired", s, tok, now.Add(time.Hour), ErrTokenExpired},
		{"tampered", s, string(tampered), now, ErrBadToken},
		{"forged", s, forged, now, ErrBadToken},
		{"user swapped", s, encode(append(swapped, sig...)), now, ErrBadToken},
		{"empty", s, "", now, ErrBadToken},
		{"garbage", s, "not a token!", now, ErrBadToken},
		{"deleted user", mustApply(t, s, 20, &Change{Kind: ChangeDeleteUser, Name: "alice"}), tok, now, ErrTokenRevoked},
		{"password changed", mustApply(t, s, 20, &Change{Kind: ChangePutUser, Name: "alice", SetPassword: true, PasswordHash: hash(t, "new")}), tok, now, ErrTokenRevoked},
		{"roles changed", mustApply(t, s, 20, &Change{Kind: ChangePutUser, Name: "alice", SetRoles: true, Roles: []string{}}), tok, now, ErrTokenRevoked},
		{"recreated", mustApply(t, mustApply(t, s, 20, &Change{Kind: ChangeDeleteUser, Name: "alice"}), 21, &Change{Kind: ChangePutUser, Name: "alice", SetRoles: true, Roles: []string{"app-rw", "cfg-r"}}), tok, now, ErrTokenRevoked},
		{"no secret", &State{}, tok, now, ErrNotReady},
	}
	for _, c := range cases {
		u, err := c.state.Authenticate(c.tok, c.at)
		if !errors.Is(err, c.want) || u != "" {
			t.Errorf("%s: user %q, err %v; want %v", c.name, u, err, c.want)
		}
	}
	// A role's permissions changing does not revoke tokens: they are read
	// at each request.
	s2 := mustApply(t, s, 20, &Change{Kind: ChangePutRole, Name: "app-rw"})
	if _, err := s2.Authenticate(tok, now); err != nil {
		t.Fatalf("after a role's permissions changed: %v", err)
	}
	if s2.Perms("alice").Key([]byte("app/x"), AccessRead) {
		t.Fatal("the emptied role still grants app/")
	}
}

func encode(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func TestCheckPassword(t *testing.T) {
	s := testState(t)
	for _, c := range []struct {
		user, pw string
		ok       bool
	}{{"alice", "alicepw", true}, {"alice", "alicepw ", false}, {"alice", "", false}, {"nobody", "alicepw", false}, {"root", "rootpw", true}} {
		err := s.CheckPassword(c.user, []byte(c.pw))
		if (err == nil) != c.ok || (err != nil && !errors.Is(err, ErrBadPassword)) {
			t.Errorf("%s/%q: %v", c.user, c.pw, err)
		}
	}
}

func TestPerms(t *testing.T) {
	s := testState(t)
	s = mustApply(t, s, 10, &Change{Kind: ChangePutRole, Name: "split", Permissions: []Permission{
		{Prefix: []byte("m/a"), Access: AccessRead}, {Prefix: []byte("m/b"), Access: AccessRead}, {Prefix: []byte("z"), Access: AccessRead},
	}})
	s = mustApply(t, s, 11, &Change{Kind: ChangePutUser, Name: "carol", SetRoles: true, Roles: []string{"split"}})
	s = mustApply(t, s, 12, &Change{Kind: ChangePutUser, Name: "dave", SetRoles: true, Roles: []string{"ghost", "root"}})
	alice, bob, carol, root := s.Perms("alice"), s.Perms("bob"), s.Perms("carol"), s.Perms("dave")
	keys := []struct {
		p    Perms
		key  string
		a    Access
		want bool
	}{
		{alice, "app/x", AccessReadWrite, true},
		{alice, "app/", AccessRead, true},
		{alice, "app", AccessRead, false},
		{alice, "cfg/x", AccessRead, true},
		{alice, "cfg/x", AccessReadWrite, false},
		{alice, "other", AccessRead, false},
		{bob, "app/x", AccessRead, false},
		{root, "anything", AccessReadWrite, true},
		{s.Perms("nobody"), "app/x", AccessRead, false},
	}
	for _, c := range keys {
		if got := c.p.Key([]byte(c.key), c.a); got != c.want {
			t.Errorf("key %q %v: %v", c.key, c.a, got)
		}
	}
	if !root.Root() || alice.Root() {
		t.Error("root flags")
	}
	ranges := []struct {
		p          Perms
		start, end string
		a          Access
		want       bool
	}{
		{alice, "app/", "app0", AccessRead, true},        // the whole prefix
		{alice, "app/a", "app/b", AccessReadWrite, true}, // inside
		{alice, "app/", "", AccessRead, false},           // unbounded
		{alice, "app/", "cfg0", AccessRead, false},       // app/, the gap, cfg/
		{alice, "a", "app0", AccessRead, false},          // starts before
		{alice, "cfg/", "cfg0", AccessReadWrite, false},  // read only
		{carol, "m/a", "m/c", AccessRead, true},          // m/a and m/b touch
		{carol, "m/a", "m/d", AccessRead, false},         // m/c not covered
		{carol, "z", "", AccessRead, false},              // z... ends at "{": not unbounded
		{carol, "z", "{", AccessRead, true},
		{carol, "z", "\xff", AccessRead, false}, // past z
		{bob, "x", "x", AccessRead, true},       // empty range
		{bob, "a", "b", AccessRead, false},
		{root, "", "", AccessReadWrite, true},
	}
	for _, c := range ranges {
		if got := c.p.Range([]byte(c.start), []byte(c.end), c.a); got != c.want {
			t.Errorf("range [%q, %q) %v: %v, want %v", c.start, c.end, c.a, got, c.want)
		}
	}
}

func TestThrottle(t *testing.T) {
	th := NewThrottle(ThrottleConfig{Free: 2, Base: time.Second, Max: 4 * time.Second, Forget: time.Minute, MaxKeys: 3})
	now := time.Unix(1000, 0)
	for i := 0; i < 2; i++ {
		th.Failed(now, "u:alice", "a:1.2.3.4")
	}
	if w := th.Wait(now, "u:alice"); w != 0 {
		t.Fatalf("after 2 free failures: wait %v", w)
	}
	th.Failed(now, "u:alice", "a:1.2.3.4")
	if w := th.Wait(now, "u:alice"); w != time.Second {
		t.Fatalf("after 3 failures: %v", w)
	}
	for i := 0; i < 5; i++ {
		th.Failed(now, "u:alice")
	}
	if w := th.Wait(now.Add(time.Second), "u:alice"); w != 3*time.Second {
		t.Fatalf("capped wait a second later: %v", w)
	}
	if w := th.Wait(now, "u:bob", "a:1.2.3.4"); w != time.Second {
		t.Fatalf("address throttled: %v", w)
	}
	th.Succeeded("u:alice")
	if w := th.Wait(now, "u:alice"); w != 0 {
		t.Fatalf("after success: %v", w)
	}
	if w := th.Wait(now.Add(time.Minute), "a:1.2.3.4"); w != 0 {
		t.Fatalf("after forget: %v", w)
	}
	for i := range 10 {
		th.Failed(now, string(rune('a'+i)))
	}
	if len(th.keys) > 3 {
		t.Fatalf("%d keys kept; bound 3", len(th.keys))
	}
}

func TestCodecRoundTrip(t *testing.T) {
	s := testState(t)
	b := s.Marshal()
	s2, err := UnmarshalState(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(s.Users(), s2.Users()) || !bytes.Equal(s2.Secret(), testSecret) || len(s2.Roles()) != 2 ||
		!bytes.Equal(s2.Marshal(), b) {
		t.Fatalf("state round trip: %+v", s2)
	}
	if e, err := UnmarshalState((&State{}).Marshal()); err != nil || !e.Empty() {
		t.Fatalf("empty state: %v", err)
	}
	for _, c := range changeSeeds(t) {
		b := c.Marshal()
		got, err := UnmarshalChange(b)
		if err != nil {
			t.Fatalf("%+v: %v", c, err)
		}
		if !bytes.Equal(got.Marshal(), b) {
			t.Fatalf("%+v: re-encoded differently", c)
		}
	}
	if _, err := UnmarshalChange(append(changeSeeds(t)[0].Marshal(), 0)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("trailing byte: %v", err)
	}
}

func changeSeeds(t testing.TB) []*Change {
	return []*Change{
		{Kind: ChangeInit, Secret: testSecret, PasswordHash: hash(t, "x")},
		{Kind: ChangeInit, Secret: testSecret},
		{Kind: ChangePutUser, Name: "alice", SetPassword: true, PasswordHash: []byte("h"), SetRoles: true, Roles: []string{"a", "b"}},
		{Kind: ChangePutUser, Name: "bob"},
		{Kind: ChangeDeleteUser, Name: "bob"},
		{Kind: ChangePutRole, Name: "r", Permissions: []Permission{{Prefix: []byte("app/"), Access: AccessRead}, {Access: AccessReadWrite}}},
		{Kind: ChangeDeleteRole, Name: "r"},
	}
}

func FuzzUnmarshalChange(f *testing.F) {
	for _, c := range changeSeeds(f) {
		f.Add(c.Marshal())
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := UnmarshalChange(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error without ErrMalformed: %v", err)
			}
			return
		}
		if !bytes.Equal(c.Marshal(), b) {
			t.Fatalf("accepted a non-canonical encoding %x", b)
		}
		if _, _, err := (*State)(nil).Apply(1, c); err != nil {
			t.Fatalf("decoded change does not apply: %v", err)
		}
	})
}

func FuzzUnmarshalState(f *testing.F) {
	f.Add(testState(f).Marshal())
	f.Add((&State{}).Marshal())
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := UnmarshalState(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error without ErrMalformed: %v", err)
			}
			return
		}
		if !bytes.Equal(s.Marshal(), b) {
			t.Fatalf("accepted a non-canonical encoding %x", b)
		}
		for _, u := range s.Users() {
			s.Perms(u.Name).Range(nil, nil, AccessRead)
		}
	})
}

func FuzzParseToken(f *testing.F) {
	s := testState(f)
	now := time.Unix(1_800_000_000, 0)
	tok, _, _ := s.IssueToken("alice", now, time.Hour)
	f.Add(tok)
	f.Add("")
	f.Add("AAAA")
	f.Fuzz(func(t *testing.T, tok string) {
		parsed, payload, sig, err := ParseToken(tok)
		if err != nil {
			if !errors.Is(err, ErrMalformed) || !errors.Is(err, ErrBadToken) {
				t.Fatalf("error without ErrMalformed and ErrBadToken: %v", err)
			}
		} else {
			if len(sig) != macSize || encode(append(append([]byte{}, payload...), sig...)) != tok {
				t.Fatalf("parsed %q does not re-encode", tok)
			}
			_ = parsed
		}
		// Only the token issued above is accepted, by its owner.
		user, err := s.Authenticate(tok, now)
		if err == nil && user != "alice" {
			t.Fatalf("token %q authenticates %q", tok, user)
		}
	})
}
