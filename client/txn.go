package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
)

// Txn is an atomic transaction (POST /txn): if every compare holds, the
// Success operations run, else the Failure ones, all at one revision, as
// one write. At most 128 compares, and 128 operations per branch; a branch
// may write each key once.
type Txn struct {
	Compare []Compare
	Success []Op
	Failure []Op
}

// Compare is a condition of a Txn on one key. Make it with CompareValue,
// CompareVersion, CompareRevision, CompareCreateRevision, KeyExists or
// KeyMissing. A missing key has version, revision and create revision 0.
type Compare struct {
	key    string
	target string
	op     string // "==", "!=", "<", ">", "<=" or ">="
	// operand is a string (value), an int64 (version, revision,
	// create_revision) or a bool (exists).
	operand any
}

// CompareValue holds when the key's value compares with value by op ("==",
// "!=", "<", ">", "<=", ">=", byte-wise). A key holding a value that is not
// a string, or no value, makes it false (but true for "!=").
func CompareValue(key, op, value string) Compare {
	return Compare{key: key, target: "value", op: op, operand: value}
}

// CompareVersion holds when the key's version compares with version by op.
func CompareVersion(key, op string, version int64) Compare {
	return Compare{key: key, target: "version", op: op, operand: version}
}

// CompareRevision holds when the revision of the key's last change compares
// with revision by op.
func CompareRevision(key, op string, revision int64) Compare {
	return Compare{key: key, target: "revision", op: op, operand: revision}
}

// CompareCreateRevision holds when the revision that created the key
// compares with revision by op.
func CompareCreateRevision(key, op string, revision int64) Compare {
	return Compare{key: key, target: "create_revision", op: op, operand: revision}
}

// KeyExists holds when the key exists.
func KeyExists(key string) Compare {
	return Compare{key: key, target: "exists", op: "==", operand: true}
}

// KeyMissing holds when the key does not exist.
func KeyMissing(key string) Compare {
	return Compare{key: key, target: "exists", op: "==", operand: false}
}

// MarshalJSON writes the compare as the API takes it, its operand in the
// field named by its target: {"key":k,"target":"version","op":"==","version":2}.
func (c Compare) MarshalJSON() ([]byte, error) {
	m := map[string]any{"key": c.key, "target": c.target, "op": c.op}
	if c.target != "" {
		m[c.target] = c.operand
	}
	return json.Marshal(m)
}

// Op is an operation of a Txn. Make it with OpPut, OpPutJSON, OpDelete or
// OpGet.
type Op struct {
	kind  string // "put", "delete" or "get"
	key   string
	value json.RawMessage // put
}

// OpPut writes the string value to key.
func OpPut(key, value string) Op {
	v, _ := json.Marshal(value)
	return Op{kind: "put", key: key, value: v}
}

// OpPutJSON writes the JSON value to key, as PutJSON does. Invalid JSON
// fails the Txn before it is sent.
func OpPutJSON(key string, value json.RawMessage) Op {
	return Op{kind: "put", key: key, value: value}
}

// OpDelete deletes key (a missing key is no error: TxnResponse.Deleted is
// false).
func OpDelete(key string) Op { return Op{kind: "delete", key: key} }

// OpGet reads key, as the transaction's earlier operations left it.
func OpGet(key string) Op { return Op{kind: "get", key: key} }

// MarshalJSON writes the operation as the API takes it:
// {"put":{"key":k,"value":v}}, {"delete":{"key":k}} or {"get":{"key":k}}.
func (o Op) MarshalJSON() ([]byte, error) {
	inner := map[string]any{"key": o.key}
	if o.kind == "put" {
		if !json.Valid(o.value) {
			return nil, fmt.Errorf("put %q: the value is not valid JSON", o.key)
		}
		inner["value"] = o.value
	}
	return json.Marshal(map[string]any{o.kind: inner})
}

// TxnResult is the outcome of a Txn.
type TxnResult struct {
	// Succeeded: every compare held, and the Success operations ran (else
	// the Failure ones).
	Succeeded bool
	// Revision is the transaction's revision.
	Revision int64
	// Responses has one entry for each operation of the branch that ran,
	// in order.
	Responses []TxnResponse
	// Raw is the answer as the server sent it.
	Raw json.RawMessage
}

// TxnResponse is the outcome of one operation of a Txn; Kind says which
// fields apply.
type TxnResponse struct {
	// Kind is "put", "delete" or "get".
	Kind string
	// Revision is a put's revision (the transaction's).
	Revision int64
	// Deleted: a delete found the key and deleted it.
	Deleted bool
	// KV is what a get read, with its CreateRevision; nil for a missing key.
	KV *KeyValue
}

// Txn runs the transaction t. A transaction whose compares failed is no
// error: TxnResult.Succeeded is false. Like Put, it carries request ids and
// is retried, even after a timeout, without risk of being applied twice.
func (c *Client) Txn(ctx context.Context, t Txn) (TxnResult, error) {
	body, err := json.Marshal(struct {
		Compare []Compare `json:"compare,omitempty"`
		Success []Op      `json:"success,omitempty"`
		Failure []Op      `json:"failure,omitempty"`
	}{t.Compare, t.Success, t.Failure})
	if err != nil {
		return TxnResult{}, fmt.Errorf("txn: %w", err)
	}
	a, err := c.do(ctx, request{method: http.MethodPost, path: "/txn", body: body, write: true})
	if err != nil {
		return TxnResult{}, err
	}
	var res struct {
		Succeeded bool                         `json:"succeeded"`
		Revision  int64                        `json:"revision"`
		Responses []map[string]json.RawMessage `json:"responses"`
	}
	if err := json.Unmarshal(a.body, &res); err != nil {
		return TxnResult{}, fmt.Errorf("decode the answer to a txn: %w", err)
	}
	out := TxnResult{Succeeded: res.Succeeded, Revision: res.Revision, Raw: a.body}
	for i, r := range res.Responses {
		var tr TxnResponse
		for kind, raw := range r {
			tr.Kind = kind
			var err error
			switch kind {
			case "put":
				var p struct {
					Revision int64 `json:"revision"`
				}
				err = json.Unmarshal(raw, &p)
				tr.Revision = p.Revision
			case "delete":
				var d struct {
					Deleted int `json:"deleted"`
				}
				err = json.Unmarshal(raw, &d)
				tr.Deleted = d.Deleted > 0
			case "get":
				if string(raw) != "null" {
					var kv KeyValue
					kv, err = decodeKeyValue(raw)
					tr.KV = &kv
				}
			}
			if err != nil {
				return TxnResult{}, fmt.Errorf("decode the answer to a txn: responses[%d]: %w", i, err)
			}
		}
		out.Responses = append(out.Responses, tr)
	}
	return out, nil
}
