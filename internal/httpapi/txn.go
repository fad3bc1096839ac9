package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/distkv/distkv/internal/kv"
)

// POST /txn: an atomic transaction in the style of etcd's Txn, proposed as one
// kv.Command (kv.OpTxn). See the package documentation for the format; the
// semantics are kv.Txn's.

const (
	txnPath  = "/txn"
	allowTxn = "POST"
)

// The JSON names of the compare targets and ops, and of the operations.
var (
	txnTargets = map[string]kv.CompareTarget{
		"value":           kv.TargetValue,
		"version":         kv.TargetVersion,
		"revision":        kv.TargetRevision,
		"create_revision": kv.TargetCreateRevision,
		"exists":          kv.TargetExists,
	}
	txnCompareOps = map[string]kv.CompareOp{
		"==": kv.CompareEqual,
		"!=": kv.CompareNotEqual,
		"<":  kv.CompareLess,
		">":  kv.CompareGreater,
		"<=": kv.CompareLessEqual,
		">=": kv.CompareGreaterEqual,
	}
)

const (
	txnExample     = `{"compare":[...],"success":[...],"failure":[...]}`
	compareExample = `{"key":"k","target":"version","op":"==","version":1}`
	opExample      = `{"put":{"key":"k","value":"v"}}, {"delete":{"key":"k"}} or {"get":{"key":"k"}}`
)

// entryPath names an entry of a transaction in error details, as in
// "compare[2]" or "success[0].put". It is formatted only when a detail is
// written.
type entryPath struct {
	list string // "compare", "success" or "failure"
	i    int
	op   string // "put", "delete" or "get" inside an operation, else ""
}

func (p entryPath) String() string {
	s := p.list + "[" + strconv.Itoa(p.i) + "]"
	if p.op != "" {
		s += "." + p.op
	}
	return s
}

func (h *handler) txn(w http.ResponseWriter, r *http.Request) {
	q, aerr := parseQuery(r)
	if aerr == nil {
		aerr = checkParams(q, "POST /txn", paramsTxn)
	}
	if aerr != nil {
		writeAPIError(w, aerr)
		return
	}
	body, err := readBody(w, r, h.bodyLimit)
	if err != nil {
		if ae, ok := errors.AsType[*apiError](err); ok {
			writeAPIError(w, ae)
		}
		return // errClientGone
	}
	tx, aerr := parseTxn(body, &h.cfg)
	if aerr != nil {
		writeAPIError(w, aerr)
		return
	}
	if !h.mayTxn(w, r, tx) {
		return
	}
	id, aerr := requestID(r, q)
	if aerr != nil {
		writeAPIError(w, aerr)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.cfg.RequestTimeout)
	defer cancel()
	res, ok := h.execute(ctx, w, r, &kv.Command{Op: kv.OpTxn, Txn: tx, Request: id})
	if !ok {
		return
	}
	if res.Status == kv.StatusAnswerNotKept {
		writeJSON(w, http.StatusConflict, appendNotKept(nil, res))
		return
	}
	// A repeated request gets its first answer, whatever this body says.
	if msg := checkTxnResult(tx, res); msg != "" && !res.Replayed {
		h.log.Error("backend returned a malformed txn result", "problem", msg)
		writeError(w, http.StatusInternalServerError, "internal error: "+msg)
		return
	}
	buf := getBuf()
	*buf = appendTxnResult(*buf, res)
	writeJSON(w, http.StatusOK, *buf)
	putBuf(buf)
}

// checkTxnResult says what is wrong with res as the outcome of tx; "" if
// nothing is.
func checkTxnResult(tx *kv.Txn, res kv.Result) string {
	if res.Status != kv.StatusOK || res.Txn == nil {
		return fmt.Sprintf("status %d and no txn outcome", res.Status)
	}
	ops := tx.Failure
	if res.Txn.Succeeded {
		ops = tx.Success
	}
	if len(res.Txn.Responses) != len(ops) {
		return fmt.Sprintf("%d responses to %d operations", len(res.Txn.Responses), len(ops))
	}
	for i, r := range res.Txn.Responses {
		if r.Type != ops[i].Type {
			return fmt.Sprintf("response %d is to a %v, not a %v", i, r.Type, ops[i].Type)
		}
	}
	return ""
}

