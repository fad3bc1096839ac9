package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
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
}

type apiError struct {
	status int
	detail string
}

func (e *apiError) Error() string { return fmt.Sprintf("%d %s", e.status, e.detail) }

func (c *client) do(method, path string, body []byte) ([]byte, error) {
	var lastErr error
	for _, ep := range c.endpoints {
		ep = strings.TrimRight(ep, "/")
		if !strings.Contains(ep, "://") {
			ep = "http://" + ep
		}
		req, err := http.NewRequest(method, ep+path, bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := c.http.Do(req)
		if err != nil {
			lastErr = err
			continue
		}
		data, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			lastErr = err
			continue
		}
		if resp.StatusCode == http.StatusOK {
			return data, nil
		}
		var e struct {
			Detail string `json:"detail"`
		}
		_ = json.Unmarshal(data, &e)
		if e.Detail == "" {
			e.Detail = strings.TrimSpace(string(data))
		}
		lastErr = &apiError{status: resp.StatusCode, detail: e.Detail}
		if resp.StatusCode != http.StatusServiceUnavailable {
			return data, lastErr
		}
	}
	return nil, lastErr
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
	)
	mk := func() *client {
		return &client{endpoints: endpoints, http: &http.Client{Timeout: timeout}}
	}
	addFlags := func(cmd *cobra.Command) *cobra.Command {
		cmd.Flags().StringSliceVar(&endpoints, "endpoints", []string{"127.0.0.1:8000"}, "node HTTP addresses, tried in order")
		cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Second, "per-request timeout")
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
	var createOnly bool
	put := addFlags(&cobra.Command{
		Use:   "put KEY VALUE",
		Short: "Write a key, optionally only if a condition holds",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			body := map[string]any{"value": args[1]}
			if cmd.Flags().Changed("prev-version") {
				body["prev_version"] = prevVersion
			}
			if cmd.Flags().Changed("prev-revision") {
				body["prev_revision"] = prevRevision
			}
			if createOnly {
				body["create_only"] = true
			}
			b, _ := json.Marshal(body)
			data, err := mk().do(http.MethodPut, "/key/"+escapeKey(args[0]), b)
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

	del := addFlags(&cobra.Command{
		Use:     "del KEY",
		Aliases: []string{"delete", "rm"},
		Short:   "Delete a key",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := mk().do(http.MethodDelete, "/key/"+escapeKey(args[0]), nil)
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
			var buf bytes.Buffer
			if json.Indent(&buf, data, "", "  ") != nil {
				print(data)
				return nil
			}
			print(buf.Bytes())
			return nil
		},
	})
	return []*cobra.Command{get, put, del, scan, status}
}
