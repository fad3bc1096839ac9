package httpapi

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/distkv/distkv/internal/auth"
	"github.com/distkv/distkv/internal/kv"
)

// DefaultTokenTTL is how long a token of POST /auth/token is valid.
const DefaultTokenTTL = time.Hour

// AuthConfig turns authentication and authorization on (Config.Auth). The
// zero value of every field means its default.
//
// With it, every request but GET /healthz, /readyz, /ui and POST /auth/token
// must name a user: Authorization: Bearer <token>, or a client certificate
// that CertUser maps to a user. Requests on keys (/key/, /keys, /txn) need
// the permissions of the user's roles on every key they touch; everything
// else (cluster, compaction, backup, deduplication and auth
// administration) needs the root role. See docs/api.md.
type AuthConfig struct {
	// TokenTTL is how long an issued token is valid (default 1h).
	TokenTTL time.Duration
	// HashCost is the bcrypt cost of password hashes made by PUT
	// /auth/users (default auth.DefaultHashCost).
	HashCost int
	// Throttle slows failed logins per user and per client address.
	Throttle auth.ThrottleConfig
	// CertUser returns the user named by the client certificate of a TLS
	// connection, "" for none (default CertCommonName). It is called only
	// for requests without an Authorization header.
	CertUser func(*tls.ConnectionState) string
}

// CertCommonName returns the common name of a client certificate that the
// server verified (the connection has verified chains), "" otherwise: an
// unverified certificate names no one.
func CertCommonName(cs *tls.ConnectionState) string {
	if cs == nil || len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return ""
	}
	return cs.VerifiedChains[0][0].Subject.CommonName
}

func (c *AuthConfig) validate() error {
	if c.TokenTTL == 0 {
		c.TokenTTL = DefaultTokenTTL
	}
	if c.HashCost == 0 {
		c.HashCost = auth.DefaultHashCost
	}
	if c.CertUser == nil {
		c.CertUser = CertCommonName
	}
	if c.TokenTTL < time.Second {
		return fmt.Errorf("httpapi: Auth.TokenTTL is %v; it must be at least 1s", c.TokenTTL)
	}
	return nil
}

// AuthBackend is what the API needs beside Backend when Config.Auth is set:
// the auth state of the node's state machine as of its last applied entry.
type AuthBackend interface {
	AuthState() *auth.State
}

// authn is the authentication and authorization of one handler; nil when
// auth is off.
type authn struct {
	cfg      AuthConfig
	state    func() *auth.State
	throttle *auth.Throttle
	// verified caches the tokens verified under one auth state, so that a
	// token's signature is checked and its user's permissions resolved
	// once per state, not per request; a new state starts a new cache.
	verified atomic.Pointer[tokenCache]
}

// maxCachedTokens bounds a tokenCache; past it tokens are verified each
// time.
const maxCachedTokens = 10000

// tokenCache holds the tokens verified under state. A token in it is valid
// until its expiry, as state never changes.
type tokenCache struct {
	state  *auth.State
	tokens sync.Map // token string -> *principal
	n      atomic.Int64
}

// cache returns the token cache of st.
func (a *authn) cache(st *auth.State) *tokenCache {
	c := a.verified.Load()
	if c != nil && c.state == st {
		return c
	}
	n := &tokenCache{state: st}
	if a.verified.CompareAndSwap(c, n) {
		return n
	}
	return n // another request swapped first: use a private one this time
}

func newAuthn(cfg *AuthConfig, b Backend) (*authn, error) {
	if cfg == nil {
		return nil, nil
	}
	c := *cfg
	if err := c.validate(); err != nil {
		return nil, err
	}
	ab, ok := b.(AuthBackend)
	if !ok {
		return nil, errors.New("httpapi: Config.Auth is set but the Backend has no auth state (AuthBackend)")
	}
	return &authn{cfg: c, state: ab.AuthState, throttle: auth.NewThrottle(c.Throttle)}, nil
}

// principal is the user a request was authenticated as, and what it may
// do.
type principal struct {
	user    string
	perms   auth.Perms
	expires time.Time // of the token it came from (zero: a certificate)
}