// appendTxnResult appends
// {"succeeded":b,"revision":n,"responses":[...]}, one response per
// operation of the branch that ran: {"put":{"revision":n}},
// {"delete":{"deleted":n}}, {"get":{"key":..,"value":..,"version":..,
// "revision":..,"create_revision":..}} or {"get":null} for a missing key.
func appendTxnResult(b []byte, res kv.Result) []byte {
	b = append(b, `{"succeeded":`...)
	b = strconv.AppendBool(b, res.Txn.Succeeded)
	b = append(b, `,"revision":`...)
	b = strconv.AppendInt(b, res.Revision, 10)
	b = append(b, `,"responses":[`...)
	for i, r := range res.Txn.Responses {
		if i > 0 {
			b = append(b, ',')
		}
		switch r.Type {
		case kv.TxnPut:
			b = append(b, `{"put":{"revision":`...)
			b = strconv.AppendInt(b, res.Revision, 10)
			b = append(b, `}}`...)
		case kv.TxnDelete:
			b = append(b, `{"delete":{"deleted":`...)
			b = strconv.AppendInt(b, r.Deleted, 10)
			b = append(b, `}}`...)
		case kv.TxnGet:
			if !r.Found {
				b = append(b, `{"get":null}`...)
				break
			}
			b = append(b, `{"get":{"key":`...)
			b = appendString(b, r.KV.Key)
			b = append(b, `,"value":`...)
			b = appendValue(b, r.KV.Value, r.KV.Kind)
			b = append(b, `,"version":`...)
			b = strconv.AppendInt(b, r.KV.Version, 10)
			b = append(b, `,"revision":`...)
			b = strconv.AppendInt(b, r.KV.Revision, 10)
			b = append(b, `,"create_revision":`...)
			b = strconv.AppendInt(b, r.KV.CreateRevision, 10)
			b = append(b, `}}`...)
		}
	}
	return append(b, `]}`...)
}

// parseTxn decodes and validates the body of POST /txn. Unlike a PUT body it
// is strict: an unknown or repeated field is refused rather than ignored,
// since a transaction that silently does less than its author meant is worse
// than one refused. The keys and values of the result may alias b.
func parseTxn(b []byte, cfg *Config) (*kv.Txn, *apiError) {
	i := skipSpace(b, 0)
	if i == len(b) {
		return nil, unprocessable("request body is empty; expected a JSON object such as %s", txnExample)
	}
	if !json.Valid(b) {
		var raw json.RawMessage
		err := json.Unmarshal(b, &raw)
		if se, ok := errors.AsType[*json.SyntaxError](err); ok {
			return nil, unprocessable("request body is not valid JSON: %v (at byte %d)", se, se.Offset)
		}
		return nil, unprocessable("request body is not valid JSON: %v", err)
	}
	if b[i] != '{' {
		return nil, unprocessable("request body must be a JSON object such as %s, not %s", txnExample, kindOf(b[i:]))
	}
	tx := &kv.Txn{}
	var seen [3]bool
	aerr := eachMember(b[i:], func(name, raw []byte) *apiError {
		var field int
		switch string(name) {
		case "compare":
			field = 0
		case "success":
			field = 1
		case "failure":
			field = 2
		default:
			return unprocessable(`request body has an unknown field %q; a transaction has "compare", "success" and "failure"`, name)
		}
		if seen[field] {
			return unprocessable("request body has the field %q more than once (repeated)", name)
		}
		seen[field] = true
		n, aerr := txnList(string(name), raw, cfg)
		if aerr != nil || n == 0 {
			return aerr
		}
		switch field {
		case 0:
			tx.Compares = make([]kv.Compare, n)
			return eachElement(raw, func(j int, raw []byte) *apiError {
				return parseCompare(entryPath{list: "compare", i: j}, raw, cfg, &tx.Compares[j])
			})
		case 1:
			tx.Success = make([]kv.TxnOp, n)
			return eachElement(raw, func(j int, raw []byte) *apiError {
				return parseTxnOp(entryPath{list: "success", i: j}, raw, cfg, &tx.Success[j])
			})
		default:
			tx.Failure = make([]kv.TxnOp, n)
			return eachElement(raw, func(j int, raw []byte) *apiError {
				return parseTxnOp(entryPath{list: "failure", i: j}, raw, cfg, &tx.Failure[j])
			})
		}
	})
	if aerr != nil {
		return nil, aerr
	}
	if err := tx.Validate(); err != nil {
		// Only a key written twice in a branch gets here: the parser
		// produces known targets, ops and types.
		return nil, unprocessable("%v", err)
	}
	return tx, nil
}

// txnList checks the raw value of "compare", "success" or "failure": an array
// of at most MaxTxnOps entries, or null for none. It returns the length.
func txnList(name string, raw []byte, cfg *Config) (int, *apiError) {
	switch raw[0] {
	case 'n':
		return 0, nil
	case '[':
	default:
		return 0, unprocessable("%q must be an array, not %s", name, kindOf(raw))
	}
	n := 0
	_ = eachElement(raw, func(int, []byte) *apiError { n++; return nil })
	if n > cfg.MaxTxnOps {
		what := "operations"
		if name == "compare" {
			what = "compares"
		}
		return 0, &apiError{http.StatusRequestEntityTooLarge,
			fmt.Sprintf("%q has %d %s; the limit is %d", name, n, what, cfg.MaxTxnOps)}
	}
	return n, nil
}

