package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/distkv/distkv/client"
)

// The client commands are thin: package client sends the requests, fails
// over between the endpoints and retries (see its documentation); the
// commands print the server's 200 answer as it was sent.

func newClientCommands() []*cobra.Command {
	var (
		endpoints []string
		timeout   time.Duration
		wait      time.Duration
		tlsFlags  clientTLSFlags
	)
	// One client id per process: each write gets a request id of its own.
	clientID := fmt.Sprintf("distkv-cli-%016x", rand.Uint64())
	var creds credentials // auth.go
	mk := func() (*client.Client, error) {
		cfg := client.Config{Endpoints: endpoints, Timeout: timeout, RetryFor: wait, ClientID: clientID}
		// The flags' 0 is none (--timeout) and one try of each endpoint
		// (--retry-for); the package's is its default.
		if timeout <= 0 {
			cfg.Timeout = -1
		}
		if wait <= 0 {
			cfg.RetryFor = -1
		}
		if err := tlsFlags.apply(&cfg); err != nil {
			return nil, err
		}
		c, err := client.New(cfg)
		if err != nil {
			return nil, err
		}
		return c, creds.apply(context.Background(), c)
	}
	ctx := context.Background()
	addFlags := func(cmd *cobra.Command) *cobra.Command {
		cmd.Flags().StringSliceVar(&endpoints, "endpoints", []string{"127.0.0.1:8000", "127.0.0.1:8001", "127.0.0.1:8002"}, "node HTTP addresses, tried in order")
		cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Second, "per-request timeout")
		cmd.Flags().DurationVar(&wait, "retry-for", 15*time.Second, "keep retrying for this long while nodes are down or electing")
		tlsFlags.add(cmd.Flags())
		creds.addFlags(cmd.Flags())
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
			c, err := mk()
			if err != nil {
				return err
			}
			var opts []client.ReadOption
			if stale {
				opts = append(opts, client.Stale())
			}
			kv, err := c.Get(ctx, args[0], opts...)
			if err != nil {
				return err
			}
			print(kv.Raw)
			return nil
		},
	})
	get.Flags().BoolVar(&stale, "stale", false, "answer from the contacted node's local state")

	var prevVersion, prevRevision int64
	var createOnly, asJSON bool
	var ttl time.Duration
	put := addFlags(&cobra.Command{
		Use:   "put KEY VALUE",
		Short: "Write a key, optionally only if a condition holds",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if asJSON && !json.Valid([]byte(args[1])) {
				return fmt.Errorf("--json: %q is not a JSON value", args[1])
			}
			var conds []client.Condition
			if cmd.Flags().Changed("prev-version") {
				conds = append(conds, client.PrevVersion(prevVersion))
			}
			if cmd.Flags().Changed("prev-revision") {
				conds = append(conds, client.PrevRevision(prevRevision))
			}
			if createOnly {
				conds = append(conds, client.CreateOnly())
			}
			if cmd.Flags().Changed("ttl") {
				if ttl < time.Second || ttl%time.Second != 0 {
					return fmt.Errorf("--ttl %v: the key's time to live is a whole number of seconds, at least 1s", ttl)
				}
				conds = append(conds, client.TTL(ttl))
			}
			c, err := mk()
			if err != nil {
				return err
			}
			var res client.PutResult
			if asJSON {
				res, err = c.PutJSON(ctx, args[0], json.RawMessage(args[1]), conds...)
			} else {
				res, err = c.Put(ctx, args[0], args[1], conds...)
			}
			if err != nil {
				return err
			}
			print(res.Raw)
			return nil
		},
	})
	put.Flags().Int64Var(&prevVersion, "prev-version", 0, "write only if the key is at this version (0: absent)")
	put.Flags().Int64Var(&prevRevision, "prev-revision", 0, "write only if the key's last change has this revision")
	put.Flags().BoolVar(&createOnly, "create-only", false, "write only if the key does not exist")
	put.Flags().DurationVar(&ttl, "ttl", 0, "the key expires this long after the write (whole seconds: 30s, 5m); without it, a deadline the key had is cleared")
	put.Flags().BoolVar(&asJSON, "json", false, "VALUE is a JSON value (12, true, {\"a\":1}, ...) rather than a string")

	del := addFlags(&cobra.Command{
		Use:     "del KEY",
		Aliases: []string{"delete", "rm"},
		Short:   "Delete a key",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := mk()
			if err != nil {
				return err
			}
			res, err := c.Delete(ctx, args[0])
			if err != nil {
				return err
			}
			print(res.Raw)
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
			c, err := mk()
			if err != nil {
				return err
			}
			r := client.Range{Prefix: prefix, Start: start, End: end}
			if limit > 0 {
				// One page of at most limit pairs (the server refuses
				// more than 10000).
				r.Limit, r.PageSize = limit, limit
			}
			for kv, err := range c.Scan(ctx, r) {
				if err != nil {
					return err
				}
				print(kv.Raw)
			}
			return nil
		},
	})
	scan.Flags().StringVar(&prefix, "prefix", "", "only keys with this prefix")
	scan.Flags().StringVar(&start, "start", "", "first key (inclusive)")
	scan.Flags().StringVar(&end, "end", "", "last key (exclusive)")
	scan.Flags().IntVar(&limit, "limit", 0, "at most this many keys (one page)")

	var watchPrefix string
	var watchFrom int64
	watch := addFlags(&cobra.Command{
		Use:   "watch [KEY]",
		Short: "Print the changes of a key (or, with --prefix, of the keys under a prefix) as they happen, one JSON object a line, until interrupted",
		Long: `Print the changes of a key, or with --prefix of every key under a prefix,
one JSON object a line in revision order: {"type":"PUT",...}, {"type":"DELETE",...},
and {"type":"PROGRESS","revision":R} while nothing changes. From --start-revision
on, or from now. When a node goes away the watch goes on through another
endpoint where it was, missing and repeating nothing.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			w := client.Watch{Prefix: watchPrefix, StartRevision: watchFrom}
			switch {
			case len(args) == 1 && watchPrefix != "":
				return fmt.Errorf("give a KEY or --prefix, not both")
			case len(args) == 1:
				w.Key = args[0]
			case watchPrefix == "":
				return fmt.Errorf("give a KEY or --prefix")
			}
			c, err := mk()
			if err != nil {
				return err
			}
			sctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
			defer stop()
			for ev, err := range c.Watch(sctx, w) {
				if err != nil {
					return err
				}
				print(ev.Raw)
			}
			return nil
		},
	})
	watch.Flags().StringVar(&watchPrefix, "prefix", "", "watch every key with this prefix")
	watch.Flags().Int64Var(&watchFrom, "start-revision", 0, "print the changes from this revision on (default: from now)")

	var statusOutput, listOutput string
	status := addFlags(&cobra.Command{
		Use:   "status",
		Short: "Show the cluster status as a node sees it",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			format, err := outputFormat(statusOutput)
			if err != nil {
				return err
			}
			c, err := mk()
			if err != nil {
				return err
			}
			st, err := c.Status(ctx)
			if err != nil {
				return err
			}
			if format == outputTable {
				return writeStatusTable(os.Stdout, st, time.Now())
			}
			printIndented(st.Raw)
			return nil
		},
	})
	addOutputFlag(status, &statusOutput)
	list := addFlags(&cobra.Command{
		Use: "list", Short: "List members with their role and health", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			format, err := outputFormat(listOutput)
			if err != nil {
				return err
			}
			c, err := mk()
			if err != nil {
				return err
			}
			l, err := c.Members(ctx)
			if err != nil {
				return err
			}
			if format == outputTable {
				return writeMembersTable(os.Stdout, l.Members, "", time.Now())
			}
			printIndented(l.Raw)
			return nil
		},
	})
	addOutputFlag(list, &listOutput)
	var rangesOutput string
	ranges := addFlags(&cobra.Command{
		Use: "ranges", Short: "List the ranges of the key space: bounds, leader, replicas, bytes", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			format, err := outputFormat(rangesOutput)
			if err != nil {
				return err
			}
			c, err := mk()
			if err != nil {
				return err
			}
			l, err := c.Ranges(ctx)
			if err != nil {
				return err
			}
			if format == outputTable {
				return writeRangesTable(os.Stdout, l.Ranges)
			}
			printIndented(l.Raw)
			return nil
		},
	})
	addOutputFlag(ranges, &rangesOutput)
	member := &cobra.Command{Use: "member", Short: "List and change the cluster's members"}
	member.AddCommand(
		list,
		memberAdd(addFlags, mk),
		addFlags(&cobra.Command{
			Use: "promote NAME", Short: "Make a caught-up learner a voter", Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				c, err := mk()
				if err != nil {
					return err
				}
				a, err := c.PromoteMember(ctx, args[0])
				if err == nil {
					print(a.Raw)
				}
				return err
			},
		}),
		addFlags(&cobra.Command{
			Use: "remove NAME", Short: "Remove a member", Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				c, err := mk()
				if err != nil {
					return err
				}
				a, err := c.RemoveMember(ctx, args[0])
				if err == nil {
					print(a.Raw)
				}
				return err
			},
		}),
	)
	var to string
	transfer := addFlags(&cobra.Command{
		Use: "transfer", Short: "Move leadership to another voter (--to NAME; without it the leader picks the most caught-up, a follower itself)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := mk()
			if err != nil {
				return err
			}
			res, err := c.TransferLeader(ctx, to)
			if err == nil {
				print(res.Raw)
			}
			return err
		},
	})
	transfer.Flags().StringVar(&to, "to", "", "member to lead")
	leader := &cobra.Command{Use: "leader", Short: "Leadership commands"}
	leader.AddCommand(transfer)
	return append([]*cobra.Command{get, put, del, scan, watch, status, ranges, member, leader}, newAuthCommands(addFlags, mk)...)
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

func memberAdd(addFlags func(*cobra.Command) *cobra.Command, mk func() (*client.Client, error)) *cobra.Command {
	var peer, httpAddr string
	var voter bool
	cmd := addFlags(&cobra.Command{
		Use:   "add NAME --peer HOST:PORT --http HOST:PORT",
		Short: "Add a member (as a learner unless --voter); then start it with --join",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := mk()
			if err != nil {
				return err
			}
			a, err := c.AddMember(context.Background(), client.NewMember{ID: args[0], Peer: peer, HTTP: httpAddr, Voter: voter})
			if err == nil {
				os.Stdout.Write(append(a.Raw, '\n'))
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
