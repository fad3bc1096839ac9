// Package client is the Go client of distkv's HTTP API (docs/api.md): Put,
// Get, Delete, conditional writes, transactions, scans, and the cluster's
// status, members and leadership. The distkv command-line client is built on
// it.
//
//	c, err := client.New(client.Config{Endpoints: []string{"10.0.0.1:8000", "10.0.0.2:8000"}})
//	res, err := c.Put(ctx, "greeting", "hello")
//	kv, err := c.Get(ctx, "greeting")
//
// A Client is safe for concurrent use. Every method takes a context: its
// cancellation or deadline ends the call, whatever the retries below have
// left to do.
//
// # Endpoints and fail-over
//
// Any node of a distkv cluster serves any request: a follower forwards a
// write to the leader and asks it for the read index of a linearizable read
// (docs/api.md, "Forwarding"). So the client needs no map of the cluster to
// send a request to the right node; it sends each request to one endpoint
// and moves to the next when that one cannot serve. It starts with the
// endpoint that answered its last request (the first one at first), so a
// client sticks to one node while that node serves. Should a node one day
// answer with a redirect to another (307 or 308), net/http follows it, body
// included.
//
// Client.Sync reads /cluster/status and adds the members' HTTP addresses to
// the endpoints, so that the client can fail over to nodes it was not
// configured with, and makes the leader the endpoint it starts with (which
// saves the hop of forwarding). It is optional: the addresses a cluster
// publishes (its --advertise-http) may be unreachable from the client, as
// from outside a container network.
//
// # TLS
//
// Config.TLS secures the requests of a cluster that serves TLS: its RootCAs
// name the CA of the nodes' certificates and its Certificates a client
// certificate, for nodes that require one (LoadTLS builds it from PEM
// files). Endpoints given as host:port are then https.
//
// # Retries
//
// A call goes on until an endpoint answers it or Config.RetryFor has passed
// since it began: it tries the endpoints in turn, and after a round in which
// none could serve it waits (capped exponential backoff with jitter, 50ms
// up to 1s) before the next. What is sent again depends on what the request
// is:
//
//   - Reads (Get, Scan, Status, Members) are retried after any failure: a
//     connection error, an attempt that timed out (Config.Timeout), or a 503
//     (no leader, not served in time); also a 502 or 504 of a proxy.
//   - Writes (Put, PutJSON, Delete, Txn) carry the Client's id
//     (Config.ClientID) and a request id of their own, the same in every
//     attempt of one call. The server applies a write with ids at most once
//     and answers each repeat with the first execution's answer
//     (docs/api.md, "Idempotent requests"), so a write is retried as a read
//     is, even after a timeout or a 503 that says it may still have been
//     applied: if it was, the retry gets its answer; if not, the retry
//     applies it.
//   - Membership changes and leadership transfers carry no request ids: they
//     are sent again only when they surely were not applied, that is when
//     the connection could not be made or the 503 does not say "may still
//     have been applied". Otherwise the error is returned
//     (StatusError.MayHaveApplied tells).
//   - An answer of 4xx is never retried: the request is wrong, or its
//     condition failed, and will be so on every node. Nor is a 500 (a bug of
//     the node) or a 507 (the node's disk is full: the write was not made;
//     the caller decides).
//
// A server keeps a write's record for its --request-dedup-ttl (1h), far
// longer than a call retries. A write whose context ends while an attempt
// is in flight may have been applied.
//
// # Errors
//
// An answer other than 200 is a *StatusError with the status and the
// server's detail, or a *ConflictError (which unwraps to one) when a
// condition of a write failed. errors.Is(err, ErrNotFound) tells a missing
// key; errors.Is(err, ErrUnavailable) a cluster that could not serve the
// request before the retries ran out (a 503, or no endpoint reachable).
//
// # Values
//
// A value is any JSON value (docs/api.md, "Values"). Put writes a string and
// PutJSON any JSON value; KeyValue.Value reads a string back as the string it
// is and any other value as its JSON text, KeyValue.IsJSON telling which.
// Strings travel as JSON strings, so they should be valid UTF-8: a byte that
// is not is sent, and shown by the server, as U+FFFD.
//
// # Raw answers
//
// Every result has a Raw field holding the server's answer (or the part of a
// page that is one pair) as it was sent, with the fields this package does
// not decode; the command-line client prints it.
//
// # Watch
//
// distkv has no watch endpoint yet, so there is no Watch here; poll Get or
// Scan meanwhile.
package client
