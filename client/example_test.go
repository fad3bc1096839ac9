package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"strconv"

	"github.com/distkv/distkv/client"
)

// The examples run against a real node that the package's tests start (see
// node_test.go); endpoints holds its address. Elsewhere, give the addresses
// of your cluster's nodes, such as
// []string{"10.0.0.1:8000", "10.0.0.2:8000", "10.0.0.3:8000"}.

func Example() {
	ctx := context.Background()
	c, err := client.New(client.Config{Endpoints: endpoints})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := c.Put(ctx, "greeting", "hello"); err != nil {
		log.Fatal(err)
	}
	kv, err := c.Get(ctx, "greeting")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(kv.Key, kv.Value)
	// Output: greeting hello
}

// A lock: whoever creates the key holds it; a second CreateOnly fails with a
// *ConflictError that tells the key's state.
func ExampleCreateOnly() {
	ctx := context.Background()
	c, err := client.New(client.Config{Endpoints: endpoints})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := c.Put(ctx, "locks/report", "worker-1", client.CreateOnly()); err != nil {
		log.Fatal(err)
	}
	_, err = c.Put(ctx, "locks/report", "worker-2", client.CreateOnly())
	var conflict *client.ConflictError
	if errors.As(err, &conflict) {
		fmt.Printf("%s is taken (version %d): %s\n", conflict.Key, conflict.Version, conflict.Detail)
	}
	// Release the lock.
	if _, err := c.Delete(ctx, "locks/report"); err != nil {
		log.Fatal(err)
	}
	// Output: locks/report is taken (version 1): condition failed: create_only is set but the key exists
}

// Read, modify, write: the write holds only if no other write came between,
// else it is done again on what that one wrote.
func ExamplePrevVersion() {
	ctx := context.Background()
	c, err := client.New(client.Config{Endpoints: endpoints})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := c.Put(ctx, "counter", "0"); err != nil {
		log.Fatal(err)
	}
	increment := func() error {
		for {
			kv, err := c.Get(ctx, "counter")
			if err != nil {
				return err
			}
			n, err := strconv.Atoi(kv.Value)
			if err != nil {
				return err
			}
			_, err = c.Put(ctx, "counter", strconv.Itoa(n+1), client.PrevVersion(kv.Version))
			if _, conflict := errors.AsType[*client.ConflictError](err); !conflict {
				return err
			}
		}
	}
	for range 3 {
		if err := increment(); err != nil {
			log.Fatal(err)
		}
	}
	kv, err := c.Get(ctx, "counter")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(kv.Value)
	// Output: 3
}

// A value may be any JSON value; it reads back as written.
func ExampleClient_PutJSON() {
	ctx := context.Background()
	c, err := client.New(client.Config{Endpoints: endpoints})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := c.PutJSON(ctx, "cfg", json.RawMessage(`{"a": [1, 2], "ratio": 1.50}`)); err != nil {
		log.Fatal(err)
	}
	if _, err := c.Put(ctx, "s", "12"); err != nil {
		log.Fatal(err)
	}
	for _, key := range []string{"cfg", "s"} {
		kv, err := c.Get(ctx, key)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(key, kv.IsJSON, kv.Value, string(kv.JSON()))
	}
	// Output:
	// cfg true {"a":[1,2],"ratio":1.50} {"a":[1,2],"ratio":1.50}
	// s false 12 "12"
}

// A stale read answers from the contacted node at once, without asking the
// leader; a missing key is ErrNotFound.
func ExampleStale() {
	ctx := context.Background()
	c, err := client.New(client.Config{Endpoints: endpoints})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := c.Put(ctx, "color", "blue"); err != nil {
		log.Fatal(err)
	}
	kv, err := c.Get(ctx, "color", client.Stale())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(kv.Value)
	if _, err := c.Delete(ctx, "color"); err != nil {
		log.Fatal(err)
	}
	_, err = c.Get(ctx, "color", client.Stale())
	fmt.Println(errors.Is(err, client.ErrNotFound), err)
	// Output:
	// blue
	// true 404 Key not found
}

// A transfer between two accounts, made once: the second run finds the
// balance changed and runs the failure branch, which reads it.
func ExampleClient_Txn() {
	ctx := context.Background()
	c, err := client.New(client.Config{Endpoints: endpoints})
	if err != nil {
		log.Fatal(err)
	}
	for key, value := range map[string]string{"balance/a": "10", "balance/b": "0"} {
		if _, err := c.Put(ctx, key, value); err != nil {
			log.Fatal(err)
		}
	}
	transfer := client.Txn{
		Compare: []client.Compare{client.CompareValue("balance/a", "==", "10")},
		Success: []client.Op{client.OpPut("balance/a", "0"), client.OpPut("balance/b", "10")},
		Failure: []client.Op{client.OpGet("balance/a")},
	}
	for range 2 {
		res, err := c.Txn(ctx, transfer)
		if err != nil {
			log.Fatal(err)
		}
		if res.Succeeded {
			fmt.Println("transferred")
		} else {
			fmt.Println("not transferred: balance/a is", res.Responses[0].KV.Value)
		}
	}
	// Output:
	// transferred
	// not transferred: balance/a is 0
}

// Scan reads the keys page by page (here two to a page) as the loop goes.
func ExampleClient_Scan() {
	ctx := context.Background()
	c, err := client.New(client.Config{Endpoints: endpoints})
	if err != nil {
		log.Fatal(err)
	}
	for _, fruit := range []string{"cherry", "apple", "fig", "banana", "date"} {
		if _, err := c.Put(ctx, "fruit/"+fruit, fruit); err != nil {
			log.Fatal(err)
		}
	}
	for kv, err := range c.Scan(ctx, client.Range{Prefix: "fruit/", PageSize: 2}) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(kv.Key)
	}
	// Output:
	// fruit/apple
	// fruit/banana
	// fruit/cherry
	// fruit/date
	// fruit/fig
}

func ExampleClient_Status() {
	ctx := context.Background()
	c, err := client.New(client.Config{Endpoints: endpoints})
	if err != nil {
		log.Fatal(err)
	}
	st, err := c.Status(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("leader:", st.Leader)
	for _, m := range st.Members {
		fmt.Println(m.ID, m.Role)
	}
	// Output:
	// leader: n1
	// n1 voter
}
