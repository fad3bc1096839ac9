package distkvbin

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

func TestCheckArgs(t *testing.T) {
	ok := [][]string{
		{"server", "--id", "n1", "--http", "127.0.0.1:12345", "--peer", "127.0.0.1:12346"},
		{"server", "--http=127.0.0.1:12345", "--peer=127.0.0.1:12346", "--cluster", "n1=127.0.0.1:12346,n2=127.0.0.1:12347"},
		{"server", "--http", "127.0.0.1:12345", "--peer", "127.0.0.1:12346", "--join", "http://127.0.0.1:12000"},
		{"dev", "--nodes", "3", "--http-port", "12000", "--peer-port", "13000", "--", "--tick", "20ms"},
		{"wal", "verify", "/tmp/x"},
		{"member", "list", "--endpoints", "127.0.0.1:12345"},
		{"get", "k", "--endpoints=127.0.0.1:12345,127.0.0.1:12346"},
	}
	for _, args := range ok {
		if err := CheckArgs(args); err != nil {
			t.Errorf("%q: %v", args, err)
		}
	}
	bad := map[string][]string{
		"no --peer":                {"server", "--id", "n1", "--http", "127.0.0.1:12345"},
		"no --http":                {"server", "--peer", "127.0.0.1:12346"},
		"empty --peer":             {"server", "--http", "127.0.0.1:12345", "--peer="},
		"default --http":           {"server", "--http", "127.0.0.1:8000", "--peer", "127.0.0.1:12346"},
		"default peer in cluster":  {"server", "--http", "127.0.0.1:12345", "--peer", "127.0.0.1:12346", "--cluster", "n1=127.0.0.1:12346,n2=127.0.0.1:9001"},
		"default --pprof-addr":     {"server", "--http", "127.0.0.1:12345", "--peer", "127.0.0.1:12346", "--pprof-addr", "127.0.0.1:8002"},
		"join a dev cluster":       {"server", "--http", "127.0.0.1:12345", "--peer", "127.0.0.1:12346", "--join", "http://127.0.0.1:8001"},
		"dev without ports":        {"dev", "--data-dir", "/tmp/x"},
		"dev without --peer-port":  {"dev", "--http-port", "12000"},
		"dev on default ports":     {"dev", "--http-port", "8000", "--peer-port", "13000"},
		"dev nodes reach defaults": {"dev", "--nodes", "5", "--http-port", "12000", "--peer-port", "8997"},
		"dev --http for all nodes": {"dev", "--http-port", "12000", "--peer-port", "13000", "--", "--http", "127.0.0.1:14000"},
		"client without endpoint":  {"get", "k"},
		"member without endpoint":  {"member", "list"},
		"client on default":        {"put", "k", "v", "--endpoints", "127.0.0.1:8000"},
		"no subcommand":            {"--endpoints", "127.0.0.1:12345", "get", "k"},
		"nothing":                  {},
	}
	for name, args := range bad {
		if err := CheckArgs(args); err == nil {
			t.Errorf("%s: %q accepted", name, args)
		}
	}
}

func TestListenPorts(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ports, err := ListenPorts(os.Getpid())
	if errors.Is(err, errors.ErrUnsupported) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	want := ln.Addr().(*net.TCPAddr).Port
	if !slices.Contains(ports, want) {
		t.Fatalf("ports %v do not include %d, which this process listens on", ports, want)
	}
	// An outgoing connection and its accepted end are not listeners.
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	again, err := ListenPorts(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if local := c.LocalAddr().(*net.TCPAddr).Port; slices.Contains(again, local) {
		t.Fatalf("ports %v include %d, the local port of a connection", again, local)
	}
}

func TestCheckProcessNotDistkv(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("no /proc")
	}
	// This test binary's command line has no distkv subcommand.
	if err := CheckProcess(os.Getpid()); err == nil {
		t.Fatal("the test binary passed as a distkv process")
	}
}

func TestCommandCalls(t *testing.T) {
	dir := t.TempDir()
	src := `package p

import (
	"context"
	osexec "os/exec"
)

var binary string

func command(args ...string) *osexec.Cmd { return osexec.Command(binary, args...) }

func fine() { osexec.Command("curl", "-s").Run() }

func direct() {
	osexec.Command(binary, "server").Run()
	osexec.CommandContext(context.Background(), binary, "dev").Run()
	osexec.CommandContext(context.Background(), "mount").Run()
}
`
	if err := os.WriteFile(filepath.Join(dir, "p_test.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := CommandCalls(dir, "command")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"p_test.go:15", "p_test.go:16"}; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("CommandCalls = %q, want %q", got, want)
	}
}