// parseCompare decodes the compare at path into c:
// {"key":k,"target":t,"op":o,<t>:operand}, where the operand field is named
// by the target and "op" may be left out for "exists" (meaning "==").
func parseCompare(path entryPath, raw []byte, cfg *Config, c *kv.Compare) *apiError {
	if raw[0] != '{' {
		return unprocessable("%s must be an object such as %s, not %s", path, compareExample, kindOf(raw))
	}
	const (
		fKey = iota
		fTarget
		fOp
		fValue
		fVersion
		fRevision
		fCreateRevision
		fExists
		nFields
	)
	names := [nFields]string{"key", "target", "op", "value", "version", "revision", "create_revision", "exists"}
	var fields [nFields][]byte // nil: absent or null
	var seen [nFields]bool
	aerr := eachMember(raw, func(name, v []byte) *apiError {
		f := -1
		for j, n := range names {
			if n == string(name) {
				f = j
				break
			}
		}
		switch {
		case f < 0:
			return unprocessable(`%s has an unknown field %q; a compare has "key", "target", "op" and the operand named by its target, as in %s`,
				path, name, compareExample)
		case seen[f]:
			return unprocessable("%s has the field %q more than once (repeated)", path, name)
		}
		seen[f] = true
		if string(v) != "null" {
			fields[f] = v
		}
		return nil
	})
	if aerr != nil {
		return aerr
	}
	var err *apiError
	if c.Key, err = txnKey(path, fields[fKey], cfg); err != nil {
		return err
	}
	target, err := txnString(path, "target", fields[fTarget])
	if err != nil {
		return err
	}
	var ok bool
	if c.Target, ok = txnTargets[string(target)]; !ok {
		return unprocessable(`%s.target must be one of "value", "version", "revision", "create_revision" and "exists", not %s`,
			path, fields[fTarget])
	}
	var operand int
	switch c.Target {
	case kv.TargetValue:
		operand = fValue
	case kv.TargetVersion:
		operand = fVersion
	case kv.TargetRevision:
		operand = fRevision
	case kv.TargetCreateRevision:
		operand = fCreateRevision
	default:
		operand = fExists
	}
	if fields[fOp] == nil && c.Target == kv.TargetExists {
		c.Op = kv.CompareEqual
	} else {
		op, err := txnString(path, "op", fields[fOp])
		if err != nil {
			return err
		}
		if c.Op, ok = txnCompareOps[string(op)]; !ok {
			return unprocessable(`%s.op must be one of "==", "!=", "<", ">", "<=" and ">=", not %s`, path, fields[fOp])
		}
		if c.Target == kv.TargetExists && c.Op != kv.CompareEqual && c.Op != kv.CompareNotEqual {
			return unprocessable(`%s.op must be "==" or "!=" for the target "exists", not %s`, path, fields[fOp])
		}
	}
	for f := fValue; f <= fExists; f++ {
		if f != operand && fields[f] != nil {
			return unprocessable(`%s has the target %q, so the field %q does not apply; the operand goes in %q`,
				path, names[operand], names[f], names[operand])
		}
	}
	v := fields[operand]
	if v == nil {
		return unprocessable(`%s has the target %q but no %q field to compare with`, path, names[operand], names[operand])
	}
	switch c.Target {
	case kv.TargetValue:
		if v[0] != '"' {
			return unprocessable("%s.value must be a string, not %s", path, kindOf(v))
		}
		c.Value = unquote(v)
		if len(c.Value) > cfg.MaxValueSize {
			return &apiError{http.StatusRequestEntityTooLarge,
				fmt.Sprintf("%s.value is %d bytes; the limit is %d bytes", path, len(c.Value), cfg.MaxValueSize)}
		}
	case kv.TargetExists:
		switch string(v) {
		case "true":
			c.Exists = true
		case "false":
		default:
			return unprocessable("%s.exists must be a boolean, not %s", path, kindOf(v))
		}
	default:
		n, _, err := bodyInt(names[operand], v)
		if err != nil {
			return unprocessable("%s: %s", path, err.detail)
		}
		c.Number = n
	}
	return nil
}

