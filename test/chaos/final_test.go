package chaos

import (
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// finalReads scans every group linearizably on every node once the cluster is
// healed, adds the scans to the history (so an acknowledged write missing at
// the end is a violation), and checks that the nodes agree and that every
// value is one a client wrote.
func finalReads(t *testing.T, c *cluster, h *history) {
	t.Helper()
	cli := &http.Client{Timeout: clientTimeout}
	for g := 0; g < numGroups; g++ {
		in := kvInput{Kind: opScan, Group: g}
		var first []kvRead
		firstNode := ""
		for ni, nd := range c.nodes {
			pid := h.newClient()
			deadline := time.Now().Add(20 * time.Second)
			for {
				call := h.now()
				out, err := scanGroup(cli, nd, in)
				ret := h.now()
				if err == nil {
					h.add(porcupine.Operation{ClientId: pid, Input: in, Call: call, Output: out, Return: ret}, "final")
					o := observe(in, out)
					o.node, o.proc, o.kind, o.call, o.ret = ni, process(nd), in.Kind, call, ret
					h.observe(o)
					for k, r := range out.Scan {
						if _, ok := h.written[r.Value]; r.Found && !ok {
							t.Errorf("%s: %s = %q, a value no client wrote", nd.name, keyName(g, k), r.Value)
						}
					}
					if first == nil {
						first, firstNode = out.Scan, nd.name
					} else {
						for k := range first {
							if first[k] != out.Scan[k] {
								t.Errorf("%s: nodes disagree: %s has %s, %s has %s", keyName(g, k),
									firstNode, describeRead(first[k]), nd.name, describeRead(out.Scan[k]))
							}
						}
					}
					break
				}
				if time.Now().After(deadline) {
					if c.views != nil {
						t.Logf("the ranges as each node lists them:%s", c.views())
						t.Logf("the same scan on every node:%s", c.askAll("/keys?limit=10&prefix="+groupPrefix(g)))
					}
					t.Fatalf("final scan of %s on %s: %v", groupPrefix(g), nd.name, err)
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
	}
}

// scanGroup is a linearizable scan of in's group: its output, or an error
// for anything but a well-formed 200.
func scanGroup(cli *http.Client, nd *node, in kvInput) (kvOutput, error) {
	req, err := request(in, nd)
	if err != nil {
		return kvOutput{}, err
	}
	resp, err := cli.Do(req)
	if err != nil {
		return kvOutput{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return kvOutput{}, err
	}
	if resp.StatusCode != 200 {
		return kvOutput{}, fmt.Errorf("%d %s", resp.StatusCode, b)
	}
	out, ok := decode(in, b)
	if !ok {
		return kvOutput{}, fmt.Errorf("malformed answer %s", b)
	}
	return out, nil
}
