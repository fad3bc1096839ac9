package client_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/distkv/distkv/client"
)

// TestPutTTL against the real node of TestMain: a Put with the TTL option
// reads back with the seconds left; a Put without it clears the deadline;
// a key put with a 1 s TTL is gone within 2 s; Delete refuses the option.
func TestPutTTL(t *testing.T) {
	c, err := client.New(client.Config{Endpoints: endpoints})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	if _, err := c.Put(ctx, "ttl/long", "v", client.TTL(30*time.Second)); err != nil {
		t.Fatal(err)
	}
	if kv, err := c.Get(ctx, "ttl/long"); err != nil || kv.TTL < 29 || kv.TTL > 30 {
		t.Fatalf("Get after a Put with TTL 30 s: %+v, %v; want TTL 29 or 30", kv, err)
	}
	if _, err := c.Put(ctx, "ttl/long", "w"); err != nil {
		t.Fatal(err)
	}
	if kv, err := c.Get(ctx, "ttl/long"); err != nil || kv.TTL != 0 {
		t.Fatalf("Get after a Put without TTL: %+v, %v; want no TTL", kv, err)
	}

	start := time.Now()
	if _, err := c.Put(ctx, "ttl/short", "v", client.TTL(time.Second)); err != nil {
		t.Fatal(err)
	}
	for {
		_, err := c.Get(ctx, "ttl/short")
		if errors.Is(err, client.ErrNotFound) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if time.Since(start) > 2*time.Second {
			t.Fatalf("a key put with TTL 1 s still there after %v", time.Since(start))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := c.Delete(ctx, "ttl/long", client.TTL(time.Second)); err == nil {
		t.Fatal("Delete accepted the TTL option")
	}
}
