package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"time"
)

// Status is a node's view of the cluster (GET /cluster/status).
type Status struct {
	// ID is the answering node's.
	ID string `json:"id"`
	// ClusterID is 16 hex digits, "" on a node whose data predates them.
	ClusterID string `json:"cluster_id"`
	// Leader is the leader's id, "" when none is known.
	Leader       string `json:"leader"`
	Term         uint64 `json:"term"`
	CommitIndex  uint64 `json:"commit_index"`
	AppliedIndex uint64 `json:"applied_index"`
	// DiskFull: the node cannot write its log for lack of space.
	DiskFull bool `json:"disk_full"`
	// Members, sorted by id.
	Members []Member `json:"members"`
	// Ranges is how many ranges the node holds a replica of, RangeLeaders
	// how many of them it leads.
	Ranges       int `json:"ranges"`
	RangeLeaders int `json:"range_leaders"`
	// Raw is the answer as the server sent it.
	Raw json.RawMessage `json:"-"`
}

// Member is a member of the cluster as a node sees it.
type Member struct {
	ID string `json:"id"`
	// Peer is its Raft address, HTTP its API's ("" until it published it).
	Peer string `json:"peer"`
	HTTP string `json:"http"`
	// Role is "voter" or "learner".
	Role string `json:"role"`
	// Reachable: the node heard from it lately; nil when the node cannot
	// know (a follower knows only itself and the leader).
	Reachable *bool `json:"reachable"`
	// LastContact is when the node last heard from it; zero if never.
	LastContact time.Time `json:"last_contact"`
	// MatchIndex and Lag (entries behind the leader's log) are known on
	// the leader only.
	MatchIndex *uint64 `json:"match_index"`
	Lag        *uint64 `json:"lag"`
}

// Status returns the cluster's status as one node sees it (the one that
// answers).
func (c *Client) Status(ctx context.Context) (Status, error) {
	st, _, err := c.status(ctx)
	return st, err
}

// status is Status and the endpoint that answered.
func (c *Client) status(ctx context.Context) (Status, string, error) {
	a, err := c.do(ctx, request{method: http.MethodGet, path: "/cluster/status"})
	if err != nil {
		return Status{}, "", err
	}
	var st Status
	if err := json.Unmarshal(a.body, &st); err != nil {
		return Status{}, "", fmt.Errorf("decode cluster status: %w", err)
	}
	st.Raw = a.body
	return st, a.endpoint, nil
}

// RangeInfo is one range of the key space (GET /cluster/ranges): its keys
// [Start, End) (End "" is the end of the key space), the node leading its
// Raft group ("" if none is known), its replicas' nodes and the size of its
// keys and values.
type RangeInfo struct {
	ID       uint64   `json:"id"`
	Start    string   `json:"start"`
	End      string   `json:"end"`
	Leader   string   `json:"leader"`
	Replicas []string `json:"replicas"`
	// Learners are replicas being added (they do not vote yet).
	Learners []string `json:"learners,omitempty"`
	Bytes    int64    `json:"bytes"`
	// Meta marks the meta range, on every node.
	Meta bool `json:"meta,omitempty"`
}

// RangeList is the answer to Ranges.
type RangeList struct {
	Ranges []RangeInfo `json:"ranges"`
	// Raw is the answer as the server sent it.
	Raw json.RawMessage `json:"-"`
}

// Ranges returns the ranges of the key space as one node holds them, sorted
// by Start.
func (c *Client) Ranges(ctx context.Context) (RangeList, error) {
	a, err := c.do(ctx, request{method: http.MethodGet, path: "/cluster/ranges"})
	if err != nil {
		return RangeList{}, err
	}
	var l RangeList
	if err := json.Unmarshal(a.body, &l); err != nil {
		return RangeList{}, fmt.Errorf("decode ranges: %w", err)
	}
	l.Raw = a.body
	return l, nil
}

// MemberList is the answer to Members.
type MemberList struct {
	Members []Member `json:"members"`
	// Raw is the answer as the server sent it.
	Raw json.RawMessage `json:"-"`
}

// Members lists the members of the cluster, as one node sees them.
func (c *Client) Members(ctx context.Context) (MemberList, error) {
	a, err := c.do(ctx, request{method: http.MethodGet, path: "/cluster/members"})
	if err != nil {
		return MemberList{}, err
	}
	var l MemberList
	if err := json.Unmarshal(a.body, &l); err != nil {
		return MemberList{}, fmt.Errorf("decode members: %w", err)
	}
	l.Raw = a.body
	return l, nil
}

// NewMember describes a member to add.
type NewMember struct {
	// ID is its name, unique in the cluster. Required.
	ID string
	// Peer is its Raft address. Required.
	Peer string
	// HTTP is its API's address.
	HTTP string
	// Voter adds it as a voter at once; else it is a learner, which catches
	// up before PromoteMember makes it a voter (safer: a voter far behind
	// weakens the quorum).
	Voter bool
}

// Answer is the answer to a change that reports nothing but that it was
// made: {"status":"ok"}.
type Answer struct {
	// Raw is the answer as the server sent it.
	Raw json.RawMessage
}

// AddMember adds a member; then start the new node with --join. A change is
// sent again only where it surely was not made (see the package
// documentation).
func (c *Client) AddMember(ctx context.Context, m NewMember) (Answer, error) {
	body, err := json.Marshal(map[string]any{"id": m.ID, "peer": m.Peer, "http": m.HTTP, "learner": !m.Voter})
	if err != nil {
		return Answer{}, err
	}
	return c.change(ctx, http.MethodPost, "/cluster/members", body)
}

// PromoteMember makes the learner id a voter.
func (c *Client) PromoteMember(ctx context.Context, id string) (Answer, error) {
	return c.change(ctx, http.MethodPost, "/cluster/members/"+url.PathEscape(id)+"/promote", nil)
}

// RemoveMember removes the member id (a removed node stops itself).
func (c *Client) RemoveMember(ctx context.Context, id string) (Answer, error) {
	return c.change(ctx, http.MethodDelete, "/cluster/members/"+url.PathEscape(id), nil)
}

func (c *Client) change(ctx context.Context, method, path string, body []byte) (Answer, error) {
	a, err := c.do(ctx, request{method: method, path: path, body: body, retry: retryIfNotApplied})
	if err != nil {
		return Answer{}, err
	}
	return Answer{Raw: a.body}, nil
}

// TransferResult is the answer to TransferLeader.
type TransferResult struct {
	// Leader is the member that leads now.
	Leader string
	// Raw is the answer as the server sent it.
	Raw json.RawMessage
}

// TransferLeader moves leadership to the voter to, and returns once it
// leads. With to "", the leader picks the most caught-up other voter (a
// follower that is a voter picks itself). A transfer the configuration
// refuses (to is a learner, no other voter) is a 409, never retried.
func (c *Client) TransferLeader(ctx context.Context, to string) (TransferResult, error) {
	body, err := json.Marshal(map[string]string{"to": to})
	if err != nil {
		return TransferResult{}, err
	}
	a, err := c.do(ctx, request{method: http.MethodPost, path: "/cluster/leader/transfer", body: body, retry: retryIfNotApplied})
	if err != nil {
		return TransferResult{}, err
	}
	var res struct {
		Leader string `json:"leader"`
	}
	if err := json.Unmarshal(a.body, &res); err != nil {
		return TransferResult{}, fmt.Errorf("decode the answer to a leader transfer: %w", err)
	}
	return TransferResult{Leader: res.Leader, Raw: a.body}, nil
}
