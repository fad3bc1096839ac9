package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestAdvertised: a node publishes --advertise-* when given, its listen
// address otherwise, and refuses to publish an address that reaches no one
// machine, saying which flag to set.
func TestAdvertised(t *testing.T) {
	for _, c := range []struct {
		listen, advertise string
		want              string
		err               string // a part of the error; "" when none
	}{
		{listen: "127.0.0.1:8000", want: "127.0.0.1:8000"},
		{listen: "10.0.0.1:8000", want: "10.0.0.1:8000"},
		{listen: "[::1]:8000", want: "[::1]:8000"},
		{listen: "localhost:8000", want: "localhost:8000"},
		{listen: "0.0.0.0:8000", advertise: "n1:8000", want: "n1:8000"},
		{listen: ":8000", advertise: "n1:8000", want: "n1:8000"},
		{listen: "[::]:8000", advertise: "[fd00::1]:8000", want: "[fd00::1]:8000"},
		{listen: "127.0.0.1:8000", advertise: "203.0.113.7:18000", want: "203.0.113.7:18000"}, // NAT: another port
		{listen: "0.0.0.0:8000", err: "--http 0.0.0.0:8000 listens on every interface, which is no address to reach this node at: set --advertise-http"},
		{listen: ":8000", err: "set --advertise-http to one the other members"},
		{listen: "[::]:8000", err: "set --advertise-http"},
		{listen: "8000", err: `--http "8000": want host:port`},
		{listen: "0.0.0.0:8000", advertise: "0.0.0.0:8000", err: "--advertise-http 0.0.0.0:8000 is no address to reach this node at"},
		{listen: "0.0.0.0:8000", advertise: ":8000", err: "--advertise-http :8000 is no address"},
		{listen: "0.0.0.0:8000", advertise: "[::]:8000", err: "--advertise-http [::]:8000 is no address"},
		{listen: "0.0.0.0:8000", advertise: "n1", err: `--advertise-http "n1": want host:port`},
		{listen: "0.0.0.0:8000", advertise: "n1:0", err: `"0" is not a port number`},
		{listen: "0.0.0.0:8000", advertise: "n1:http", err: `"http" is not a port number`},
	} {
		got, err := advertised("http", c.listen, c.advertise)
		switch {
		case c.err == "" && err != nil:
			t.Errorf("advertised(%q, %q): %v", c.listen, c.advertise, err)
		case c.err == "" && got != c.want:
			t.Errorf("advertised(%q, %q) = %q, want %q", c.listen, c.advertise, got, c.want)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("advertised(%q, %q) = %q, %v; want an error containing %q", c.listen, c.advertise, got, err, c.err)
		}
	}
}

// TestServerRefusesToPublishAnUnspecifiedAddress: `distkv server` stops
// before it listens or touches its data directory when it would publish
// 0.0.0.0, and its message names the flag to set; with --advertise-* set
// (also from the environment, as a container sets them) it publishes those.
func TestServerRefusesToPublishAnUnspecifiedAddress(t *testing.T) {
	for _, c := range []struct {
		args []string
		env  map[string]string
		err  string
	}{
		{args: []string{"--http", "0.0.0.0:0", "--peer", "127.0.0.1:0"}, err: "set --advertise-http"},
		{args: []string{"--http", "127.0.0.1:0", "--peer", "0.0.0.0:0"}, err: "set --advertise-peer"},
		{args: []string{"--http", "0.0.0.0:0", "--peer", "0.0.0.0:0", "--advertise-http", "n1:8000", "--advertise-peer", "0.0.0.0:9000"},
			err: "--advertise-peer 0.0.0.0:9000 is no address"},
		{args: []string{"--http", "0.0.0.0:0", "--peer", "0.0.0.0:0"},
			env: map[string]string{"DISTKV_ADVERTISE_HTTP": "n1:8000", "DISTKV_ADVERTISE_PEER": "[::]:9000"},
			err: "--advertise-peer [::]:9000 is no address"},
	} {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			dir := filepath.Join(t.TempDir(), "n1")
			cmd := newServerCommand()
			cmd.SetArgs(append([]string{"--data-dir", dir, "--log-level", "error"}, c.args...))
			cmd.SetOut(io.Discard)
			cmd.SetErr(io.Discard)
			err := cmd.Execute()
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%v; want an error containing %q", err, c.err)
			}
			if _, serr := os.Stat(dir); serr == nil {
				t.Errorf("refused, but made its data directory")
			}
		})
	}

	o := &serverOptions{id: "n2", httpAddr: "0.0.0.0:8000", peerAddr: "0.0.0.0:9000", advertiseHTTP: "n2:8000", advertisePeer: "n2:9000"}
	self, err := advertisedSelf(o)
	if err != nil {
		t.Fatal(err)
	}
	if self.Name != "n2" || self.HTTP != "n2:8000" || self.Peer != "n2:9000" {
		t.Fatalf("advertisedSelf = %+v, want n2 publishing n2:8000 and n2:9000", self)
	}
	members, err := parseCluster("n1=n1:9000,n2=n2:9000,n3=n3:9000", self)
	if err != nil {
		t.Fatalf("--cluster naming the advertised peer address: %v", err)
	}
	if len(members) != 3 || members[1].Peer != "n2:9000" {
		t.Fatalf("members %+v", members)
	}
}