type principalKey struct{}

// principalOf returns the principal of r; nil when auth is off or r needs
// none.
func principalOf(r *http.Request) *principal {
	p, _ := r.Context().Value(principalKey{}).(*principal)
	return p
}

// authPrefix starts the paths of the auth endpoints.
const (
	authPrefix    = "/auth/"
	authTokenPath = "/auth/token"
)

// authRoute is Route of the path authPrefix+rest.
func authRoute(rest string) string {
	kind, name, named := strings.Cut(rest, "/")
	switch {
	case kind == "token" && !named:
		return authTokenPath
	case (kind == "users" || kind == "roles") && !named:
		return authPrefix + kind
	case (kind == "users" || kind == "roles") && name != "" && !strings.Contains(name, "/"):
		return authPrefix + kind + "/{name}"
	}
	return "other"
}

// admit authenticates r and checks that its user may use path at all. It
// answers 401 or 403 itself and returns false; otherwise it returns r with
// its principal.
func (h *handler) admit(w http.ResponseWriter, r *http.Request, path string) (*http.Request, bool) {
	switch path {
	case "/healthz", "/readyz", uiPath, uiPath + "/", authTokenPath:
		return r, true
	}
	p, err := h.auth.identify(r, h.now())
	if err != nil {
		if errors.Is(err, auth.ErrNotReady) {
			writeError(w, http.StatusServiceUnavailable, err.Error())
			return nil, false
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="distkv"`)
		writeError(w, http.StatusUnauthorized, err.Error())
		return nil, false
	}
	if !p.perms.Root() && needsRoot(r, path) {
		writeError(w, http.StatusForbidden, fmt.Sprintf("user %q may not use %s %s: it needs the %s role", p.user, r.Method, Route(r), auth.RootRole))
		return nil, false
	}
	return r.WithContext(context.WithValue(r.Context(), principalKey{}, p)), true
}

// needsRoot reports whether path is administration: anything but keys,
// scans, watches, transactions, the auth endpoints (which check for themselves),
// /request_status (which finds only the caller's own requests, see
// requestID), and paths that the API does not serve (answered 404).
func needsRoot(r *http.Request, path string) bool {
	if strings.HasPrefix(path, keyPrefix) || strings.HasPrefix(path, authPrefix) {
		return false
	}
	switch path {
	case "/keys", "/watch", txnPath, "/request_status":
		return false
	}
	return Route(r) != "other"
}

// errNoCredentials is the 401 of a request that names no user.
var errNoCredentials = errors.New("authentication required: send Authorization: Bearer <token> (from POST /auth/token) or a client certificate")

// identify returns the user r authenticates as, under the node's current
// auth state, and what it may do.
func (a *authn) identify(r *http.Request, now time.Time) (*principal, error) {
	st := a.state()
	if len(st.Secret()) == 0 {
		return nil, auth.ErrNotReady
	}
	hdr, ok := r.Header["Authorization"]
	if !ok {
		if name := a.cfg.CertUser(r.TLS); name != "" {
			if _, ok := st.User(name); ok {
				return &principal{user: name, perms: st.Perms(name)}, nil
			}
			return nil, fmt.Errorf("the client certificate names user %q, which does not exist", name)
		}
		return nil, errNoCredentials
	}
	if len(hdr) != 1 {
		return nil, errors.New("more than one Authorization header")
	}
	scheme, tok, ok := strings.Cut(hdr[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return nil, errors.New("the Authorization header is not Bearer <token>")
	}
	tok = strings.TrimSpace(tok)
	c := a.cache(st)
	if v, ok := c.tokens.Load(tok); ok {
		if p := v.(*principal); now.Before(p.expires) {
			return p, nil
		}
	}
	t, err := st.Verify(tok, now)
	if err != nil {
		return nil, fmt.Errorf("%w; get a new token from POST /auth/token", err)
	}
	p := &principal{user: t.User, perms: st.Perms(t.User), expires: t.Expires}
	if c.n.Add(1) <= maxCachedTokens {
		c.tokens.Store(tok, p)
	}
	return p, nil
}

// mayKey reports whether r may read (or write) key; if not it answers 403.
func (h *handler) mayKey(w http.ResponseWriter, r *http.Request, key []byte, write bool) bool {
	p := principalOf(r)
	if p == nil || p.perms.Key(key, access(write)) {
		return true
	}
	writeError(w, http.StatusForbidden, fmt.Sprintf("user %q may not %s key %q", p.user, verb(write), key))
	return false
}

// mayRange reports whether r may read every key of [start, end) (end nil:
// unbounded); if not it answers 403. A range only partly covered is
// refused whole.
func (h *handler) mayRange(w http.ResponseWriter, r *http.Request, start, end []byte) bool {
	p := principalOf(r)
	if p == nil || p.perms.Range(start, end, auth.AccessRead) {
		return true
	}
	writeError(w, http.StatusForbidden, fmt.Sprintf("user %q may not read every key from %q to %q; scan a range its roles cover", p.user, start, end))
	return false
}

// mayTxn reports whether r may read every key tx compares or gets and
// write every key it puts or deletes, in both branches; if not it answers
// 403 and the transaction is refused whole.
func (h *handler) mayTxn(w http.ResponseWriter, r *http.Request, tx *kv.Txn) bool {
	p := principalOf(r)
	if p == nil || p.perms.Root() {
		return true
	}
	for _, c := range tx.Compares {
		if !p.perms.Key(c.Key, auth.AccessRead) {
			writeError(w, http.StatusForbidden, fmt.Sprintf("user %q may not read key %q (compared); the transaction was not applied", p.user, c.Key))
			return false
		}
	}
	for _, ops := range [][]kv.TxnOp{tx.Success, tx.Failure} {
		for _, op := range ops {
			write := op.Type != kv.TxnGet
			if !p.perms.Key(op.Key, access(write)) {
				writeError(w, http.StatusForbidden, fmt.Sprintf("user %q may not %s key %q; the transaction was not applied", p.user, verb(write), op.Key))
				return false
			}
		}
	}
	return true
}

func access(write bool) auth.Access {
	if write {
		return auth.AccessReadWrite
	}
	return auth.AccessRead
}

func verb(write bool) string {
	if write {
		return "write"
	}
	return "read"
}

// serveAuth serves /auth/token, /auth/users[/{name}] and /auth/roles[/{name}].
func (h *handler) serveAuth(w http.ResponseWriter, r *http.Request, path string) {
	if path == authTokenPath {
		if r.Method != http.MethodPost {
			methodNotAllowed(w, "POST")
			return
		}
		h.issueToken(w, r)
		return
	}
	rest := strings.TrimPrefix(path, authPrefix)
	if authRoute(rest) == "other" {
		writeJSON(w, http.StatusNotFound, bodyNotFound)
		return
	}
	kind, esc, named := strings.Cut(rest, "/")
	if !named {
		if !methodGet(w, r) || !h.mayAdminister(w, r) {
			return
		}
		h.listAuth(w, kind)
		return
	}
	name, err := url.PathUnescape(esc)
	if err != nil || auth.ValidName(name) != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("%q is not a valid %s name: %v", esc, strings.TrimSuffix(kind, "s"), auth.ValidName(name)))
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodPut, http.MethodDelete:
	default:
		methodNotAllowed(w, allowKey)
		return
	}
	if kind == "users" {
		h.serveUser(w, r, name)
	} else {
		h.serveRole(w, r, name)
	}
}

// mayAdminister reports whether r's user holds the root role; if not it
// answers 403.
func (h *handler) mayAdminister(w http.ResponseWriter, r *http.Request) bool {
	p := principalOf(r)
	if p != nil && p.perms.Root() {
		return true
	}
	user := ""
	if p != nil {
		user = p.user
	}
	writeError(w, http.StatusForbidden, fmt.Sprintf("user %q may not administer users and roles: it needs the %s role", user, auth.RootRole))
	return false
}

type tokenRequest struct {
	User     string `json:"user"`
	Password string `json:"password"`
}

type tokenAnswer struct {
	Token     string `json:"token"`
	ExpiresAt string `json:"expires_at"`
}

// issueToken serves POST /auth/token. Failed logins are slowed per user and
// per client address (429 with Retry-After); no password or token is ever
// logged.
func (h *handler) issueToken(w http.ResponseWriter, r *http.Request) {
	var req tokenRequest
	if aerr := decodeStrict(r, &req); aerr != nil {
		writeAPIError(w, aerr)
		return
	}
	if req.User == "" || req.Password == "" {
		writeError(w, http.StatusUnprocessableEntity, `the body must be {"user": ..., "password": ...}`)
		return
	}
	st := h.auth.state()
	if len(st.Secret()) == 0 {
		writeError(w, http.StatusServiceUnavailable, auth.ErrNotReady.Error())
		return
	}
	keys := []string{"user\x00" + req.User, "addr\x00" + clientHost(r)}
	if wait := h.auth.throttle.Wait(h.now(), keys...); wait > 0 {
		secs := int((wait + time.Second - 1) / time.Second)
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		writeError(w, http.StatusTooManyRequests, fmt.Sprintf("too many failed logins; try again in %ds", secs))
		return
	}
	if err := st.CheckPassword(req.User, []byte(req.Password)); err != nil {
		h.auth.throttle.Failed(h.now(), keys...)
		h.log.Info("failed login", "user", req.User, "remote", clientHost(r))
		writeError(w, http.StatusUnauthorized, auth.ErrBadPassword.Error())
		return
	}
	h.auth.throttle.Succeeded(keys[0])
	tok, exp, err := st.IssueToken(req.User, h.now(), h.auth.cfg.TokenTTL)
	if err != nil {
		writeError(w, http.StatusUnauthorized, err.Error())
		return
	}
	body, _ := json.Marshal(tokenAnswer{Token: tok, ExpiresAt: exp.UTC().Format(time.RFC3339)})
	writeJSON(w, http.StatusOK, body)
}

// decodeStrict decodes a small JSON object body into v, refusing unknown
// fields and trailing data (422).
func decodeStrict(r *http.Request, v any) *apiError {
	dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return unprocessable("request body is not the expected JSON object: %v", err)
	}
	if dec.More() {
		return unprocessable("request body holds more than one JSON value")
	}
	return nil
}

// clientHost is the address of r's client, without the port.
func clientHost(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// userBody is a user as PUT takes it and GET answers it. A PUT that leaves
// out password or roles keeps the user's.
type userBody struct {
	Name     string    `json:"name,omitempty"`
	Password *string   `json:"password,omitempty"`
	Roles    *[]string `json:"roles,omitempty"`
}

type userAnswer struct {
	Name        string   `json:"name"`
	Roles       []string `json:"roles"`
	HasPassword bool     `json:"has_password"`
	Revision    uint64   `json:"revision"`
}

func userOf(u auth.User) userAnswer {
	roles := u.Roles
	if roles == nil {
		roles = []string{}
	}
	return userAnswer{Name: u.Name, Roles: roles, HasPassword: len(u.PasswordHash) > 0, Revision: u.Generation}
}

type permissionBody struct {
	Prefix string `json:"prefix"`
	Access string `json:"access"`
}

type roleBody struct {
	Name        string            `json:"name,omitempty"`
	Permissions *[]permissionBody `json:"permissions"`
	Builtin     bool              `json:"builtin,omitempty"`
}

func roleOf(r auth.Role) roleBody {
	perms := make([]permissionBody, len(r.Permissions))
	for i, p := range r.Permissions {
		perms[i] = permissionBody{Prefix: string(p.Prefix), Access: p.Access.String()}
	}
	return roleBody{Name: r.Name, Permissions: &perms}
}

// rootRoleBody is how GET shows the built-in root role.
func rootRoleBody() roleBody {
	perms := []permissionBody{{Prefix: "", Access: auth.AccessReadWrite.String()}}
	return roleBody{Name: auth.RootRole, Permissions: &perms, Builtin: true}
}

func (h *handler) listAuth(w http.ResponseWriter, kind string) {
	st := h.auth.state()
	var v any
	if kind == "users" {
		users := []userAnswer{}
		for _, u := range st.Users() {
			users = append(users, userOf(u))
		}
		v = map[string]any{"users": users}
	} else {
		roles := []roleBody{rootRoleBody()}
		for _, r := range st.Roles() {
			roles = append(roles, roleOf(r))
		}
		v = map[string]any{"roles": roles}
	}
	body, _ := json.Marshal(v)
	writeJSON(w, http.StatusOK, body)
}

// serveUser serves /auth/users/{name}. Root may do everything; another user
// may read itself and change its own password, nothing else.
func (h *handler) serveUser(w http.ResponseWriter, r *http.Request, name string) {
	p := principalOf(r)
	self := p != nil && p.user == name
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		if !self && !h.mayAdminister(w, r) {
			return
		}
		u, ok := h.auth.state().User(name)
		if !ok {
			writeError(w, http.StatusNotFound, fmt.Sprintf("user %q not found", name))
			return
		}
		body, _ := json.Marshal(userOf(u))
		writeJSON(w, http.StatusOK, body)
	case http.MethodDelete:
		if !h.mayAdminister(w, r) {
			return
		}
		if name == auth.RootUser {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("user %s cannot be deleted", auth.RootUser))
			return
		}
		h.proposeAuth(w, r, &auth.Change{Kind: auth.ChangeDeleteUser, Name: name}, "user", name)
	case http.MethodPut:
		var b userBody
		if aerr := decodeStrict(r, &b); aerr != nil {
			writeAPIError(w, aerr)
			return
		}
		if !(self && b.Roles == nil) && !h.mayAdminister(w, r) {
			return
		}
		c := &auth.Change{Kind: auth.ChangePutUser, Name: name}
		st := h.auth.state()
		if _, exists := st.User(name); !exists && b.Password == nil {
			writeError(w, http.StatusUnprocessableEntity, "a new user needs a password")
			return
		}
		if b.Roles != nil {
			roles := slices.Clone(*b.Roles)
			slices.Sort(roles)
			roles = slices.Compact(roles)
			for _, role := range roles {
				if _, ok := st.Role(role); !ok && role != auth.RootRole {
					writeError(w, http.StatusUnprocessableEntity, fmt.Sprintf("role %q does not exist", role))
					return
				}
			}
			if name == auth.RootUser && !slices.Contains(roles, auth.RootRole) {
				writeError(w, http.StatusBadRequest, fmt.Sprintf("user %s keeps role %s", auth.RootUser, auth.RootRole))
				return
			}
			c.SetRoles, c.Roles = true, roles
		}
		if b.Password != nil {
			hash, err := auth.HashPassword([]byte(*b.Password), h.auth.cfg.HashCost)
			if err != nil {
				writeError(w, http.StatusUnprocessableEntity, err.Error())
				return
			}
			c.SetPassword, c.PasswordHash = true, hash
		}
		h.proposeAuth(w, r, c, "user", name)
	}
}

// serveRole serves /auth/roles/{name}; root only.
func (h *handler) serveRole(w http.ResponseWriter, r *http.Request, name string) {
	if !h.mayAdminister(w, r) {
		return
	}
	if name == auth.RootRole && r.Method != http.MethodGet && r.Method != http.MethodHead {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("role %s is built in: it cannot be changed or deleted", auth.RootRole))
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		var b roleBody
		if name == auth.RootRole {
			b = rootRoleBody()
		} else if role, ok := h.auth.state().Role(name); ok {
			b = roleOf(role)
		} else {
			writeError(w, http.StatusNotFound, fmt.Sprintf("role %q not found", name))
			return
		}
		body, _ := json.Marshal(b)
		writeJSON(w, http.StatusOK, body)
	case http.MethodDelete:
		h.proposeAuth(w, r, &auth.Change{Kind: auth.ChangeDeleteRole, Name: name}, "role", name)
	case http.MethodPut:
		var b roleBody
		if aerr := decodeStrict(r, &b); aerr != nil {
			writeAPIError(w, aerr)
			return
		}
		if b.Permissions == nil {
			writeError(w, http.StatusUnprocessableEntity, `the body must be {"permissions": [{"prefix": ..., "access": "read" or "readwrite"}, ...]}`)
			return
		}
		c := &auth.Change{Kind: auth.ChangePutRole, Name: name, Permissions: []auth.Permission{}}
		for i, p := range *b.Permissions {
			a, ok := auth.ParseAccess(p.Access)
			if !ok {
				writeError(w, http.StatusUnprocessableEntity, fmt.Sprintf("permissions[%d].access is %q; want read or readwrite", i, p.Access))
				return
			}
			c.Permissions = append(c.Permissions, auth.Permission{Prefix: []byte(p.Prefix), Access: a})
		}
		if err := c.Validate(); err != nil {
			writeError(w, http.StatusUnprocessableEntity, err.Error())
			return
		}
		h.proposeAuth(w, r, c, "role", name)
	}
}

// proposeAuth replicates c and answers its outcome: the user or role as it
// now is, or 404 for the delete of a missing one.
func (h *handler) proposeAuth(w http.ResponseWriter, r *http.Request, c *auth.Change, what, name string) {
	ctx, cancel := context.WithTimeout(r.Context(), h.cfg.RequestTimeout)
	defer cancel()
	res, err := h.backend.Propose(ctx, kv.Command{Op: kv.OpAuth, Auth: c})
	if err != nil {
		h.backendError(ctx, w, r, "auth", err, true)
		return
	}
	switch res.Status {
	case kv.StatusOK:
	case kv.StatusNotFound:
		writeError(w, http.StatusNotFound, fmt.Sprintf("%s %q not found", what, name))
		return
	default:
		writeError(w, http.StatusConflict, fmt.Sprintf("%s %q: the change was not applied", what, name))
		return
	}
	if c.Kind == auth.ChangeDeleteUser || c.Kind == auth.ChangeDeleteRole {
		body, _ := json.Marshal(map[string]any{"deleted": name, "revision": res.Revision})
		writeJSON(w, http.StatusOK, body)
		return
	}
	// The proposing node applied the change before Propose returned.
	st := h.auth.state()
	var v any
	if what == "user" {
		u, _ := st.User(name)
		v = userOf(u)
	} else {
		role, _ := st.Role(name)
		v = roleOf(role)
	}
	body, _ := json.Marshal(v)
	writeJSON(w, http.StatusOK, body)
}

// BootstrapAuth sets up auth in a cluster that has none: once the node is
// ready it proposes the token secret (random, made here) and, when
// rootPassword is not empty and there is no user yet, user root with that
// password. Every node may run it; the first such change applied wins and
// the others change nothing. It returns when the node's state has a
// secret (and a user, when rootPassword is given), or when ctx ends.
func BootstrapAuth(ctx context.Context, b Backend, rootPassword []byte, hashCost int, log *slog.Logger) error {
	ab, ok := b.(AuthBackend)
	if !ok {
		return errors.New("httpapi: the Backend has no auth state (AuthBackend)")
	}
	var hash []byte
	if len(rootPassword) > 0 {
		var err error
		if hash, err = auth.HashPassword(rootPassword, hashCost); err != nil {
			return fmt.Errorf("initial root password: %w", err)
		}
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		st := ab.AuthState()
		if len(st.Secret()) > 0 && (hash == nil || len(st.Users()) > 0) {
			if len(st.Users()) == 0 {
				log.Warn("auth is on but the cluster has no user: no request can be authenticated; start a node with --initial-root-password-file")
			}
			return nil
		}
		if b.Ready() == nil {
			secret := make([]byte, auth.SecretSize)
			if _, err := rand.Read(secret); err != nil {
				return err
			}
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_, err := b.Propose(pctx, kv.Command{Op: kv.OpAuth, Auth: &auth.Change{Kind: auth.ChangeInit, Secret: secret, PasswordHash: hash}})
			cancel()
			if err != nil && ctx.Err() == nil {
				log.Debug("proposing the auth setup failed; retrying", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}
