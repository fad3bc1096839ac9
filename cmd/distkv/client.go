package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// client talks to a list of endpoints, moving on to the next one when a node
// cannot be reached or cannot serve (503).
type client struct {
	endpoints []string
	http      *http.Client
	wait      time.Duration // how long to keep retrying
	// clientID names this client in the request ids of its writes.
	clientID string
}

// newID returns a random id of 16 hex digits.
func newID() string { return fmt.Sprintf("%016x", rand.Uint64()) }

// write sends a write (PUT, DELETE, POST /txn) with a request id of its own:
// the server applies it at most once however often it is sent, so the write
// is retried as a read is, even after a timeout that may have applied it; a
// retry gets the first attempt's answer.
func (c *client) write(method, path string, body []byte) ([]byte, error) {
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	q := url.Values{"client_id": {c.clientID}, "request_id": {newID()}}
	return c.send(method, path+sep+q.Encode(), body, true)
}

type apiError struct {
	status int
	detail string
}

func (e *apiError) Error() string { return fmt.Sprintf("%d %s", e.status, e.detail) }

// do sends the request to the endpoints in turn until one answers, retrying
// with capped exponential backoff and jitter while nodes are down or the
// cluster has no leader, for up to c.wait. A write without a request id (a
// membership change) is retried only when it surely was not applied (the
// connection was refused, or the node said so); see write for the others.
func (c *client) do(method, path string, body []byte) ([]byte, error) {
	return c.send(method, path, body, method == http.MethodGet)
}

// send is do; safe says that the request may be sent again whatever
// happened to an attempt (a read, or a write with a request id).
func (c *client) send(method, path string, body []byte, safe bool) ([]byte, error) {
	deadline := time.Now().Add(c.wait)
	backoff := 50 * time.Millisecond
	var lastErr error
	for attempt := 0; ; attempt++ {
		for _, ep := range c.endpoints {
			data, err, retry := c.once(ep, method, path, body, safe)
			if !retry {
				return data, err
			}
			lastErr = err
		}
		if time.Now().Add(backoff).After(deadline) {
			return nil, lastErr
		}
		time.Sleep(backoff/2 + time.Duration(rand.Int64N(int64(backoff/2)+1)))
		backoff = min(2*backoff, time.Second)
	}
}

func (c *client) once(ep, method, path string, body []byte, safe bool) (data []byte, err error, retry bool) {
	ep = strings.TrimRight(ep, "/")
	if !strings.Contains(ep, "://") {
		ep = "http://" + ep
	}
	req, err := http.NewRequest(method, ep+path, bytes.NewReader(body))
	if err != nil {
		return nil, err, false
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		// Only a refused or failed dial proves that a write was not sent.
		var op *net.OpError
		notSent := errors.As(err, &op) && op.Op == "dial"
		return nil, err, safe || notSent
	}
	data, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err, safe
	}
	if resp.StatusCode == http.StatusOK {
		return data, nil, false
	}
	var e struct {
		Detail string `json:"detail"`
	}
	_ = json.Unmarshal(data, &e)
	if e.Detail == "" {
		e.Detail = strings.TrimSpace(string(data))
	}
	aerr := &apiError{status: resp.StatusCode, detail: e.Detail}
	if resp.StatusCode == http.StatusServiceUnavailable {
		mayHaveApplied := strings.Contains(e.Detail, "may still have been applied")
		return data, aerr, safe || !mayHaveApplied
	}
	return data, aerr, false
}

func escapeKey(k string) string {
	parts := strings.Split(k, "/")
	for i, p := range parts {
		parts[i] = url.PathEscape(p)
	}
	return strings.Join(parts, "/")
}