// parseTxnOp decodes the operation at path into op: {"put":{"key":k,
// "value":v}}, {"delete":{"key":k}} or {"get":{"key":k}}.
func parseTxnOp(path entryPath, raw []byte, cfg *Config, op *kv.TxnOp) *apiError {
	if raw[0] != '{' {
		return unprocessable("%s must be an object: %s, not %s", path, opExample, kindOf(raw))
	}
	var inner []byte
	aerr := eachMember(raw, func(name, v []byte) *apiError {
		var t kv.TxnOpType
		switch string(name) {
		case "put":
			t = kv.TxnPut
		case "delete":
			t = kv.TxnDelete
		case "get":
			t = kv.TxnGet
		default:
			return unprocessable("%s has an unknown field %q; an operation is one of %s", path, name, opExample)
		}
		if op.Type != 0 {
			return unprocessable("%s has both %q and %q; an operation is exactly one of %s", path, op.Type, name, opExample)
		}
		op.Type, inner = t, v
		return nil
	})
	switch {
	case aerr != nil:
		return aerr
	case op.Type == 0:
		return unprocessable("%s is empty; an operation is one of %s", path, opExample)
	}
	path.op = op.Type.String()
	if inner[0] != '{' {
		return unprocessable("%s must be an object, not %s", path, kindOf(inner))
	}
	var key, value []byte
	var seenKey, seenValue bool
	aerr = eachMember(inner, func(name, v []byte) *apiError {
		var seen *bool
		switch {
		case string(name) == "key":
			seen = &seenKey
			key = v
		case string(name) == "value" && op.Type == kv.TxnPut:
			seen = &seenValue
			value = v
		case op.Type == kv.TxnPut:
			return unprocessable(`%s has an unknown field %q; a put has "key" and "value"`, path, name)
		default:
			return unprocessable(`%s has an unknown field %q; a %v has only "key"`, path, name, op.Type)
		}
		if *seen {
			return unprocessable("%s has the field %q more than once (repeated)", path, name)
		}
		*seen = true
		return nil
	})
	if aerr != nil {
		return aerr
	}
	if key != nil && string(key) == "null" {
		key = nil
	}
	var err *apiError
	if op.Key, err = txnKey(path, key, cfg); err != nil {
		return err
	}
	if op.Type != kv.TxnPut {
		return nil
	}
	if value == nil {
		return unprocessable(`%s has no "value" field; a put has "key" and "value"`, path)
	}
	if op.Value, op.Kind, err = decodeValue(path.String()+".value", value); err != nil {
		return err
	}
	if len(op.Value) > cfg.MaxValueSize {
		return &apiError{http.StatusRequestEntityTooLarge,
			fmt.Sprintf("%s.value is %d bytes; the limit is %d bytes", path, len(op.Value), cfg.MaxValueSize)}
	}
	return nil
}

// txnKey decodes the raw "key" field of the object at path (nil: absent or
// null): a non-empty string of at most MaxKeySize bytes.
func txnKey(path entryPath, raw []byte, cfg *Config) ([]byte, *apiError) {
	if raw == nil {
		return nil, unprocessable(`%s has no "key" field`, path)
	}
	key, err := txnString(path, "key", raw)
	switch {
	case err != nil:
		return nil, err
	case len(key) == 0:
		return nil, unprocessable("%s.key must not be empty", path)
	case len(key) > cfg.MaxKeySize:
		return nil, &apiError{http.StatusRequestEntityTooLarge,
			fmt.Sprintf("%s.key is %d bytes; the limit is %d bytes", path, len(key), cfg.MaxKeySize)}
	}
	return key, nil
}

// txnString decodes the required string field name of the entry at path
// (raw nil: absent or null).
func txnString(path entryPath, name string, raw []byte) ([]byte, *apiError) {
	switch {
	case raw == nil:
		return nil, unprocessable("%s.%s is missing", path, name)
	case raw[0] != '"':
		return nil, unprocessable("%s.%s must be a string, not %s", path, name, kindOf(raw))
	}
	return unquote(raw), nil
}

// eachMember calls fn with the decoded name and the raw value of each member
// of the well-formed JSON object obj, in order, until fn fails.
func eachMember(obj []byte, fn func(name, raw []byte) *apiError) *apiError {
	for i := 1; ; {
		i = skipSpace(obj, i)
		if obj[i] == '}' {
			return nil
		}
		if obj[i] == ',' {
			i = skipSpace(obj, i+1)
		}
		end := skipString(obj, i)
		name := unquote(obj[i:end])
		i = skipSpace(obj, skipSpace(obj, end)+1) // past ':'
		end = skipValue(obj, i)
		if err := fn(name, obj[i:end]); err != nil {
			return err
		}
		i = end
	}
}

// eachElement calls fn with the index and the raw value of each element of
// the well-formed JSON array arr, in order, until fn fails.
func eachElement(arr []byte, fn func(i int, raw []byte) *apiError) *apiError {
	for i, n := 1, 0; ; n++ {
		i = skipSpace(arr, i)
		if arr[i] == ']' {
			return nil
		}
		if arr[i] == ',' {
			i = skipSpace(arr, i+1)
		}
		end := skipValue(arr, i)
		if err := fn(n, arr[i:end]); err != nil {
			return err
		}
		i = end
	}
}
