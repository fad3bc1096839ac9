package client_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/distkv/distkv/internal/httpapi"
	"github.com/distkv/distkv/internal/kv"
	"github.com/distkv/distkv/internal/raftnode"
)

// endpoints holds the HTTP address of the node that TestMain starts for the
// examples: a real distkv node, one member of its own cluster, with its log
// in a temporary directory, served by the real HTTP API in this process.
var endpoints []string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "distkv-client-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	addr, stop, err := startNode(dir)
	if err != nil {
		os.RemoveAll(dir)
		fmt.Fprintln(os.Stderr, "start a node for the examples:", err)
		os.Exit(1)
	}
	endpoints = []string{addr}
	code := m.Run()
	stop()
	os.RemoveAll(dir)
	os.Exit(code)
}

// startNode starts a single-node cluster "n1" with its data in dir and its
// HTTP API on a free loopback port; it returns the address once the node is
// ready, and a function that stops it.
func startNode(dir string) (addr string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	addr = ln.Addr().String()
	node, err := raftnode.Open(raftnode.Config{
		Self:         raftnode.Member{Name: "n1", HTTP: addr},
		DataDir:      dir,
		TickInterval: 10 * time.Millisecond,
	})
	if err != nil {
		ln.Close()
		return "", nil, err
	}
	h, err := httpapi.New(httpapi.Config{}, backend{node})
	if err != nil {
		ln.Close()
		node.Stop()
		return "", nil, err
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	stop = func() {
		srv.Close()
		node.Stop()
	}
	deadline := time.Now().Add(10 * time.Second)
	for node.Ready() != nil {
		if time.Now().After(deadline) {
			stop()
			return "", nil, fmt.Errorf("node not ready after 10s: %v", node.Ready())
		}
		time.Sleep(5 * time.Millisecond)
	}
	return addr, stop, nil
}

// backend serves the HTTP API from a raftnode.Node, as the one of
// cmd/distkv does (without membership, which one node in a test does not
// need).
type backend struct{ n *raftnode.Node }

var _ httpapi.Backend = backend{}

func (b backend) Propose(ctx context.Context, cmd kv.Command) (kv.Result, error) {
	return b.n.Propose(ctx, cmd)
}

func (b backend) Get(ctx context.Context, key []byte, linearizable bool) (kv.KeyValue, bool, error) {
	return b.n.Get(ctx, key, linearizable)
}

func (b backend) Versions(ctx context.Context, key []byte, linearizable bool) ([]kv.KeyValue, error) {
	return b.n.Versions(ctx, key, linearizable)
}

func (b backend) Range(ctx context.Context, start, end []byte, limit int, linearizable bool) ([]kv.KeyValue, bool, error) {
	return b.n.Range(ctx, start, end, limit, linearizable)
}

func (b backend) Ready() error { return b.n.Ready() }

func (b backend) Status() httpapi.Status {
	s := b.n.Status()
	out := httpapi.Status{ID: s.ID, Leader: s.Leader, Term: s.Term, CommitIndex: s.CommitIndex, AppliedIndex: s.AppliedIndex}
	for _, m := range s.Members {
		role := "voter"
		if m.Learner {
			role = "learner"
		}
		out.Members = append(out.Members, httpapi.Member{ID: m.Name, Peer: m.Peer, HTTP: m.HTTP, Role: role})
	}
	return out
}

func (b backend) Session(ctx context.Context, id kv.RequestID, op kv.Op, linearizable bool) (kv.Record, bool, error) {
	if linearizable {
		if err := b.n.ReadBarrier(ctx); err != nil {
			return kv.Record{}, false, err
		}
	}
	rec, ok := b.n.KV().Record(id, op)
	return rec, ok, nil
}

func (b backend) SessionStats() kv.SessionStats { return b.n.KV().SessionStats() }
