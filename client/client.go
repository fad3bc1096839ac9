package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// Defaults of Config.
const (
	DefaultTimeout  = 10 * time.Second
	DefaultRetryFor = 15 * time.Second
)

// The backoff between rounds of attempts: it doubles from the first to the
// last.
const (
	firstBackoff = 50 * time.Millisecond
	maxBackoff   = time.Second
)

// maxIDLen is the longest client_id the server takes (docs/api.md,
// "Idempotent requests").
const maxIDLen = 256

// Config configures a Client.
type Config struct {
	// Endpoints are the HTTP addresses of nodes of the cluster, as
	// host:port or http(s)://host:port. At least one is required; more
	// give fail-over (see the package documentation).
	Endpoints []string
	// Timeout bounds one attempt: one request to one endpoint, its answer
	// read. An attempt that runs out of it is retried where that is safe.
	// Default DefaultTimeout; negative: none (the context still bounds the
	// call).
	Timeout time.Duration
	// RetryFor bounds, from the start of a call, how long it goes on
	// retrying while nodes are unreachable or cannot serve (no leader).
	// Default DefaultRetryFor; negative: each endpoint is tried once.
	RetryFor time.Duration
	// HTTPClient sends the requests. Default: a client of this Client's own
	// over http.DefaultTransport (over a copy of it that uses TLS, with
	// TLS).
	HTTPClient *http.Client
	// TLS, if set, is the TLS configuration of requests to https
	// endpoints, and endpoints given as host:port are https. Its RootCAs
	// name the CA that signed the nodes' certificates, its Certificates
	// the client certificate if the nodes ask for one (see LoadTLS). It
	// cannot be combined with HTTPClient: configure that client's transport
	// instead.
	TLS *tls.Config
	// ClientID names this client in the request ids of its writes, 1 to
	// 256 bytes. Two clients that run at once must not share one. Default:
	// "distkv-go-" and 16 random hex digits.
	ClientID string
	// Token, if set, is sent as "Authorization: Bearer <Token>" with every
	// request, for a cluster with auth on (see Login). Empty: none.
	Token string
}

// withDefaults returns c with its zero fields set to their defaults.
func (c Config) withDefaults() Config {
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.RetryFor == 0 {
		c.RetryFor = DefaultRetryFor
	}
	if c.HTTPClient == nil && c.TLS == nil {
		c.HTTPClient = &http.Client{}
	}
	if c.ClientID == "" {
		c.ClientID = "distkv-go-" + newID()
	}
	return c
}

// Validate reports what is wrong with c: no endpoints, an endpoint that is
// not an address, a ClientID over 256 bytes. Zero fields that have defaults
// are fine.
func (c Config) Validate() error {
	if len(c.Endpoints) == 0 {
		return errors.New("client config: no endpoints")
	}
	if c.TLS != nil && c.HTTPClient != nil {
		return errors.New("client config: TLS and HTTPClient are both set: set the TLS configuration in that client's transport instead")
	}
	for _, ep := range c.Endpoints {
		if _, err := baseURL(ep, c.TLS != nil); err != nil {
			return fmt.Errorf("client config: %w", err)
		}
	}
	if len(c.ClientID) > maxIDLen {
		return fmt.Errorf("client config: ClientID is %d bytes; the limit is %d", len(c.ClientID), maxIDLen)
	}
	return nil
}

// baseURL turns an endpoint into the URL that paths are appended to:
// "127.0.0.1:8000" is "http://127.0.0.1:8000", or "https://127.0.0.1:8000"
// with secure.
func baseURL(ep string, secure bool) (string, error) {
	s := strings.TrimRight(strings.TrimSpace(ep), "/")
	if !strings.Contains(s, "://") {
		if secure {
			s = "https://" + s
		} else {
			s = "http://" + s
		}
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", fmt.Errorf("endpoint %q is not host:port or http(s)://host:port", ep)
	}
	return u.Scheme + "://" + u.Host, nil
}

