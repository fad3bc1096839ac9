package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"time"
)

// authorize adds the client's bearer token, if it has one, to req.
func (c *Client) authorize(req *http.Request) {
	c.mu.Lock()
	tok := c.token
	c.mu.Unlock()
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
}

// Token is the answer to Login.
type Token struct {
	Token     string
	ExpiresAt time.Time
}

// Login asks for a token for user with password (POST /auth/token) and
// sends it with every later request of c. A cluster without auth answers
// 404. A wrong user name or password is a 401, too many failed logins a 429
// (StatusError); neither is retried.
func (c *Client) Login(ctx context.Context, user, password string) (Token, error) {
	body, err := json.Marshal(map[string]string{"user": user, "password": password})
	if err != nil {
		return Token{}, err
	}
	a, err := c.do(ctx, request{method: http.MethodPost, path: "/auth/token", body: body})
	if err != nil {
		return Token{}, err
	}
	var ans struct {
		Token     string    `json:"token"`
		ExpiresAt time.Time `json:"expires_at"`
	}
	if err := json.Unmarshal(a.body, &ans); err != nil || ans.Token == "" {
		return Token{}, fmt.Errorf("decode the answer to a login: %v", err)
	}
	c.SetToken(ans.Token)
	return Token{Token: ans.Token, ExpiresAt: ans.ExpiresAt}, nil
}

// SetToken makes c send tok as its bearer token ("" for none).
func (c *Client) SetToken(tok string) {
	c.mu.Lock()
	c.token = tok
	c.mu.Unlock()
}

// Permission allows Access ("read" or "readwrite") on the keys that start
// with Prefix.
type Permission struct {
	Prefix string `json:"prefix"`
	Access string `json:"access"`
}

// UserUpdate is the body of PutUser: a nil field keeps the user's.
type UserUpdate struct {
	Password *string  `json:"password,omitempty"`
	Roles    []string `json:"roles,omitempty"`
	// SetRoles sends Roles even when it is empty (which takes every role).
	SetRoles bool `json:"-"`
}

// PutUser creates or changes user name (PUT /auth/users/{name}); it needs
// the root role, but for a user changing its own password. The answer is
// the user as it now is.
func (c *Client) PutUser(ctx context.Context, name string, u UserUpdate) (Answer, error) {
	m := map[string]any{}
	if u.Password != nil {
		m["password"] = *u.Password
	}
	if u.SetRoles || u.Roles != nil {
		roles := u.Roles
		if roles == nil {
			roles = []string{}
		}
		m["roles"] = roles
	}
	body, err := json.Marshal(m)
	if err != nil {
		return Answer{}, err
	}
	return c.authCall(ctx, http.MethodPut, "/auth/users/"+url.PathEscape(name), body)
}

// GetUser reads user name: {"name","roles","has_password","revision"}.
func (c *Client) GetUser(ctx context.Context, name string) (Answer, error) {
	return c.authCall(ctx, http.MethodGet, "/auth/users/"+url.PathEscape(name), nil)
}

// Users lists the users: {"users":[...]}.
func (c *Client) Users(ctx context.Context) (Answer, error) {
	return c.authCall(ctx, http.MethodGet, "/auth/users", nil)
}

// DeleteUser deletes user name; its tokens stop working.
func (c *Client) DeleteUser(ctx context.Context, name string) (Answer, error) {
	return c.authCall(ctx, http.MethodDelete, "/auth/users/"+url.PathEscape(name), nil)
}

// PutRole creates role name or replaces its permissions.
func (c *Client) PutRole(ctx context.Context, name string, perms []Permission) (Answer, error) {
	if perms == nil {
		perms = []Permission{}
	}
	body, err := json.Marshal(map[string]any{"permissions": perms})
	if err != nil {
		return Answer{}, err
	}
	return c.authCall(ctx, http.MethodPut, "/auth/roles/"+url.PathEscape(name), body)
}

// Role is a role as GetRole reads it.
type Role struct {
	Name        string       `json:"name"`
	Permissions []Permission `json:"permissions"`
	Builtin     bool         `json:"builtin"`
	// Raw is the answer as the server sent it.
	Raw json.RawMessage `json:"-"`
}

// GetRole reads role name.
func (c *Client) GetRole(ctx context.Context, name string) (Role, error) {
	a, err := c.authCall(ctx, http.MethodGet, "/auth/roles/"+url.PathEscape(name), nil)
	if err != nil {
		return Role{}, err
	}
	var r Role
	if err := json.Unmarshal(a.Raw, &r); err != nil {
		return Role{}, fmt.Errorf("decode role %q: %w", name, err)
	}
	r.Raw = a.Raw
	return r, nil
}

// Roles lists the roles, the built-in root first: {"roles":[...]}.
func (c *Client) Roles(ctx context.Context) (Answer, error) {
	return c.authCall(ctx, http.MethodGet, "/auth/roles", nil)
}

// DeleteRole deletes role name and takes it from every user.
func (c *Client) DeleteRole(ctx context.Context, name string) (Answer, error) {
	return c.authCall(ctx, http.MethodDelete, "/auth/roles/"+url.PathEscape(name), nil)
}

// authCall sends an auth administration request. A PUT or DELETE sets the
// state, so sending it again is harmless; it is still sent again only
// where it surely was not made, so that a 404 of a repeated delete cannot
// hide the first one's success.
func (c *Client) authCall(ctx context.Context, method, path string, body []byte) (Answer, error) {
	retry := retrySafe
	if method != http.MethodGet {
		retry = retryIfNotApplied
	}
	a, err := c.do(ctx, request{method: method, path: path, body: body, retry: retry})
	if err != nil {
		return Answer{}, err
	}
	return Answer{Raw: a.body}, nil
}
