package chaos

import (
	"math"
	"testing"

	"github.com/anishathalye/porcupine"
)

// TestModel checks the model on small histories whose verdict is known, so a
// model that accepts too much (and would hide bugs) or too little (and would
// cry wolf) is caught before a chaos round relies on it.
func TestModel(t *testing.T) {
	get := func(k string) kvInput { return kvInput{Kind: opGet, Key: k} }
	put := func(k, v string) kvInput { return kvInput{Kind: opPut, Key: k, Value: v} }
	cas := func(k, v string, prev int64) kvInput { return kvInput{Kind: opCAS, Key: k, Value: v, Prev: prev} }
	del := func(k string) kvInput { return kvInput{Kind: opDel, Key: k} }
	ok := kvOutput{Status: 200}
	notFound := kvOutput{Status: 404}
	unknown := kvOutput{Status: statusUnknown}
	val := func(v string, ver int64) kvOutput { return kvOutput{Status: 200, Value: v, Version: ver} }
	conflict := func(ver int64) kvOutput { return kvOutput{Status: 409, Version: ver} }
	open := int64(math.MaxInt64)
	type o struct {
		client    int
		in        kvInput
		out       kvOutput
		call, ret int64
	}
	tests := []struct {
		name string
		ops  []o
		want bool
	}{
		{"empty key reads not found", []o{{0, get("a"), notFound, 0, 1}}, true},
		{"read your write", []o{{0, put("a", "x"), ok, 0, 1}, {0, get("a"), val("x", 1), 2, 3}}, true},
		{"version counts writes", []o{{0, put("a", "x"), ok, 0, 1}, {0, put("a", "y"), ok, 2, 3}, {0, get("a"), val("y", 2), 4, 5}}, true},
		{"wrong version", []o{{0, put("a", "x"), ok, 0, 1}, {0, get("a"), val("x", 2), 2, 3}}, false},
		{"stale read after ack", []o{{0, put("a", "x"), ok, 0, 1}, {1, get("a"), notFound, 2, 3}}, false},
		{"concurrent read may miss", []o{{0, put("a", "x"), ok, 0, 10}, {1, get("a"), notFound, 2, 3}}, true},
		{"lost acknowledged write", []o{{0, put("a", "x"), ok, 0, 1}, {0, put("a", "y"), ok, 2, 3}, {1, get("a"), val("x", 1), 4, 5}}, false},
		{"delete resets version", []o{{0, put("a", "x"), ok, 0, 1}, {0, del("a"), ok, 2, 3}, {0, put("a", "y"), ok, 4, 5}, {0, get("a"), val("y", 1), 6, 7}}, true},
		{"delete of missing is 404", []o{{0, del("a"), notFound, 0, 1}}, true},
		{"delete of missing is not 200", []o{{0, del("a"), ok, 0, 1}}, false},
		{"cas wins on its version", []o{{0, put("a", "x"), ok, 0, 1}, {0, cas("a", "y", 1), ok, 2, 3}, {0, get("a"), val("y", 2), 4, 5}}, true},
		{"cas must not win on another version", []o{{0, put("a", "x"), ok, 0, 1}, {0, cas("a", "y", 2), ok, 2, 3}}, false},
		{"cas conflict carries the version", []o{{0, put("a", "x"), ok, 0, 1}, {0, cas("a", "y", 0), conflict(1), 2, 3}}, true},
		{"cas conflict with wrong version", []o{{0, put("a", "x"), ok, 0, 1}, {0, cas("a", "y", 0), conflict(2), 2, 3}}, false},
		{"cas conflict when it would hold", []o{{0, cas("a", "y", 0), conflict(0), 0, 1}}, false},
		{"create-only on a missing key", []o{{0, cas("a", "y", 0), ok, 0, 1}, {0, get("a"), val("y", 1), 2, 3}}, true},
		{"racing cas: one winner", []o{{0, cas("a", "x", 0), ok, 0, 5}, {1, cas("a", "y", 0), conflict(1), 0, 5}}, true},
		{"racing cas: two winners", []o{{0, cas("a", "x", 0), ok, 0, 5}, {1, cas("a", "y", 0), ok, 0, 5}}, false},
		{"unknown write may have happened", []o{{0, put("a", "x"), unknown, 0, open}, {1, get("a"), val("x", 1), 2, 3}}, true},
		{"unknown write may not have happened", []o{{0, put("a", "x"), unknown, 0, open}, {1, get("a"), notFound, 2, 3}}, true},
		{"unknown write cannot happen before its call", []o{{1, get("a"), val("x", 1), 0, 1}, {0, put("a", "x"), unknown, 2, open}}, false},
		{"unknown write cannot be undone", []o{{0, put("a", "x"), unknown, 0, open}, {1, get("a"), val("x", 1), 2, 3}, {1, get("a"), notFound, 4, 5}}, false},
		{"unknown delete", []o{{0, put("a", "x"), ok, 0, 1}, {0, del("a"), unknown, 2, open}, {1, get("a"), notFound, 4, 5}}, true},
		{"keys are independent", []o{{0, put("a", "x"), ok, 0, 1}, {1, get("b"), notFound, 2, 3}, {1, get("a"), val("x", 1), 4, 5}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h []porcupine.Operation
			for _, op := range tt.ops {
				h = append(h, porcupine.Operation{ClientId: op.client, Input: op.in, Output: op.out, Call: op.call, Return: op.ret})
			}
			if got := porcupine.CheckOperations(kvModel, h); got != tt.want {
				t.Fatalf("linearizable = %v, want %v", got, tt.want)
			}
		})
	}
}