// Client sends requests to a distkv cluster. Create it with New.
type Client struct {
	cfg  Config
	http *http.Client

	mu sync.Mutex
	// endpoints are base URLs: those configured, in their order, then
	// those learned by Sync. Invariant: no two are equal.
	endpoints []string
	// preferred indexes the endpoint that answered last, where the next
	// call starts. Invariant: 0 <= preferred < len(endpoints).
	preferred int
	// token is sent as a bearer token; "" for none. Config.Token, or the
	// last one Login got.
	token string
}

// New returns a Client for cfg, with defaults for its zero fields.
func New(cfg Config) (*Client, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := &Client{cfg: cfg, http: cfg.HTTPClient, token: cfg.Token}
	if cfg.TLS != nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = cfg.TLS.Clone()
		c.http = &http.Client{Transport: tr}
	}
	for _, ep := range cfg.Endpoints {
		u, _ := baseURL(ep, cfg.TLS != nil)
		if !slices.Contains(c.endpoints, u) {
			c.endpoints = append(c.endpoints, u)
		}
	}
	return c, nil
}

// ClientID returns the id that names this client in its writes' request ids.
func (c *Client) ClientID() string { return c.cfg.ClientID }

// Endpoints returns the base URLs the client sends to, those configured
// first, then those learned by Sync.
func (c *Client) Endpoints() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.endpoints)
}

// Sync reads the cluster's status from an endpoint and adds the HTTP
// addresses of its members to the endpoints, with the scheme of the endpoint
// that answered; the leader, if known, becomes the endpoint the next call
// starts with. Members without a published address are skipped.
func (c *Client) Sync(ctx context.Context) error {
	st, ep, err := c.status(ctx)
	if err != nil {
		return err
	}
	scheme, _, _ := strings.Cut(ep, "://")
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range st.Members {
		if m.HTTP == "" {
			continue
		}
		u, err := baseURL(scheme+"://"+m.HTTP, false)
		if err != nil {
			continue
		}
		i := slices.Index(c.endpoints, u)
		if i < 0 {
			c.endpoints = append(c.endpoints, u)
			i = len(c.endpoints) - 1
		}
		if m.ID == st.Leader {
			c.preferred = i
		}
	}
	return nil
}

// retryPolicy says after which failures a request may be sent again.
type retryPolicy int

const (
	// retrySafe: the request may be sent again whatever happened to an
	// attempt (a read, or a write with request ids).
	retrySafe retryPolicy = iota
	// retryIfNotApplied: only when the attempt surely changed nothing.
	retryIfNotApplied
)

// request is one call's request, sent to one endpoint after another.
type request struct {
	method string
	path   string // escaped, from the root: /key/a%2Fb
	query  url.Values
	body   []byte // nil: none
	retry  retryPolicy
	// write: a write that is given request ids (client_id, request_id).
	write bool
	// key: the request is for one key, so that a 404 "Key not found" is
	// ErrNotFound and a 409 with the key's state a ConflictError.
	key bool
}

// answer is a 200 answer and the endpoint that gave it.
type answer struct {
	body     []byte
	endpoint string
}

