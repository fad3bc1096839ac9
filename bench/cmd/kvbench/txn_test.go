package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
)

// The pairs of the transaction workloads: neighbours (2i, 2i+1) for near,
// keys half the key space apart for far; always two distinct keys.
func TestTxnPairs(t *testing.T) {
	for _, tc := range []struct {
		workload string
		keys, k  int
		want     []int
	}{
		{"txn-near", 10, 0, []int{0, 1}}, {"txn-near", 10, 1, []int{0, 1}}, {"txn-near", 10, 7, []int{6, 7}},
		{"txn-near", 11, 10, []int{8, 9}}, {"txn-near", 3, 2, []int{0, 1}},
		{"txn-far", 10, 0, []int{0, 5}}, {"txn-far", 10, 7, []int{7, 2}}, {"txn-far", 2, 1, []int{1, 0}},
	} {
		c := &config{workload: tc.workload, keys: tc.keys}
		got := txnPair(c, tc.k)
		want := []string{keyName(tc.want[0]), keyName(tc.want[1])}
		if !slices.Equal(got, want) {
			t.Errorf("%s keys=%d k=%d: %v, want %v", tc.workload, tc.keys, tc.k, got, want)
		}
	}
	if txnPair(&config{workload: "write", keys: 10}, 3) != nil {
		t.Error("a write workload made a transaction")
	}
	if err := (&config{target: "redis", workload: "txn-far", clients: 1, valueSize: 16, keys: 4, dist: "uniform", route: "rr", duration: 1}).validate(""); err == nil {
		t.Error("txn-far accepted for redis")
	}
}

// The HTTP target posts one put per key to /txn, as distkv's API takes it.
func TestHTTPTxnBody(t *testing.T) {
	var got struct {
		Success []struct {
			Put struct{ Key, Value string } `json:"put"`
		} `json:"success"`
	}
	var path string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path = r.URL.Path
		b, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(b, &got); err != nil {
			t.Errorf("body %s: %v", b, err)
		}
		w.Write([]byte(`{"succeeded":true}`))
	}))
	defer srv.Close()
	c := &config{target: "distkv", route: "rr", endpoints: []string{strings.TrimPrefix(srv.URL, "http://")}, clients: 1}
	tg := newHTTPTarget(c)
	if err := tg.Txn(context.Background(), []string{"a", "b"}, []byte("xyz")); err != nil {
		t.Fatal(err)
	}
	if path != "/txn" || len(got.Success) != 2 || got.Success[0].Put.Key != "a" || got.Success[1].Put.Key != "b" || got.Success[1].Put.Value != "xyz" {
		t.Fatalf("posted %s %+v", path, got)
	}
}