func newClientCommands() []*cobra.Command {
	var (
		endpoints []string
		timeout   time.Duration
		wait      time.Duration
	)
	// One client id per process: each write gets a request id of its own.
	clientID := "distkv-cli-" + newID()
	mk := func() *client {
		return &client{endpoints: endpoints, http: &http.Client{Timeout: timeout}, wait: wait, clientID: clientID}
	}
	addFlags := func(cmd *cobra.Command) *cobra.Command {
		cmd.Flags().StringSliceVar(&endpoints, "endpoints", []string{"127.0.0.1:8000", "127.0.0.1:8001", "127.0.0.1:8002"}, "node HTTP addresses, tried in order")
		cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Second, "per-request timeout")
		cmd.Flags().DurationVar(&wait, "retry-for", 15*time.Second, "keep retrying for this long while nodes are down or electing")
		return cmd
	}
	print := func(data []byte) {
		os.Stdout.Write(data)
		os.Stdout.Write([]byte("\n"))
	}

	var stale bool
	get := addFlags(&cobra.Command{
		Use:   "get KEY",
		Short: "Read a key (linearizable unless --stale)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := "/key/" + escapeKey(args[0])
			if stale {
				path += "?consistency=stale"
			}
			data, err := mk().do(http.MethodGet, path, nil)
			if err != nil {
				return err
			}
			print(data)
			return nil
		},
	})
	get.Flags().BoolVar(&stale, "stale", false, "answer from the contacted node's local state")

	var prevVersion, prevRevision int64
	var createOnly, asJSON bool
	put := addFlags(&cobra.Command{
		Use:   "put KEY VALUE",
		Short: "Write a key, optionally only if a condition holds",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var value any = args[1]
			if asJSON {
				if !json.Valid([]byte(args[1])) {
					return fmt.Errorf("--json: %q is not a JSON value", args[1])
				}
				value = json.RawMessage(args[1])
			}
			body := map[string]any{"value": value}
			if cmd.Flags().Changed("prev-version") {
				body["prev_version"] = prevVersion
			}
			if cmd.Flags().Changed("prev-revision") {
				body["prev_revision"] = prevRevision
			}
			if createOnly {
				body["create_only"] = true
			}
			b, err := json.Marshal(body)
			if err != nil {
				return err
			}
			data, err := mk().write(http.MethodPut, "/key/"+escapeKey(args[0]), b)
			if err != nil {
				return err
			}
			print(data)
			return nil
		},
	})
	put.Flags().Int64Var(&prevVersion, "prev-version", 0, "write only if the key is at this version (0: absent)")
	put.Flags().Int64Var(&prevRevision, "prev-revision", 0, "write only if the key's last change has this revision")
	put.Flags().BoolVar(&createOnly, "create-only", false, "write only if the key does not exist")
	put.Flags().BoolVar(&asJSON, "json", false, "VALUE is a JSON value (12, true, {\"a\":1}, ...) rather than a string")

	del := addFlags(&cobra.Command{
		Use:     "del KEY",
		Aliases: []string{"delete", "rm"},
		Short:   "Delete a key",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := mk().write(http.MethodDelete, "/key/"+escapeKey(args[0]), nil)
			if err != nil {
				return err
			}
			print(data)
			return nil
		},
	})

	var prefix, start, end string
	var limit int
	scan := addFlags(&cobra.Command{
		Use:   "scan",
		Short: "List keys in order (all pages)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			q := url.Values{}
			if prefix != "" {
				q.Set("prefix", prefix)
			}
			if start != "" {
				q.Set("start", start)
			}
			if end != "" {
				q.Set("end", end)
			}
			if limit > 0 {
				q.Set("limit", fmt.Sprint(limit))
			}
			c := mk()
			for {
				data, err := c.do(http.MethodGet, "/keys?"+q.Encode(), nil)
				if err != nil {
					return err
				}
				var page struct {
					KVs      []json.RawMessage `json:"kvs"`
					More     bool              `json:"more"`
					Continue string            `json:"continue"`
				}
				if err := json.Unmarshal(data, &page); err != nil {
					return fmt.Errorf("decode scan page: %w", err)
				}
				for _, kv := range page.KVs {
					print(kv)
				}
				if !page.More || page.Continue == "" || limit > 0 {
					return nil
				}
				q.Set("continue", page.Continue)
			}
		},
	})
	scan.Flags().StringVar(&prefix, "prefix", "", "only keys with this prefix")
	scan.Flags().StringVar(&start, "start", "", "first key (inclusive)")
	scan.Flags().StringVar(&end, "end", "", "last key (exclusive)")
	scan.Flags().IntVar(&limit, "limit", 0, "at most this many keys (one page)")

	status := addFlags(&cobra.Command{
		Use:   "status",
		Short: "Show the cluster status as a node sees it",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := mk().do(http.MethodGet, "/cluster/status", nil)
			if err != nil {
				return err
			}
			printIndented(data)
			return nil
		},
	})
	member := &cobra.Command{Use: "member", Short: "List and change the cluster's members"}
	member.AddCommand(
		addFlags(&cobra.Command{
			Use: "list", Short: "List members with their role and health", Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, args []string) error {
				data, err := mk().do(http.MethodGet, "/cluster/members", nil)
				if err != nil {
					return err
				}
				printIndented(data)
				return nil
			},
		}),
		memberAdd(addFlags, mk),
		addFlags(&cobra.Command{
			Use: "promote NAME", Short: "Make a caught-up learner a voter", Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				data, err := mk().do(http.MethodPost, "/cluster/members/"+url.PathEscape(args[0])+"/promote", []byte{})
				if err == nil {
					print(data)
				}
				return err
			},
		}),
		addFlags(&cobra.Command{
			Use: "remove NAME", Short: "Remove a member", Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				data, err := mk().do(http.MethodDelete, "/cluster/members/"+url.PathEscape(args[0]), nil)
				if err == nil {
					print(data)
				}
				return err
			},
		}),
	)
	var to string
	transfer := addFlags(&cobra.Command{
		Use: "transfer", Short: "Move leadership to another voter (--to NAME; without it the leader picks the most caught-up, a follower itself)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			b, _ := json.Marshal(map[string]string{"to": to})
			data, err := mk().do(http.MethodPost, "/cluster/leader/transfer", b)
			if err == nil {
				print(data)
			}
			return err
		},
	})
	transfer.Flags().StringVar(&to, "to", "", "member to lead")
	leader := &cobra.Command{Use: "leader", Short: "Leadership commands"}
	leader.AddCommand(transfer)
	return []*cobra.Command{get, put, del, scan, status, member, leader}
}