// do sends r to the endpoints until one answers it, retrying as r.retry
// allows until Config.RetryFor has passed or ctx ends (see the package
// documentation).
func (c *Client) do(ctx context.Context, r request) (answer, error) {
	if r.write {
		q := url.Values{}
		for k, v := range r.query {
			q[k] = v
		}
		// One request id for every attempt: the server applies the write
		// once and answers a repeat with the first execution's answer.
		q.Set("client_id", c.cfg.ClientID)
		q.Set("request_id", newID())
		r.query = q
	}
	deadline := time.Now().Add(max(c.cfg.RetryFor, 0))
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	backoff := firstBackoff
	var lastErr error
	for {
		c.mu.Lock()
		eps, first := slices.Clone(c.endpoints), c.preferred
		c.mu.Unlock()
		for i := range eps {
			ep := eps[(first+i)%len(eps)]
			body, err, retry := c.attempt(ctx, ep, r)
			if !retry || ctx.Err() != nil {
				if _, noAnswer := err.(*url.Error); !noAnswer {
					c.prefer(ep)
				}
				return answer{body: body, endpoint: ep}, err
			}
			lastErr = err
		}
		if time.Now().Add(backoff).After(deadline) {
			if _, ok := lastErr.(*url.Error); ok {
				lastErr = &unavailableError{lastErr}
			}
			return answer{}, lastErr
		}
		t := time.NewTimer(backoff/2 + rand.N(backoff/2+1))
		select {
		case <-ctx.Done():
			t.Stop()
			return answer{}, fmt.Errorf("%w (last attempt: %v)", ctx.Err(), lastErr)
		case <-t.C:
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// prefer makes the endpoint ep the one that the next call starts with.
func (c *Client) prefer(ep string) {
	c.mu.Lock()
	if i := slices.Index(c.endpoints, ep); i >= 0 {
		c.preferred = i
	}
	c.mu.Unlock()
}

// attempt sends r to the endpoint ep once. It returns the body of a 200
// answer; else the error (a *url.Error when no answer came, a *StatusError
// or *ConflictError when one did) and whether r may be sent again.
func (c *Client) attempt(ctx context.Context, ep string, r request) (data []byte, err error, retry bool) {
	if c.cfg.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.cfg.Timeout)
		defer cancel()
	}
	target := ep + r.path
	if len(r.query) > 0 {
		target += "?" + r.query.Encode()
	}
	var body io.Reader
	if r.body != nil {
		body = bytes.NewReader(r.body)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, target, body)
	if err != nil {
		return nil, err, false
	}
	if r.body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	c.authorize(req)
	safe := r.retry == retrySafe
	resp, err := c.http.Do(req)
	if err != nil {
		// Only a failed dial proves that the request was not sent.
		var op *net.OpError
		notSent := errors.As(err, &op) && op.Op == "dial"
		return nil, err, safe || notSent
	}
	data, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, &url.Error{Op: r.method, URL: target, Err: err}, safe
	}
	if resp.StatusCode == http.StatusOK {
		return data, nil, false
	}
	serr := statusError(resp.StatusCode, data, r.key)
	switch resp.StatusCode {
	case http.StatusServiceUnavailable:
		mayHaveApplied := strings.Contains(string(data), "may still have been applied")
		return nil, serr, safe || !mayHaveApplied
	case http.StatusBadGateway, http.StatusGatewayTimeout:
		return nil, serr, safe // from a proxy: the node may have had the request
	}
	return nil, serr, false
}

// statusError is the error of an answer other than 200 with the given body;
// key says that the request was for one key.
func statusError(code int, data []byte, key bool) error {
	var b struct {
		Detail   string `json:"detail"`
		Key      *string
		Version  int64
		Revision int64
	}
	if json.Unmarshal(data, &b) != nil || b.Detail == "" {
		b.Detail = strings.TrimSpace(string(data))
	}
	se := StatusError{Code: code, Detail: b.Detail, Body: data,
		keyNotFound: key && code == http.StatusNotFound && b.Detail == "Key not found"}
	if key && code == http.StatusConflict && b.Key != nil {
		return &ConflictError{StatusError: se, Key: *b.Key, Version: b.Version, Revision: b.Revision}
	}
	return &se
}

// newID returns a random id of 16 hex digits.
func newID() string { return fmt.Sprintf("%016x", rand.Uint64()) }

// escapeKey is the path segment of key in /key/{key}: each byte escaped as a
// path needs, '/' kept, except that a key ending in "/history" or
// "/versions" has its last '/' escaped, as the server would otherwise take
// the path for the key's version endpoint (docs/api.md, "Keys").
func escapeKey(key string) string {
	parts := strings.Split(key, "/")
	for i, p := range parts {
		parts[i] = url.PathEscape(p)
	}
	esc := strings.Join(parts, "/")
	for _, suffix := range []string{"/history", "/versions"} {
		if strings.HasSuffix(esc, suffix) {
			return strings.TrimSuffix(esc, suffix) + "%2F" + suffix[1:]
		}
	}
	return esc
}
