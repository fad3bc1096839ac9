package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// ClusterAdmin is implemented by backends that change membership and move
// leadership. Errors wrapping ErrUnknownMember answer 404, ErrMemberExists,
// ErrChangeRefused and ErrTransferRefused 409.
type ClusterAdmin interface {
	AddMember(ctx context.Context, m Member, learner bool) error
	PromoteMember(ctx context.Context, id string) error
	RemoveMember(ctx context.Context, id string) error
	// TransferLeader moves leadership to the member id ("" = the best
	// candidate) and returns once it leads. Any member serves it.
	TransferLeader(ctx context.Context, id string) error
}

// Errors a ClusterAdmin wraps so that the API answers with the right status.
var (
	ErrUnknownMember = errors.New("no such member")
	ErrMemberExists  = errors.New("member already exists")
	// ErrChangeRefused: the change cannot apply to the current
	// configuration (removing the last voter, say): 409.
	ErrChangeRefused = errors.New("membership change refused")
	// ErrTransferRefused: leadership cannot move as asked in the current
	// configuration (the target is a learner, no other voter): 409, so that
	// a client does not retry it as it retries a 503.
	ErrTransferRefused = errors.New("leadership transfer refused")
)

const membersPrefix = "/cluster/members/"

// serveCluster answers the membership and leadership endpoints:
//
//	GET    /cluster/members                  {"members":[...]}
//	POST   /cluster/members                  {"id","peer","http","learner"} (learner defaults to true)
//	DELETE /cluster/members/{id}
//	POST   /cluster/members/{id}/promote
//	POST   /cluster/leader/transfer          {"to":"n2"} or no body
func (h *handler) serveCluster(w http.ResponseWriter, r *http.Request, path string) {
	admin, ok := h.backend.(ClusterAdmin)
	if path == "/cluster/members" && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		st := h.backend.Status()
		if st.Members == nil {
			st.Members = []Member{}
		}
		body, _ := json.Marshal(struct {
			Members []Member `json:"members"`
		}{st.Members})
		writeJSON(w, http.StatusOK, body)
		return
	}
	if !ok {
		writeError(w, http.StatusNotImplemented, "this node does not manage membership")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.cfg.RequestTimeout)
	defer cancel()
	var err error
	switch {
	case path == "/cluster/members":
		if r.Method != http.MethodPost {
			methodNotAllowed(w, "GET, HEAD, POST")
			return
		}
		var req struct {
			ID      string `json:"id"`
			Peer    string `json:"peer"`
			HTTP    string `json:"http"`
			Learner *bool  `json:"learner"`
		}
		if aerr := decodeJSONBody(r, &req); aerr != nil {
			writeAPIError(w, aerr)
			return
		}
		if req.ID == "" || req.Peer == "" {
			writeError(w, http.StatusUnprocessableEntity, `a member needs "id" and "peer" (and usually "http")`)
			return
		}
		learner := req.Learner == nil || *req.Learner
		err = admin.AddMember(ctx, Member{ID: req.ID, Peer: req.Peer, HTTP: req.HTTP}, learner)
	case path == "/cluster/leader/transfer":
		if r.Method != http.MethodPost {
			methodNotAllowed(w, "POST")
			return
		}
		var req struct {
			To string `json:"to"`
		}
		if r.ContentLength != 0 {
			if aerr := decodeJSONBody(r, &req); aerr != nil {
				writeAPIError(w, aerr)
				return
			}
		}
		if err = admin.TransferLeader(ctx, req.To); err == nil {
			body, _ := json.Marshal(map[string]string{"status": "ok", "leader": h.backend.Status().Leader})
			writeJSON(w, http.StatusOK, body)
			return
		}
		if !errors.Is(err, ErrUnknownMember) && !errors.Is(err, ErrTransferRefused) {
			// Moving leadership writes nothing: a timeout is a read's.
			h.backendError(ctx, w, r, "transfer", err, false)
			return
		}
	default:
		rest := strings.TrimPrefix(path, membersPrefix)
		id, action, _ := strings.Cut(rest, "/")
		if uid, uerr := url.PathUnescape(id); uerr == nil {
			id = uid
		}
		switch {
		case id == "":
			writeJSON(w, http.StatusNotFound, bodyNotFound)
			return
		case action == "" && r.Method == http.MethodDelete:
			err = admin.RemoveMember(ctx, id)
		case action == "":
			methodNotAllowed(w, "DELETE")
			return
		case action == "promote" && r.Method == http.MethodPost:
			err = admin.PromoteMember(ctx, id)
		case action == "promote":
			methodNotAllowed(w, "POST")
			return
		default:
			writeJSON(w, http.StatusNotFound, bodyNotFound)
			return
		}
	}
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, []byte(`{"status":"ok"}`))
	case errors.Is(err, ErrUnknownMember):
		writeError(w, http.StatusNotFound, err.Error())
	case errors.Is(err, ErrMemberExists), errors.Is(err, ErrChangeRefused), errors.Is(err, ErrTransferRefused):
		writeError(w, http.StatusConflict, err.Error())
	default:
		h.backendError(ctx, w, r, "cluster", err, true)
	}
}

// decodeJSONBody decodes a small JSON object body into v.
func decodeJSONBody(r *http.Request, v any) *apiError {
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err != nil {
		return &apiError{http.StatusBadRequest, "reading request body: " + err.Error()}
	}
	if err := json.Unmarshal(body, v); err != nil {
		return unprocessable("request body is not the expected JSON object: %v", err)
	}
	return nil
}
