package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// The errors of State.Authenticate. Each is a reason to answer 401.
var (
	// ErrNotReady: the cluster has no token secret yet (ChangeInit has not
	// been applied on this node).
	ErrNotReady = errors.New("authentication is not set up yet on this node")
	// ErrBadToken: the token is malformed or its signature does not match.
	ErrBadToken = errors.New("invalid token")
	// ErrTokenExpired: the token is past its expiry.
	ErrTokenExpired = errors.New("token expired")
	// ErrTokenRevoked: the token's user was deleted, or its password or
	// roles changed since the token was issued.
	ErrTokenRevoked = errors.New("token revoked: the user was deleted or changed")
	// ErrBadPassword: no such user, or a wrong password (the two are not
	// told apart).
	ErrBadPassword = errors.New("wrong user name or password")
)

// tokenVersion is the first byte of a token's payload.
const tokenVersion = 1

// MaxTokenLen is the longest token ParseToken accepts (characters).
const MaxTokenLen = 1024

// macSize is the size of a token's signature.
const macSize = sha256.Size

// Token is what a token says: who, for which generation of the user, until
// when (whole seconds).
type Token struct {
	User       string
	Generation uint64
	Expires    time.Time
}

// SignToken returns the token for t signed with secret:
// base64url(payload | HMAC-SHA256(secret, payload)), where payload is
//
//	version     1 byte (1)
//	expires     uvarint, Unix seconds
//	generation  uvarint
//	user        the rest of the payload
func SignToken(secret []byte, t Token) string {
	p := []byte{tokenVersion}
	p = binary.AppendUvarint(p, uint64(t.Expires.Unix()))
	p = binary.AppendUvarint(p, t.Generation)
	p = append(p, t.User...)
	p = append(p, mac(secret, p)...)
	return base64.RawURLEncoding.EncodeToString(p)
}

func mac(secret, payload []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write(payload)
	return m.Sum(nil)
}

// ParseToken decodes s without checking its signature: it returns what the
// token says, the signed payload and the signature. It refuses anything
// SignToken does not make with an error wrapping ErrMalformed and
// ErrBadToken, and never panics.
func ParseToken(s string) (t Token, payload, sig []byte, err error) {
	bad := func(why string) (Token, []byte, []byte, error) {
		return Token{}, nil, nil, fmt.Errorf("%w: %s: %w", ErrBadToken, why, ErrMalformed)
	}
	if len(s) > MaxTokenLen {
		return bad("too long")
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(s)
	// The decoder skips line breaks: a token with one in it is another
	// string for the same bytes, which only SignToken's exact form is.
	if err != nil || base64.RawURLEncoding.EncodeToString(raw) != s {
		return bad("not base64url")
	}
	if len(raw) < 1+macSize {
		return bad("too short")
	}
	payload, sig = raw[:len(raw)-macSize], raw[len(raw)-macSize:]
	d := decoder{b: payload[1:], what: "token"}
	if payload[0] != tokenVersion {
		return bad("unknown version")
	}
	exp := d.uvarint("expiry")
	gen := d.uvarint("generation")
	if d.err != nil {
		return bad(d.err.Error())
	}
	if exp > 1<<62 {
		return bad("expiry out of range")
	}
	t = Token{User: string(d.b), Generation: gen, Expires: time.Unix(int64(exp), 0)}
	if ValidName(t.User) != nil {
		return bad("no valid user name")
	}
	return t, payload, sig, nil
}

// IssueToken returns a token for user, valid until now+ttl (rounded down to
// a second), signed with s's secret.
func (s *State) IssueToken(user string, now time.Time, ttl time.Duration) (string, time.Time, error) {
	if len(s.Secret()) == 0 {
		return "", time.Time{}, ErrNotReady
	}
	u, ok := s.User(user)
	if !ok {
		return "", time.Time{}, ErrBadPassword
	}
	exp := now.Add(ttl).Truncate(time.Second)
	return SignToken(s.secret, Token{User: u.Name, Generation: u.Generation, Expires: exp}), exp, nil
}

// Authenticate returns the user a token was issued to, if its signature
// holds under s's secret, it has not expired at now, and its user exists
// with the generation it names. The errors are ErrNotReady, ErrBadToken,
// ErrTokenExpired and ErrTokenRevoked.
func (s *State) Authenticate(token string, now time.Time) (string, error) {
	t, err := s.Verify(token, now)
	return t.User, err
}

// Verify is Authenticate, returning all the token says. As s never
// changes, a token Verify accepted stays valid under s until t.Expires.
func (s *State) Verify(token string, now time.Time) (Token, error) {
	secret := s.Secret()
	if len(secret) == 0 {
		return Token{}, ErrNotReady
	}
	t, payload, sig, err := ParseToken(token)
	if err != nil {
		return Token{}, err
	}
	if !hmac.Equal(sig, mac(secret, payload)) {
		return Token{}, ErrBadToken
	}
	if !now.Before(t.Expires) {
		return Token{}, ErrTokenExpired
	}
	u, ok := s.users[t.User]
	if !ok || u.Generation != t.Generation {
		return Token{}, ErrTokenRevoked
	}
	return t, nil
}
