package distkvbin

import (
	"bytes"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
)

// Tests must be able to run while a `distkv dev` cluster (or anything else
// started with default flags) runs on the same machine, and must not take
// ports such a cluster needs. The functions below check the command lines
// that tests give the distkv binary, and the ports its processes really
// listen on, so that a test leaning on a default address fails everywhere,
// not only on a machine where that address happens to be taken.

// IsDefaultPort reports whether port is one that distkv listens on or dials
// when not told otherwise: `distkv server` HTTP 8000 and peer 9000, `distkv
// dev` from 8000 and 9000 up to its 99 nodes, and the client's --endpoints.
// A test must not name such a port either: it is not free to take.
func IsDefaultPort(port int) bool {
	return (port >= 8000 && port < 8099) || (port >= 9000 && port < 9099)
}

// listenFlags are the server flags that make a listener; CheckProcess allows
// a server to listen on exactly the ports these name.
var listenFlags = []string{"http", "peer", "pprof-addr"}

// localCommands need no address: they read files.
var localCommands = []string{"wal", "help", "completion", "restore"}

// Env is the environment for a distkv process that a test starts: the
// test's own, without the variables that would give a server a listen
// address its command line does not show (DISTKV_<FLAG> sets a flag, see
// cmd/distkv/config.go).
func Env() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch name {
		case "DISTKV_HTTP", "DISTKV_PEER", "DISTKV_PPROF_ADDR", "DISTKV_CONFIG":
			continue
		}
		env = append(env, kv)
	}
	return env
}

// flagValues returns the values of the --name value and --name=value flags in
// args up to a "--" (the last one of a repeated flag wins, as in pflag), and
// the arguments after the "--".
func flagValues(args []string) (map[string]string, []string) {
	vals := map[string]string{}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return vals, args[i+1:]
		}
		if !strings.HasPrefix(a, "--") {
			continue
		}
		name, val, hasVal := strings.Cut(a[2:], "=")
		if !hasVal {
			if i+1 >= len(args) || strings.HasPrefix(args[i+1], "-") {
				vals[name] = "" // a boolean flag, or a value missing
				continue
			}
			i++
			val = args[i]
		}
		vals[name] = val
	}
	return vals, nil
}

// addrPort finds the port of host:port, :port or http://host:port/ in s.
var addrPort = regexp.MustCompile(`:(\d{1,5})(?:$|[,/])`)

// CheckArgs returns an error if the distkv command line args (without the
// program name) would listen on or talk to an address that it does not name:
// `server` must have --http and --peer, `dev` --http-port and --peer-port,
// and every client command --endpoints. No port anywhere in args may be a
// default one (see IsDefaultPort).
func CheckArgs(args []string) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return fmt.Errorf("distkv %s: the subcommand must come first", strings.Join(args, " "))
	}
	bad := func(format string, a ...any) error {
		return fmt.Errorf("distkv %s: %s (a test must not depend on default ports being free, nor talk to a cluster it did not start)",
			strings.Join(args, " "), fmt.Sprintf(format, a...))
	}
	for _, a := range args[1:] {
		for _, m := range addrPort.FindAllStringSubmatch(a, -1) {
			if p, _ := strconv.Atoi(m[1]); IsDefaultPort(p) {
				return bad("%q names port %d, which distkv uses by default", a, p)
			}
		}
	}
	vals, extra := flagValues(args[1:])
	need := func(flags ...string) error {
		for _, f := range flags {
			if v, ok := vals[f]; !ok || v == "" {
				return bad("no --%s", f)
			}
		}
		return nil
	}
	switch sub := args[0]; {
	case sub == "server":
		return need("http", "peer")
	case sub == "dev":
		if err := need("http-port", "peer-port"); err != nil {
			return err
		}
		nodes := 3
		if v, ok := vals["nodes"]; ok {
			nodes, _ = strconv.Atoi(v)
		}
		for _, f := range []string{"http-port", "peer-port"} {
			base, err := strconv.Atoi(vals[f])
			if err != nil {
				return bad("--%s %q", f, vals[f])
			}
			for p := base; p < base+nodes; p++ {
				if IsDefaultPort(p) {
					return bad("--%s %d gives a node port %d, which distkv uses by default", f, base, p)
				}
			}
		}
		// The flags after -- go to every node and come after the ones dev
		// gives each: another --http or --peer would put all on one port.
		ev, _ := flagValues(extra)
		for _, f := range []string{"http", "peer"} {
			if _, ok := ev[f]; ok {
				return bad("--%s after --: dev gives each node its own", f)
			}
		}
		return nil
	case slices.Contains(localCommands, sub):
		return nil
	default: // a client command
		return need("endpoints")
	}
}

