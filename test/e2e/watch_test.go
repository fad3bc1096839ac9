package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/distkv/distkv/client"
)

// TestWatchAcrossKills: a watcher on a prefix whose keys span several
// ranges (16 KiB splits) receives every acknowledged put and delete exactly
// once, in revision order, while the node it is connected to is killed -9
// twice (and started again): the Go client connects again through another
// node from where it was.
func TestWatchAcrossKills(t *testing.T) {
	c := startCluster(t, 3, "--range-split-bytes", "16KiB")
	c.leader(10 * time.Second)
	eps := []string{c.http["n1"], c.http["n2"], c.http["n3"]}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// The watcher's client starts with n1, then goes on to n2, n3.
	wc, err := client.New(client.Config{Endpoints: eps, Timeout: 3 * time.Second, RetryFor: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	// The writer's client avoids n1 first, so that its writes go on while
	// n1 is down.
	pc, err := client.New(client.Config{Endpoints: []string{eps[1], eps[2], eps[0]}, Timeout: 3 * time.Second, RetryFor: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	// Something under the prefix before the watch: not to be delivered.
	if _, err := pc.Put(ctx, "w/before", "x"); err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	var got []string
	var lastRev int64
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	watchErr := make(chan error, 1)
	started := make(chan struct{})
	go func() {
		first := true
		for ev, err := range wc.Watch(watchCtx, client.Watch{Prefix: "w/"}) {
			if first {
				close(started)
				first = false
			}
			if err != nil {
				watchErr <- err
				return
			}
			mu.Lock()
			switch ev.Type {
			case "PUT":
				got = append(got, fmt.Sprintf("PUT %s=%s @%d", ev.Key, ev.Value, ev.Revision))
			case "DELETE":
				got = append(got, fmt.Sprintf("DELETE %s @%d", ev.Key, ev.Revision))
			}
			lastRev = max(lastRev, ev.Revision)
			mu.Unlock()
		}
		watchErr <- nil
	}()
	// The watch's first line is a PROGRESS once it runs.
	select {
	case <-started:
	case err := <-watchErr:
		t.Fatalf("the watch ended before it started: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("no line from the watch within 20 s")
	}

	// The writes: puts of 500 keys of 300 bytes (ranges split), every
	// tenth deleted again; n1 killed after 150 and started after 250, n2
	// killed after 350 and started after 420.
	var want []string
	pad := strings.Repeat("p", 300)
	for i := range 500 {
		key := fmt.Sprintf("w/%04d", (i*7)%500)
		v := fmt.Sprintf("v%d-%s", i, pad)
		res, err := pc.Put(ctx, key, v)
		if err != nil {
			t.Fatalf("put %s: %v", key, err)
		}
		want = append(want, fmt.Sprintf("PUT %s=%s @%d", key, v, res.Revision))
		if i%10 == 0 {
			d, err := pc.Delete(ctx, key)
			if err != nil {
				t.Fatalf("delete %s: %v", key, err)
			}
			want = append(want, fmt.Sprintf("DELETE %s @%d", key, d.Revision))
		}
		switch i {
		case 150:
			c.servers["n1"].kill9()
		case 250:
			c.launch("n1").waitReady()
		case 350:
			c.servers["n2"].kill9()
		case 420:
			c.launch("n2").waitReady()
		}
	}
	last := want[len(want)-1]
	var lastWant int64
	fmt.Sscanf(last[strings.LastIndex(last, "@")+1:], "%d", &lastWant)
	deadline := time.Now().Add(60 * time.Second)
	for {
		mu.Lock()
		done := lastRev >= lastWant
		n := len(got)
		mu.Unlock()
		if done {
			break
		}
		select {
		case err := <-watchErr:
			t.Fatalf("the watch ended: %v (%d events)", err, n)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the watch got %d events up to revision %d within 60 s, want up to %d", n, lastRev, lastWant)
		}
		time.Sleep(50 * time.Millisecond)
	}
	stopWatch()
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		for i := range max(len(got), len(want)) {
			var g, w string
			if i < len(got) {
				g = got[i]
			}
			if i < len(want) {
				w = want[i]
			}
			if g != w {
				t.Fatalf("event %d of %d (want %d): got %.60q, want %.60q", i, len(got), len(want), g, w)
			}
		}
	}
	t.Logf("%d events, each once and in order, across 2 kills of the watcher's node", len(got))
}

// TestWatchOfOneRangeWritesNothing: a watch on a key of a quiet range polls
// ten times a second without adding to the range's log (it reads up to the
// range's own revision, which needs no write to be final), and still gets
// the key's next change at once.
func TestWatchOfOneRangeWritesNothing(t *testing.T) {
	c := startCluster(t, 3)
	leader := c.leader(10 * time.Second)
	follower := c.names[0]
	if follower == leader {
		follower = c.names[1]
	}
	if code, body := do(t, "PUT", c.url(leader, "/key/cfg"), `{"value":"a"}`); code != 200 {
		t.Fatalf("PUT: %d %s", code, body)
	}
	applied := func() uint64 {
		t.Helper()
		st, err := c.status(leader)
		if err != nil {
			t.Fatal(err)
		}
		return st.Applied
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wc, err := client.New(client.Config{Endpoints: []string{c.http[follower]}})
	if err != nil {
		t.Fatal(err)
	}
	events := make(chan client.Event, 10)
	go func() {
		for ev, err := range wc.Watch(ctx, client.Watch{Key: "cfg"}) {
			if err != nil {
				return
			}
			events <- ev
		}
	}()
	time.Sleep(500 * time.Millisecond) // the watch is polling
	before := applied()
	time.Sleep(3 * time.Second)
	after := applied()
	t.Logf("the log grew by %d entries in 3 s of watching (30 polls)", after-before)
	if after-before > 3 {
		t.Fatalf("the log grew by %d entries in 3 s of a watch on a quiet range", after-before)
	}
	if code, body := do(t, "PUT", c.url(leader, "/key/cfg"), `{"value":"b"}`); code != 200 {
		t.Fatalf("PUT: %d %s", code, body)
	}
	timeout := time.After(5 * time.Second)
	for {
		select {
		case ev := <-events:
			if ev.Type == "PUT" && ev.Key == "cfg" && ev.Value == "b" {
				return
			}
		case <-timeout:
			t.Fatal("the watch did not deliver the put within 5 s")
		}
	}
}