func printIndented(data []byte) {
	var buf bytes.Buffer
	if json.Indent(&buf, data, "", "  ") != nil {
		buf.Reset()
		buf.Write(data)
	}
	buf.WriteByte('\n')
	os.Stdout.Write(buf.Bytes())
}

func memberAdd(addFlags func(*cobra.Command) *cobra.Command, mk func() *client) *cobra.Command {
	var peer, httpAddr string
	var voter bool
	cmd := addFlags(&cobra.Command{
		Use:   "add NAME --peer HOST:PORT --http HOST:PORT",
		Short: "Add a member (as a learner unless --voter); then start it with --join",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, _ := json.Marshal(map[string]any{"id": args[0], "peer": peer, "http": httpAddr, "learner": !voter})
			data, err := mk().do(http.MethodPost, "/cluster/members", b)
			if err == nil {
				os.Stdout.Write(append(data, '\n'))
			}
			return err
		},
	})
	cmd.Flags().StringVar(&peer, "peer", "", "the new member's peer address (required)")
	cmd.Flags().StringVar(&httpAddr, "http", "", "the new member's HTTP address")
	cmd.Flags().BoolVar(&voter, "voter", false, "add as a voter at once (a learner is safer: it catches up first)")
	cmd.MarkFlagRequired("peer")
	return cmd
}