// ListenPorts returns the TCP ports that process pid listens on, read from
// /proc. It returns errors.ErrUnsupported where there is no /proc (not Linux).
func ListenPorts(pid int) ([]int, error) {
	if runtime.GOOS != "linux" {
		return nil, errors.ErrUnsupported
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return nil, err
	}
	sockets := map[string]bool{} // inode numbers
	for _, fd := range fds {
		l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if err == nil && strings.HasPrefix(l, "socket:[") && strings.HasSuffix(l, "]") {
			sockets[l[len("socket:["):len(l)-1]] = true
		}
	}
	var ports []int
	for _, table := range []string{"tcp", "tcp6"} {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, table))
		if errors.Is(err, os.ErrNotExist) && table == "tcp6" {
			continue // no IPv6
		}
		if err != nil {
			return nil, err
		}
		lines := strings.Split(string(b), "\n")
		for _, line := range lines[1:] {
			// sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
			f := strings.Fields(line)
			if len(f) < 10 || f[3] != "0A" || !sockets[f[9]] { // 0A: LISTEN
				continue
			}
			_, hexPort, ok := strings.Cut(f[1], ":")
			if !ok {
				continue
			}
			p, err := strconv.ParseUint(hexPort, 16, 16)
			if err != nil {
				return nil, fmt.Errorf("/proc/%d/net/%s: %q: %v", pid, table, line, err)
			}
			if !slices.Contains(ports, int(p)) {
				ports = append(ports, int(p))
			}
		}
	}
	slices.Sort(ports)
	return ports, nil
}

// CheckProcess checks a running distkv process pid: its command line (read
// from /proc) with CheckArgs, and, for a server, that it listens on no port
// but those its --http, --peer and --pprof-addr name. A listener on another
// port has a default address somewhere, which a test must not depend on.
// Where there is no /proc, it checks nothing.
func CheckProcess(pid int) error {
	if runtime.GOOS != "linux" {
		return nil
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return err
	}
	argv := strings.Split(string(bytes.TrimSuffix(b, []byte{0})), "\x00")
	if len(argv) < 2 {
		return fmt.Errorf("pid %d: command line %q: not a distkv command", pid, argv)
	}
	args := argv[1:]
	if err := CheckArgs(args); err != nil {
		return fmt.Errorf("pid %d: %w", pid, err)
	}
	if args[0] != "server" {
		return nil
	}
	listening, err := ListenPorts(pid)
	if err != nil {
		return fmt.Errorf("pid %d: %w", pid, err)
	}
	vals, _ := flagValues(args[1:])
	var named []int
	for _, f := range listenFlags {
		if v := vals[f]; v != "" {
			if _, port, ok := strings.Cut(v[strings.LastIndexByte(v, ']')+1:], ":"); ok {
				p, _ := strconv.Atoi(port)
				named = append(named, p)
			}
		}
	}
	for _, p := range listening {
		if !slices.Contains(named, p) {
			return fmt.Errorf("pid %d (distkv %s) listens on port %d, which none of its --%s names: a listener with a default address?",
				pid, strings.Join(args, " "), p, strings.Join(listenFlags, ", --"))
		}
	}
	return nil
}

// CommandCalls returns, for the Go files of directory dir, the calls to
// exec.Command and exec.CommandContext whose program is not a string literal
// (so possibly the distkv binary) that are outside the functions named
// allowed, as "file:line". A package whose tests start distkv through one
// helper that checks the command line uses this to keep it that way.
func CommandCalls(dir string, allowed ...string) ([]string, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		return nil, err
	}
	fset := token.NewFileSet()
	var found []string
	for _, path := range files {
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return nil, err
		}
		execName := ""
		for _, imp := range f.Imports {
			if imp.Path.Value == `"os/exec"` {
				execName = "exec"
				if imp.Name != nil {
					execName = imp.Name.Name
				}
			}
		}
		if execName == "" {
			continue
		}
		for _, decl := range f.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if ok && slices.Contains(allowed, fn.Name.Name) {
				continue
			}
			ast.Inspect(decl, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok {
					return true
				}
				sel, ok := call.Fun.(*ast.SelectorExpr)
				if !ok || (sel.Sel.Name != "Command" && sel.Sel.Name != "CommandContext") {
					return true
				}
				if x, ok := sel.X.(*ast.Ident); !ok || x.Name != execName {
					return true
				}
				prog := 0
				if sel.Sel.Name == "CommandContext" {
					prog = 1
				}
				if len(call.Args) > prog {
					if lit, ok := call.Args[prog].(*ast.BasicLit); ok && lit.Kind == token.STRING {
						return true
					}
				}
				pos := fset.Position(call.Pos())
				found = append(found, fmt.Sprintf("%s:%d", filepath.Base(pos.Filename), pos.Line))
				return true
			})
		}
	}
	return found, nil
}
