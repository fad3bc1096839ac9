package httpapi

import (
	"encoding/json"
	"net/http"
)

// Range is one range of the key space as GET /cluster/ranges shows it: its
// id, its keys [Start, End) (End "" is the end of the key space), the node
// that leads its Raft group ("" if none is known), its replicas' nodes and
// the size of its keys and values.
type Range struct {
	ID       uint64   `json:"id"`
	Start    string   `json:"start"`
	End      string   `json:"end"`
	Leader   string   `json:"leader"`
	Replicas []string `json:"replicas"`
	// Learners are replicas being added: they receive the range's log and
	// do not vote yet.
	Learners []string `json:"learners,omitempty"`
	Bytes    int64    `json:"bytes"`
	// Meta marks the meta range (group 1), which is on every node.
	Meta bool `json:"meta,omitempty"`
}

// RangeLister is a Backend that knows its node's ranges.
type RangeLister interface {
	// Ranges returns the ranges this node holds a replica of, sorted by
	// Start.
	Ranges() []Range
}

// ranges answers GET /cluster/ranges: {"ranges":[...]}, sorted by start.
func (h *handler) ranges(w http.ResponseWriter) {
	lister, ok := h.backend.(RangeLister)
	if !ok {
		writeError(w, http.StatusNotImplemented, "this node does not list its ranges")
		return
	}
	rs := lister.Ranges()
	if rs == nil {
		rs = []Range{}
	}
	for i := range rs {
		if rs[i].Replicas == nil {
			rs[i].Replicas = []string{}
		}
	}
	body, _ := json.Marshal(struct {
		Ranges []Range `json:"ranges"`
	}{rs})
	writeJSON(w, http.StatusOK, body)
}
