package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/distkv/distkv/internal/httpapi"
	"github.com/distkv/distkv/internal/raftnode"
	"github.com/distkv/distkv/internal/transport"
)

// parseCluster reads --cluster (n1=host:port,n2=host:port) into members. An
// empty value is a cluster of self alone. self must be listed with its own
// --peer address.
func parseCluster(s string, self raftnode.Member) ([]raftnode.Member, error) {
	if strings.TrimSpace(s) == "" {
		return []raftnode.Member{{Name: self.Name, Peer: self.Peer}}, nil
	}
	var out []raftnode.Member
	seen := map[string]bool{}
	found := false
	for _, part := range strings.Split(s, ",") {
		name, addr, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || name == "" || addr == "" {
			return nil, fmt.Errorf("--cluster: %q is not name=host:port", part)
		}
		if seen[name] {
			return nil, fmt.Errorf("--cluster: %s is listed twice", name)
		}
		seen[name] = true
		// Every member must bootstrap the very same log entries, so the
		// records hold only what --cluster says; each node then publishes its
		// HTTP address through the log.
		if name == self.Name {
			if addr != self.Peer {
				return nil, fmt.Errorf("--cluster lists %s at %s but this node publishes %s (--advertise-peer, or --peer when that is not set)", name, addr, self.Peer)
			}
			found = true
		}
		out = append(out, raftnode.Member{Name: name, Peer: addr})
	}
	if !found {
		return nil, fmt.Errorf("--cluster does not list this node (%s)", self.Name)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// tokenID derives from --cluster-token the value that peers compare in their
// handshake.
func tokenID(token string) uint64 {
	h := fnv.New64a()
	h.Write([]byte("distkv-cluster:" + token))
	return h.Sum64()
}

// dataDirHasState reports whether dir holds a node's log already.
func dataDirHasState(dir string) bool {
	segs, _ := filepath.Glob(filepath.Join(dir, "wal", "*.wal"))
	snaps, _ := filepath.Glob(filepath.Join(dir, "snap", "*.snap"))
	return len(segs) > 0 || len(snaps) > 0
}

// joinCluster asks the member at url to add self as a learner and returns the
// cluster's members. A node that is already a member (a retried join) is fine.
func joinCluster(sec *serverTLS, url string, self raftnode.Member, timeout time.Duration, logger *slog.Logger) ([]raftnode.Member, error) {
	base := sec.memberURL(url)
	cli := sec.memberHTTPClient(timeout + time.Second)
	body, _ := json.Marshal(map[string]any{"id": self.Name, "peer": self.Peer, "http": self.HTTP, "learner": true})
	var lastErr error
	for attempt := 0; attempt < 10; attempt++ {
		if attempt > 0 {
			time.Sleep(time.Duration(attempt) * 300 * time.Millisecond)
		}
		resp, err := cli.Post(base+"/cluster/members", "application/json", bytes.NewReader(body))
		if err != nil {
			lastErr = err
			continue
		}
		data, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusConflict {
			lastErr = nil
			break
		}
		lastErr = fmt.Errorf("%s answered %d %s", base, resp.StatusCode, data)
		if resp.StatusCode != http.StatusServiceUnavailable {
			break
		}
	}
	if lastErr != nil {
		return nil, fmt.Errorf("join through %s: %w", base, lastErr)
	}
	resp, err := cli.Get(base + "/cluster/members")
	if err != nil {
		return nil, fmt.Errorf("join: list members: %w", err)
	}
	defer resp.Body.Close()
	var list struct {
		Members []httpapi.Member `json:"members"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		return nil, fmt.Errorf("join: list members: %w", err)
	}
	members := []raftnode.Member{self}
	for _, m := range list.Members {
		if m.ID != self.Name {
			members = append(members, raftnode.Member{Name: m.ID, Peer: m.Peer, HTTP: m.HTTP})
		}
	}
	logger.Info("joined cluster as a learner; promote with: distkv member promote "+self.Name, "via", base, "members", len(members))
	return members, nil
}

// learnClusterID asks the member at url (a --join address) for the
// cluster's id: 0 if that cluster predates cluster ids.
func learnClusterID(sec *serverTLS, url string, timeout time.Duration) (uint64, error) {
	base := sec.memberURL(url)
	cli := sec.memberHTTPClient(timeout + time.Second)
	var lastErr error
	for attempt := 0; attempt < 10; attempt++ {
		if attempt > 0 {
			time.Sleep(time.Duration(attempt) * 300 * time.Millisecond)
		}
		resp, err := cli.Get(base + "/cluster/status")
		if err != nil {
			lastErr = err
			continue
		}
		var st httpapi.Status
		err = json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || err != nil {
			lastErr = fmt.Errorf("%s/cluster/status answered %d (%v)", base, resp.StatusCode, err)
			continue
		}
		if st.ClusterID == "" {
			return 0, nil
		}
		id, err := strconv.ParseUint(st.ClusterID, 16, 64)
		if err != nil || id == 0 {
			return 0, fmt.Errorf("join through %s: cluster id %q is not an id", base, st.ClusterID)
		}
		return id, nil
	}
	return 0, fmt.Errorf("join through %s: learn the cluster id: %w", base, lastErr)
}

// handlerRelay passes peer traffic to the node's Host once it is open, and
// the server's own calls (directory.go) to the server.
type handlerRelay struct {
	h      atomic.Pointer[raftnode.Host]
	server atomic.Pointer[serverCalls]
}

type serverCalls func(ctx context.Context, shard uint64, method uint8, payload []byte) ([]byte, error)

func (r *handlerRelay) setServer(f serverCalls) { r.server.Store(&f) }

var _ transport.Handler = (*handlerRelay)(nil)

func (r *handlerRelay) set(h *raftnode.Host) { r.h.Store(h) }

func (r *handlerRelay) HandleRaft(shard uint64, msgs []raftpb.Message) {
	if h := r.h.Load(); h != nil {
		h.HandleRaft(shard, msgs)
	}
}

func (r *handlerRelay) HandleCall(ctx context.Context, from, shard uint64, method uint8, payload []byte) ([]byte, error) {
	if isServerMethod(method) {
		if f := r.server.Load(); f != nil {
			return (*f)(ctx, shard, method, payload)
		}
		return nil, errors.New("node is starting")
	}
	if h := r.h.Load(); h != nil {
		return h.HandleCall(ctx, from, shard, method, payload)
	}
	return nil, errors.New("node is starting")
}

func (r *handlerRelay) HandleSnapshot(from, shard uint64, rd io.Reader) error {
	if h := r.h.Load(); h != nil {
		return h.HandleSnapshot(from, shard, rd)
	}
	return errors.New("node is starting")
}

func (r *handlerRelay) PeerUnreachable(to uint64) {
	if h := r.h.Load(); h != nil {
		h.PeerUnreachable(to)
	}
}

// The membership and leadership endpoints.
var _ httpapi.ClusterAdmin = backend{}

// adminErr marks raftnode's membership errors with the httpapi error that
// picks their status code, keeping raftnode's message as the detail (the two
// say the same thing, so wrapping one in the other said it twice).
func adminErr(err error) error {
	if errors.Is(err, raftnode.ErrUnknownMember) {
		return markedError{mark: httpapi.ErrUnknownMember, err: err}
	}
	if errors.Is(err, raftnode.ErrMemberExists) {
		return markedError{mark: httpapi.ErrMemberExists, err: err}
	}
	if errors.Is(err, raftnode.ErrChangeRefused) {
		return markedError{mark: httpapi.ErrChangeRefused, err: err}
	}
	if errors.Is(err, raftnode.ErrTransferRefused) {
		return markedError{mark: httpapi.ErrTransferRefused, err: err}
	}
	return err
}

// markedError is err, which errors.Is also matches against mark.
type markedError struct{ mark, err error }

func (e markedError) Error() string   { return e.err.Error() }
func (e markedError) Unwrap() []error { return []error{e.mark, e.err} }

// A member change is made in group 1, whose membership is the cluster's
// list of nodes. Placement (placement.go) then puts replicas of the other
// ranges on a new node and takes them off one being removed, which is
// drained first. Without placement (a node alone) every range changes too.
func (b backend) AddMember(ctx context.Context, m httpapi.Member, learner bool) error {
	rm := raftnode.Member{Name: m.ID, Peer: m.Peer, HTTP: m.HTTP}
	if err := b.n.AddMember(ctx, rm, learner); err != nil {
		return adminErr(err)
	}
	if b.pl != nil {
		return nil
	}
	return b.inOtherRanges(func(g *raftnode.Node) error { return g.AddMember(ctx, rm, learner) })
}

func (b backend) PromoteMember(ctx context.Context, id string) error {
	if err := b.n.PromoteMember(ctx, id); err != nil {
		return adminErr(err)
	}
	if b.pl != nil {
		return nil
	}
	return b.inOtherRanges(func(g *raftnode.Node) error { return g.PromoteMember(ctx, id) })
}

func (b backend) RemoveMember(ctx context.Context, id string) error {
	if b.pl != nil {
		if err := b.pl.drain(ctx, id); err != nil {
			return adminErr(err)
		}
		return adminErr(b.n.RemoveMember(ctx, id))
	}
	if err := b.inOtherRanges(func(g *raftnode.Node) error { return g.RemoveMember(ctx, id) }); err != nil {
		return err
	}
	return adminErr(b.n.RemoveMember(ctx, id))
}

// inOtherRanges makes a member change in every range but group 1's.
func (b backend) inOtherRanges(change func(*raftnode.Node) error) error {
	for _, g := range b.n.Host().Groups() {
		if g == b.n {
			continue
		}
		err := change(g)
		if err != nil && !errors.Is(err, raftnode.ErrMemberExists) && !errors.Is(err, raftnode.ErrUnknownMember) {
			return adminErr(fmt.Errorf("range %d: %w", g.Shard(), err))
		}
	}
	return nil
}

func (b backend) TransferLeader(ctx context.Context, id string) error {
	return adminErr(b.n.TransferLeader(ctx, id))
}

// parseDialOverrides reads --dial-override (n2=host:port,...).
func parseDialOverrides(s string) (map[uint64]string, error) {
	out := map[uint64]string{}
	if strings.TrimSpace(s) == "" {
		return out, nil
	}
	for _, part := range strings.Split(s, ",") {
		name, addr, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || name == "" || addr == "" {
			return nil, fmt.Errorf("--dial-override: %q is not name=host:port", part)
		}
		out[raftnode.RaftID(name)] = addr
	}
	return out, nil
}

// dialingTransport dials some members at addresses other than the ones the
// cluster records for them (--dial-override): for NAT, tunnels, or tests that
// route each link through a fault-injecting proxy.
type dialingTransport struct {
	*transport.Transport
	override map[uint64]string
}

var _ raftnode.Transport = dialingTransport{}

func (d dialingTransport) AddPeer(id uint64, addr string) {
	if a, ok := d.override[id]; ok {
		addr = a
	}
	d.Transport.AddPeer(id, addr)
}
