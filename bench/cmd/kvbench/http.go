package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// httpTarget speaks distkv's HTTP API (also served by serve-null).
type httpTarget struct {
	client *http.Client
	bases  []string // "http://host:port" (https with TLS)
	scheme string
	route  string
	next   atomic.Uint64 // route "each": requests so far
	// auth is the Authorization header of every request ("" for none).
	auth string
	// Route "range" (useRangeLeaders): the ranges and their leaders, and
	// each member's base URL by id.
	table      *rangeTable
	memberBase map[string]string
}

func newHTTPTarget(c *config) *httpTarget {
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        (c.clients + 16) * len(c.endpoints), // -route each: a worker keeps one per endpoint
		MaxIdleConnsPerHost: c.clients + 16,                      // every worker keeps its connection
		MaxConnsPerHost:     0,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
		TLSClientConfig:     c.tls,
	}
	t := &httpTarget{client: &http.Client{Transport: tr}, route: c.route, scheme: "http"}
	if c.tls != nil {
		t.scheme = "https"
	}
	if c.token != "" {
		t.auth = "Bearer " + c.token
	}
	for _, e := range c.endpoints {
		t.bases = append(t.bases, t.scheme+"://"+e)
	}
	return t
}

// leaderBase asks the first endpoint which node leads (GET /cluster/status)
// and returns that node's HTTP base.
func (t *httpTarget) leaderBase(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.bases[0]+"/cluster/status", nil)
	if err != nil {
		return "", err
	}
	if t.auth != "" {
		req.Header.Set("Authorization", t.auth)
	}
	resp, err := t.client.Do(req)
	if err != nil {
		return "", fmt.Errorf("-route leader: %w", err)
	}
	defer resp.Body.Close()
	var st struct {
		Leader  string `json:"leader"`
		Members []struct {
			ID   string `json:"id"`
			HTTP string `json:"http"`
		} `json:"members"`
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("-route leader: %s/cluster/status: %s", t.bases[0], resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return "", fmt.Errorf("-route leader: %s/cluster/status: %w", t.bases[0], err)
	}
	for _, m := range st.Members {
		if m.ID == st.Leader && st.Leader != "" && m.HTTP != "" {
			return t.scheme + "://" + m.HTTP, nil
		}
	}
	return "", fmt.Errorf("-route leader: %s/cluster/status names no leader with an HTTP address (leader %q)", t.bases[0], st.Leader)
}

// base is where the request for key goes.
func (t *httpTarget) base(ctx context.Context, key string) string {
	switch {
	case t.route == "range":
		if b, ok := t.memberBase[t.table.leaderOf(key)]; ok {
			return b
		}
	case t.route == "one" || len(t.bases) == 1:
		return t.bases[0]
	case t.route == "each":
		return t.bases[(t.next.Add(1)-1)%uint64(len(t.bases))]
	}
	return t.bases[workerOf(ctx)%len(t.bases)]
}

func (t *httpTarget) Put(ctx context.Context, key string, value []byte) error {
	body := make([]byte, 0, len(value)+16)
	body = append(body, `{"value":"`...)
	body = append(body, value...) // values are alphanumeric: no JSON escaping needed
	body = append(body, `"}`...)
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, t.base(ctx, key)+"/key/"+key, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	return t.do(req)
}

// Txn posts a transaction of one put per key to the node of the first key.
func (t *httpTarget) Txn(ctx context.Context, keys []string, value []byte) error {
	body := []byte(`{"success":[`)
	for i, k := range keys {
		if i > 0 {
			body = append(body, ',')
		}
		body = append(body, `{"put":{"key":"`...)
		body = append(body, k...)
		body = append(body, `","value":"`...)
		body = append(body, value...) // alphanumeric: no JSON escaping needed
		body = append(body, `"}}`...)
	}
	body = append(body, "]}"...)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.base(ctx, keys[0])+"/txn", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	return t.do(req)
}

func (t *httpTarget) Get(ctx context.Context, key string, stale bool) error {
	url := t.base(ctx, key) + "/key/" + key
	if stale {
		url += "?consistency=stale"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	return t.do(req)
}

func (t *httpTarget) do(req *http.Request) error {
	if t.auth != "" {
		req.Header.Set("Authorization", t.auth)
	}
	resp, err := t.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
		return fmt.Errorf("%s %s: %s: %s", req.Method, req.URL.Path, resp.Status, bytes.TrimSpace(b))
	}
	// Drain so the connection is reused.
	_, err = io.Copy(io.Discard, resp.Body)
	return err
}

func (t *httpTarget) Close() error {
	t.client.CloseIdleConnections()
	return nil
}
