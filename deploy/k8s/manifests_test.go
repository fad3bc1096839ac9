// Package k8s holds the Kubernetes manifests of distkv (the *.yaml files of
// this directory) and their tests. No cluster is needed: the manifests are
// decoded strictly into the k8s.io/api types, checked against each other and
// against `distkv server --help`, and the command line they give each pod is
// run as real processes on this machine (cluster_test.go).
//
// It is a module of its own so that k8s.io/api stays out of the server's.
package k8s

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// The image `make image` builds, and the user it runs as (Dockerfile).
const (
	wantImage = "distkv:latest"
	imageUser = 65532
)

var (
	// distkvBin is the distkv binary built from this repository in TestMain.
	distkvBin string
	// serverFlags maps each flag of `distkv server --help` to its type word
	// ("string", "duration", ...; "" for a boolean).
	serverFlags map[string]string
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "distkv-k8s-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	distkvBin = filepath.Join(dir, "distkv")
	// Built in the main module (two levels up), not this one.
	build := exec.Command("go", "build", "-o", distkvBin, "./cmd/distkv")
	build.Dir = filepath.Join("..", "..")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build ./cmd/distkv: %v\n%s", err, out)
		return 1
	}
	help, err := exec.Command(distkvBin, "server", "--help").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "distkv server --help: %v\n%s", err, help)
		return 1
	}
	serverFlags = parseHelpFlags(string(help))
	// A broken parser must not pass every flag check by finding no flags.
	for _, f := range []string{"id", "cluster", "advertise-peer", "wal-direct", "shutdown-timeout"} {
		if _, ok := serverFlags[f]; !ok {
			fmt.Fprintf(os.Stderr, "flag --%s not found in `distkv server --help` (found %d flags): is parseHelpFlags out of date?\n%s",
				f, len(serverFlags), help)
			return 1
		}
	}
	return m.Run()
}

// A flag line of cobra's help: "  -h, --help   help..." or
// "      --cluster string   initial members...", a boolean without a type.
var helpFlagLine = regexp.MustCompile(`(?m)^\s+(?:-[A-Za-z], )?--([a-z0-9][a-z0-9-]*)(?: ([a-zA-Z0-9]+))?\s\s`)

func parseHelpFlags(help string) map[string]string {
	flags := map[string]string{}
	for _, m := range helpFlagLine.FindAllStringSubmatch(help, -1) {
		if m[1] != "help" {
			flags[m[1]] = m[2]
		}
	}
	return flags
}

// manifest is one decoded YAML document.
type manifest struct {
	file string // base name
	doc  int    // its index among the file's documents, from 0
	kind string
	obj  any // *appsv1.StatefulSet, *corev1.Service, ...
}

func (m manifest) String() string { return fmt.Sprintf("%s document %d (%s)", m.file, m.doc, m.kind) }

// newObject is the typed object for a document's apiVersion and kind.
func newObject(apiVersion, kind string) (any, error) {
	switch apiVersion + " " + kind {
	case "apps/v1 StatefulSet":
		return &appsv1.StatefulSet{}, nil
	case "v1 Service":
		return &corev1.Service{}, nil
	case "policy/v1 PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}, nil
	}
	return nil, fmt.Errorf("apiVersion %q, kind %q: not a kind this test decodes (add it to newObject)", apiVersion, kind)
}

var docSeparator = regexp.MustCompile(`(?m)^---[ \t]*$`)

// decodeFile decodes every YAML document of a file strictly: a duplicate key,
// a field the type does not have (also one that differs only in case), a
// value of the wrong type or an unknown kind is an error. A document of
// comments only is skipped.
func decodeFile(file string, data []byte) ([]manifest, error) {
	var out []manifest
	for i, doc := range docSeparator.Split(string(data), -1) {
		js, err := yaml.YAMLToJSONStrict([]byte(doc))
		if err != nil {
			return nil, fmt.Errorf("%s document %d: %w", file, i, err)
		}
		if t := bytes.TrimSpace(js); len(t) == 0 || string(t) == "null" {
			continue
		}
		obj, kind, err := decodeStrict(js)
		if err != nil {
			return nil, fmt.Errorf("%s document %d: %w", file, i, err)
		}
		out = append(out, manifest{file: file, doc: i, kind: kind, obj: obj})
	}
	return out, nil
}

// decodeStrict decodes one document's JSON into the type its apiVersion and
// kind name. It decodes as the API server's strict field validation does
// (sigs.k8s.io/json): unlike encoding/json, even with DisallowUnknownFields,
// it matches field names case-sensitively, so `readinessprobe` is an error,
// not the field readinessProbe.
func decodeStrict(js []byte) (any, string, error) {
	var tm metav1.TypeMeta
	if err := json.Unmarshal(js, &tm); err != nil {
		return nil, "", err
	}
	obj, err := newObject(tm.APIVersion, tm.Kind)
	if err != nil {
		return nil, "", err
	}
	strictErrs, err := kjson.UnmarshalStrict(js, obj)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", tm.Kind, err)
	}
	if len(strictErrs) > 0 {
		return nil, "", fmt.Errorf("%s: %w", tm.Kind, errors.Join(strictErrs...))
	}
	return obj, tm.Kind, nil
}

// loadManifests decodes every *.yaml of this directory.
func loadManifests(t *testing.T) []manifest {
	t.Helper()
	files, err := filepath.Glob("*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no *.yaml in deploy/k8s")
	}
	var all []manifest
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		ms, err := decodeFile(f, data)
		if err != nil {
			t.Fatal(err)
		}
		if len(ms) == 0 {
			t.Errorf("%s: no document", f)
		}
		all = append(all, ms...)
	}
	return all
}

// objects is the deployment: its one StatefulSet and what refers to it.
type objects struct {
	sts      *appsv1.StatefulSet
	headless *corev1.Service // the StatefulSet's serviceName
	services []*corev1.Service
	pdbs     []*policyv1.PodDisruptionBudget
}

func loadObjects(t *testing.T) objects {
	t.Helper()
	var o objects
	for _, m := range loadManifests(t) {
		switch obj := m.obj.(type) {
		case *appsv1.StatefulSet:
			if o.sts != nil {
				t.Fatalf("%s: a second StatefulSet", m)
			}
			o.sts = obj
		case *corev1.Service:
			o.services = append(o.services, obj)
		case *policyv1.PodDisruptionBudget:
			o.pdbs = append(o.pdbs, obj)
		}
	}
	if o.sts == nil {
		t.Fatal("no StatefulSet in deploy/k8s/*.yaml")
	}
	for _, s := range o.services {
		if s.Name == o.sts.Spec.ServiceName {
			o.headless = s
		}
	}
	if o.headless == nil {
		t.Fatalf("StatefulSet %s: serviceName %q is none of the Services", o.sts.Name, o.sts.Spec.ServiceName)
	}
	return o
}

func (o objects) container(t *testing.T) corev1.Container {
	t.Helper()
	cs := o.sts.Spec.Template.Spec.Containers
	if len(cs) != 1 {
		t.Fatalf("StatefulSet %s: %d containers, want 1", o.sts.Name, len(cs))
	}
	return cs[0]
}

func (o objects) replicas() int {
	if r := o.sts.Spec.Replicas; r != nil {
		return int(*r)
	}
	return 1
}

func (o objects) podName(i int) string { return fmt.Sprintf("%s-%d", o.sts.Name, i) }

// containerPort is the number of the container's port of that name.
func containerPort(t *testing.T, c corev1.Container, name string) int {
	t.Helper()
	for _, p := range c.Ports {
		if p.Name == name {
			return int(p.ContainerPort)
		}
	}
	t.Fatalf("container %s has no port named %q", c.Name, name)
	return 0
}

// resolvePort is the container port a probe's or a Service's target names.
func resolvePort(c corev1.Container, p intstr.IntOrString) int {
	if p.Type == intstr.Int {
		return p.IntValue()
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return int(cp.ContainerPort)
		}
	}
	return -1
}

// TestManifestsDecodeStrictly is the decoding check on the files themselves,
// and proves on copies of them that it fails on a misspelt field.
func TestManifestsDecodeStrictly(t *testing.T) {
	kinds := map[string]int{}
	for _, m := range loadManifests(t) {
		kinds[m.kind]++
	}
	for _, k := range []string{"StatefulSet", "Service", "PodDisruptionBudget"} {
		if kinds[k] == 0 {
			t.Errorf("no %s in deploy/k8s/*.yaml", k)
		}
	}

	read := func(f string) string {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	cases := []struct {
		name string
		file string
		// The first occurrence of old is replaced by new; old starts with a
		// newline and the line's indentation, so that it is a key, not the
		// same word in a comment.
		old, new string
		wantErr  string // "" for none
		// stdlibMisses: encoding/json with DisallowUnknownFields would
		// accept the document.
		stdlibMisses bool
	}{
		{name: "unchanged", file: "statefulset.yaml"},
		{name: "misspelt field", file: "statefulset.yaml", old: "\n          readinessProbe:", new: "\n          readinessProbes:",
			wantErr: `unknown field "spec.template.spec.containers[0].readinessProbes"`},
		{name: "misspelt nested field", file: "statefulset.yaml", old: "\n            failureThreshold: 120", new: "\n            failureTreshold: 120",
			wantErr: `unknown field "spec.template.spec.containers[0].startupProbe.failureTreshold"`},
		{name: "field in the wrong case", file: "statefulset.yaml", old: "\n  podManagementPolicy:", new: "\n  PodManagementPolicy:",
			wantErr: `unknown field "spec.PodManagementPolicy"`, stdlibMisses: true},
		{name: "field at the wrong level", file: "statefulset.yaml", old: "\n      enableServiceLinks: false", new: "\n      enableServiceLinks: false\n      serviceName: distkv",
			wantErr: `unknown field "spec.template.spec.serviceName"`},
		{name: "wrong type", file: "statefulset.yaml", old: "\n  replicas: 3", new: "\n  replicas: \"3\"",
			wantErr: "cannot unmarshal string"},
		{name: "duplicate key", file: "statefulset.yaml", old: "\n  replicas: 3", new: "\n  replicas: 3\n  replicas: 5",
			wantErr: `"replicas" already set`},
		{name: "misspelt Service field", file: "services.yaml", old: "\n  publishNotReadyAddresses:", new: "\n  publishNotReadyAddress:",
			wantErr: `unknown field "spec.publishNotReadyAddress"`},
		{name: "misspelt PodDisruptionBudget field", file: "pdb.yaml", old: "\n  maxUnavailable:", new: "\n  maxUnavailible:",
			wantErr: `unknown field "spec.maxUnavailible"`},
		{name: "unknown kind", file: "pdb.yaml", old: "\nkind: PodDisruptionBudget", new: "\nkind: PodDisruptionBudgets",
			wantErr: "not a kind this test decodes"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			text := read(tc.file)
			if tc.old != "" {
				if !strings.Contains(text, tc.old) {
					t.Fatalf("%s does not contain %q: update this case", tc.file, tc.old)
				}
				text = strings.Replace(text, tc.old, tc.new, 1)
			}
			_, err := decodeFile(tc.file, []byte(text))
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.wantErr != "" && err == nil:
				t.Fatalf("decoded without error; want an error containing %q", tc.wantErr)
			case tc.wantErr != "" && !strings.Contains(err.Error(), tc.wantErr):
				t.Fatalf("error %q; want one containing %q", err, tc.wantErr)
			}
			if err != nil {
				t.Logf("rejected as wanted: %v", err)
			}
			if tc.stdlibMisses {
				// Why encoding/json is not enough: it matches field names
				// case-insensitively, DisallowUnknownFields or not.
				js, yerr := yaml.YAMLToJSONStrict([]byte(text))
				if yerr != nil {
					t.Fatal(yerr)
				}
				dec := json.NewDecoder(bytes.NewReader(js))
				dec.DisallowUnknownFields()
				if derr := dec.Decode(&appsv1.StatefulSet{}); derr != nil {
					t.Fatalf("encoding/json rejects it too (%v): the case is no longer needed", derr)
				}
			}
		})
	}
}

// podConfig is what one pod of the StatefulSet runs: the environment and
// arguments as the kubelet expands them, and the server settings they make.
type podConfig struct {
	name string
	env  map[string]string // the container's environment
	envs []string          // the same as NAME=value, in the manifest's order
	args []string          // expanded
	// settings maps a server flag to its value, from an argument or a
	// DISTKV_<FLAG> variable; from maps it to where it came from.
	settings map[string]string
	from     map[string]string
}

// expand replaces $(VAR) with the value of VAR when it is defined, $$ with $,
// and leaves anything else as it is, as the kubelet does in env values,
// command and args.
func expand(s string, vars map[string]string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
			continue
		case '(':
			if j := strings.IndexByte(s[i+2:], ')'); j >= 0 {
				if v, ok := vars[s[i+2:i+2+j]]; ok {
					b.WriteString(v)
					i += j + 2
					continue
				}
			}
		}
		b.WriteByte('$')
	}
	return b.String()
}

func TestExpand(t *testing.T) {
	vars := map[string]string{"A": "x", "B": "y"}
	for in, want := range map[string]string{
		"$(A).$(B)": "x.y", "$(C)": "$(C)", "$$(A)": "$(A)", "a$": "a$", "$(A": "$(A", "$x": "$x",
	} {
		if got := expand(in, vars); got != want {
			t.Errorf("expand(%q) = %q, want %q", in, got, want)
		}
	}
}

// podConfigFor expands the pod template for pod ordinal i in namespace ns.
func podConfigFor(t *testing.T, o objects, c corev1.Container, i int, ns string) podConfig {
	t.Helper()
	pc := podConfig{name: o.podName(i), env: map[string]string{}, settings: map[string]string{}, from: map[string]string{}}
	for _, e := range c.Env {
		var v string
		switch {
		case e.ValueFrom == nil:
			v = expand(e.Value, pc.env)
		case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name":
			v = pc.name
		case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.namespace":
			v = ns
		default:
			t.Fatalf("env %s: a source this test cannot resolve (add it to podConfigFor)", e.Name)
		}
		if _, dup := pc.env[e.Name]; dup {
			t.Errorf("env %s set twice", e.Name)
		}
		pc.env[e.Name] = v
		pc.envs = append(pc.envs, e.Name+"="+v)
	}
	for _, a := range c.Args {
		pc.args = append(pc.args, expand(a, pc.env))
	}
	for name, v := range pc.env {
		flag, ok := strings.CutPrefix(name, "DISTKV_")
		if !ok {
			continue
		}
		flag = strings.ReplaceAll(strings.ToLower(flag), "_", "-")
		if _, known := serverFlags[flag]; !known {
			t.Errorf("env %s: `distkv server` has no flag --%s", name, flag)
			continue
		}
		pc.settings[flag], pc.from[flag] = v, "env "+name
	}
	if len(pc.args) == 0 || pc.args[0] != "server" {
		t.Fatalf("args %q: want the subcommand server first", c.Args)
	}
	fromArgs := map[string]bool{}
	for j := 1; j < len(pc.args); j++ {
		a := pc.args[j]
		name, value, hasValue := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !strings.HasPrefix(a, "--") || name == "" {
			t.Errorf("argument %q: `distkv server` takes no positional arguments", a)
			continue
		}
		typ, known := serverFlags[name]
		if !known {
			t.Errorf("argument %q: `distkv server` has no flag --%s", a, name)
			continue
		}
		if !hasValue {
			if typ == "" {
				value = "true"
			} else if j+1 < len(pc.args) {
				j++
				value = pc.args[j]
			} else {
				t.Errorf("argument %q: no value", a)
			}
		}
		if fromArgs[name] {
			t.Errorf("--%s given twice in args", name)
		}
		if from, ok := pc.from[name]; ok && !fromArgs[name] {
			t.Errorf("--%s is given in args and as %s: the flag wins, silently", name, from)
		}
		fromArgs[name] = true
		pc.settings[name], pc.from[name] = value, "argument --"+name
	}
	for flag, v := range pc.settings {
		if strings.Contains(v, "$(") {
			t.Errorf("%s = %q: a $(VAR) that is not defined before it in env", pc.from[flag], v)
		}
	}
	return pc
}

// listen checks a listen address: every interface, on the container port.
func checkListen(t *testing.T, pc podConfig, flag string, port int) {
	t.Helper()
	host, p, err := net.SplitHostPort(pc.settings[flag])
	if err != nil {
		t.Errorf("%s: --%s %q: %v", pc.name, flag, pc.settings[flag], err)
		return
	}
	if ip := net.ParseIP(host); host != "" && (ip == nil || !ip.IsUnspecified()) {
		t.Errorf("%s: --%s %q listens on one address only: the Services reach the pod on its own IP", pc.name, flag, pc.settings[flag])
	}
	if p != strconv.Itoa(port) {
		t.Errorf("%s: --%s %q: port is not the container port %d", pc.name, flag, pc.settings[flag], port)
	}
}

// checkPodAddress checks that addr is pod's DNS name under the headless
// Service, pod.service.ns.svc[.domain], at port; it returns the domain part
// after ".svc" ("" or ".cluster.local").
func checkPodAddress(t *testing.T, what, addr, pod, service, ns string, port int) string {
	t.Helper()
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Errorf("%s %q: %v", what, addr, err)
		return ""
	}
	prefix := pod + "." + service + "." + ns + ".svc"
	domain, ok := strings.CutPrefix(host, prefix)
	if !ok || (domain != "" && (domain == "." || !strings.HasPrefix(domain, "."))) {
		t.Errorf("%s %q: host is not the pod's DNS name under the headless Service, %s[.CLUSTER-DOMAIN]", what, addr, prefix)
	}
	if p != strconv.Itoa(port) {
		t.Errorf("%s %q: port is not %d", what, addr, port)
	}
	return domain
}

// parseCluster reads --cluster, name=host:port,...
func parseCluster(t *testing.T, s string) map[string]string {
	t.Helper()
	members := map[string]string{}
	for _, part := range strings.Split(s, ",") {
		name, addr, ok := strings.Cut(part, "=")
		if !ok || name == "" || addr == "" {
			t.Errorf("--cluster %q: entry %q is not name=host:port", s, part)
			continue
		}
		if _, dup := members[name]; dup {
			t.Errorf("--cluster %q: %s listed twice", s, name)
		}
		members[name] = addr
	}
	return members
}

// TestPodCommandLine checks what every pod runs: each flag exists, the
// node's name is the pod's, it listens on the container ports, publishes its
// DNS name under the headless Service, and --cluster lists one such name per
// replica, the same on every pod.
func TestPodCommandLine(t *testing.T) {
	o := loadObjects(t)
	c := o.container(t)
	if len(c.Command) != 0 {
		t.Errorf("command %q: leave it to the image's entrypoint, /usr/local/bin/distkv", c.Command)
	}
	httpPort, peerPort := containerPort(t, c, "http"), containerPort(t, c, "peer")
	n := o.replicas()
	if n < 1 {
		t.Fatalf("replicas %d", n)
	}
	const ns = "ns-under-test"
	var firstCluster string
	for i := range n {
		pc := podConfigFor(t, o, c, i, ns)
		for _, flag := range []string{"id", "http", "peer", "advertise-http", "advertise-peer", "cluster", "cluster-token", "data-dir"} {
			if _, ok := pc.settings[flag]; !ok {
				t.Errorf("%s: --%s is not set (as an argument or DISTKV_%s)", pc.name, flag, strings.ToUpper(strings.ReplaceAll(flag, "-", "_")))
			}
		}
		if t.Failed() {
			t.FailNow()
		}
		if pc.settings["id"] != pc.name {
			t.Errorf("%s: node name %q (%s), want the pod's name", pc.name, pc.settings["id"], pc.from["id"])
		}
		checkListen(t, pc, "http", httpPort)
		checkListen(t, pc, "peer", peerPort)
		domain := checkPodAddress(t, pc.name+": --advertise-peer", pc.settings["advertise-peer"], pc.name, o.headless.Name, ns, peerPort)
		domainHTTP := checkPodAddress(t, pc.name+": --advertise-http", pc.settings["advertise-http"], pc.name, o.headless.Name, ns, httpPort)
		if domain != domainHTTP {
			t.Errorf("%s: --advertise-peer and --advertise-http in different domains", pc.name)
		}

		members := parseCluster(t, pc.settings["cluster"])
		if len(members) != n {
			t.Errorf("%s: --cluster lists %d members, the StatefulSet has %d replicas", pc.name, len(members), n)
		}
		for j := range n {
			name := o.podName(j)
			addr, ok := members[name]
			if !ok {
				t.Errorf("%s: --cluster does not list pod %s", pc.name, name)
				continue
			}
			if d := checkPodAddress(t, pc.name+": --cluster member "+name, addr, name, o.headless.Name, ns, peerPort); d != domain {
				t.Errorf("%s: --cluster member %s in domain %q, --advertise-peer in %q", pc.name, name, d, domain)
			}
		}
		// The node refuses to start when --cluster lists another address
		// for it than the one it publishes.
		if members[pc.name] != pc.settings["advertise-peer"] {
			t.Errorf("%s: --cluster lists it at %q, --advertise-peer is %q", pc.name, members[pc.name], pc.settings["advertise-peer"])
		}
		for name := range members {
			if !isPod(o, name, n) {
				t.Errorf("%s: --cluster lists %s, not a pod of the StatefulSet", pc.name, name)
			}
		}
		// Every member must agree on the list: its first name creates the
		// cluster's id.
		if i == 0 {
			firstCluster = pc.settings["cluster"]
		} else if pc.settings["cluster"] != firstCluster {
			t.Errorf("%s: --cluster %q differs from %s's %q", pc.name, pc.settings["cluster"], o.podName(0), firstCluster)
		}
		if pc.settings["cluster-token"] == "distkv" {
			t.Errorf("%s: --cluster-token is the default: give the cluster its own", pc.name)
		}

		// The data directory is the volume of the claim template.
		var claims []string
		for _, vct := range o.sts.Spec.VolumeClaimTemplates {
			claims = append(claims, vct.Name)
		}
		mounted := false
		for _, m := range c.VolumeMounts {
			if slices.Contains(claims, m.Name) && filepath.Clean(m.MountPath) == filepath.Clean(pc.settings["data-dir"]) && !m.ReadOnly {
				mounted = true
			}
		}
		if !mounted {
			t.Errorf("%s: --data-dir %q is not where a volumeClaimTemplate (%v) is mounted", pc.name, pc.settings["data-dir"], claims)
		}

		// The grace period covers the shutdown: --shutdown-timeout for the
		// requests in flight, then the leadership transfer and the WAL's
		// sync and close.
		shutdown := 10 * time.Second
		if v, ok := pc.settings["shutdown-timeout"]; ok {
			d, err := time.ParseDuration(v)
			if err != nil {
				t.Fatalf("%s: --shutdown-timeout %q: %v", pc.name, v, err)
			}
			shutdown = d
		}
		grace := 30 * time.Second
		if g := o.sts.Spec.Template.Spec.TerminationGracePeriodSeconds; g != nil {
			grace = time.Duration(*g) * time.Second
		}
		if grace < shutdown+10*time.Second {
			t.Errorf("terminationGracePeriodSeconds %v: want at least --shutdown-timeout (%v) + 10s", grace, shutdown)
		}
	}
}

func isPod(o objects, name string, n int) bool {
	for i := range n {
		if o.podName(i) == name {
			return true
		}
	}
	return false
}

// TestPodSpec checks the rest of the pod and the StatefulSet.
func TestPodSpec(t *testing.T) {
	o := loadObjects(t)
	c := o.container(t)
	spec := o.sts.Spec.Template.Spec
	httpPort := containerPort(t, c, "http")

	if c.Image != wantImage {
		t.Errorf("image %q, want %q (make image)", c.Image, wantImage)
	}
	// With a :latest tag the default policy is Always, which fails for an
	// image loaded into the nodes and never pushed.
	if c.ImagePullPolicy != corev1.PullIfNotPresent {
		t.Errorf("imagePullPolicy %q, want IfNotPresent", c.ImagePullPolicy)
	}
	if o.sts.Spec.PodManagementPolicy != appsv1.ParallelPodManagement {
		t.Errorf("podManagementPolicy %q: want Parallel: one at a time, %s is not created before %s is ready, which it is not before a majority is up",
			o.sts.Spec.PodManagementPolicy, o.podName(1), o.podName(0))
	}
	if spec.EnableServiceLinks == nil || *spec.EnableServiceLinks {
		t.Error("enableServiceLinks must be false: service links put DISTKV_* variables in the environment, where the server reads its settings")
	}

	probes := []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{
		{"readinessProbe", c.ReadinessProbe, "/readyz"},
		{"livenessProbe", c.LivenessProbe, "/healthz"},
		{"startupProbe", c.StartupProbe, "/healthz"},
	}
	for _, p := range probes {
		if p.probe == nil {
			t.Errorf("no %s", p.name)
			continue
		}
		g := p.probe.HTTPGet
		if g == nil {
			t.Errorf("%s: not an httpGet", p.name)
			continue
		}
		if g.Path != p.path {
			t.Errorf("%s: path %q, want %q", p.name, g.Path, p.path)
		}
		if port := resolvePort(c, g.Port); port != httpPort {
			t.Errorf("%s: port %s is not the HTTP port %d", p.name, g.Port.String(), httpPort)
		}
		if g.Scheme != "" && g.Scheme != corev1.URISchemeHTTP {
			t.Errorf("%s: scheme %s: distkv serves plain HTTP", p.name, g.Scheme)
		}
	}
	// The liveness probe must not restart a node for a pause of a few
	// seconds (a GC, a slow fsync), nor take over before the node serves.
	if lp := c.LivenessProbe; lp != nil {
		if window := time.Duration(lp.PeriodSeconds*max(lp.FailureThreshold, 1)) * time.Second; window < 30*time.Second {
			t.Errorf("livenessProbe restarts after %v without an answer: want at least 30s", window)
		}
	}
	if sp := c.StartupProbe; sp != nil {
		if window := time.Duration(sp.PeriodSeconds*max(sp.FailureThreshold, 1)) * time.Second; window < 5*time.Minute {
			t.Errorf("startupProbe gives a node %v to open its log: want at least 5m", window)
		}
	}

	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		q, ok := c.Resources.Requests[r]
		if !ok || q.IsZero() {
			t.Errorf("no %s request", r)
		}
	}
	if lim, ok := c.Resources.Limits[corev1.ResourceMemory]; !ok {
		t.Error("no memory limit")
	} else if req := c.Resources.Requests[corev1.ResourceMemory]; lim.Cmp(req) < 0 {
		t.Errorf("memory limit %s below the request %s", lim.String(), req.String())
	}

	// The image's user, and nothing more than it needs.
	psc := spec.SecurityContext
	if psc == nil {
		t.Fatal("no pod securityContext")
	}
	if psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
		t.Error("securityContext.runAsNonRoot is not true")
	}
	if psc.RunAsUser == nil || *psc.RunAsUser != imageUser {
		t.Errorf("securityContext.runAsUser is not %d", imageUser)
	}
	if psc.FSGroup == nil || *psc.FSGroup != imageUser {
		t.Errorf("securityContext.fsGroup is not %d: the volume would not be writable", imageUser)
	}
	csc := c.SecurityContext
	if csc == nil {
		t.Fatal("no container securityContext")
	}
	if csc.ReadOnlyRootFilesystem == nil || !*csc.ReadOnlyRootFilesystem {
		t.Error("container securityContext.readOnlyRootFilesystem is not true")
	}
	if csc.AllowPrivilegeEscalation == nil || *csc.AllowPrivilegeEscalation {
		t.Error("container securityContext.allowPrivilegeEscalation is not false")
	}
	if csc.Privileged != nil && *csc.Privileged {
		t.Error("container is privileged")
	}

	if len(o.sts.Spec.VolumeClaimTemplates) == 0 {
		t.Error("no volumeClaimTemplates: the data would not outlive the pod")
	}
	for _, vct := range o.sts.Spec.VolumeClaimTemplates {
		if q, ok := vct.Spec.Resources.Requests[corev1.ResourceStorage]; !ok || q.IsZero() {
			t.Errorf("volumeClaimTemplate %s: no storage request", vct.Name)
		}
	}
}

// TestSelectors checks that the Services, the PodDisruptionBudget and the
// anti-affinity select the StatefulSet's pods, and that the headless Service
// publishes them before they are ready.
func TestSelectors(t *testing.T) {
	o := loadObjects(t)
	c := o.container(t)
	podLabels := labels.Set(o.sts.Spec.Template.Labels)
	if len(podLabels) == 0 {
		t.Fatal("the pod template has no labels")
	}
	selects := func(what string, ls *metav1.LabelSelector) {
		t.Helper()
		if ls == nil {
			t.Errorf("%s: no selector", what)
			return
		}
		sel, err := metav1.LabelSelectorAsSelector(ls)
		if err != nil {
			t.Errorf("%s: %v", what, err)
			return
		}
		if sel.Empty() || !sel.Matches(podLabels) {
			t.Errorf("%s: selector %s does not select the pods (%s)", what, sel, podLabels)
		}
	}
	selects("StatefulSet "+o.sts.Name, o.sts.Spec.Selector)

	if o.headless.Spec.ClusterIP != corev1.ClusterIPNone {
		t.Errorf("Service %s (the StatefulSet's serviceName): clusterIP %q, want None (headless)", o.headless.Name, o.headless.Spec.ClusterIP)
	}
	if !o.headless.Spec.PublishNotReadyAddresses {
		t.Errorf("Service %s: publishNotReadyAddresses must be true: the members must resolve each other before they are ready", o.headless.Name)
	}
	client := false
	for _, s := range o.services {
		what := "Service " + s.Name
		if len(s.Spec.Selector) == 0 {
			t.Errorf("%s: no selector", what)
		} else if !labels.SelectorFromSet(s.Spec.Selector).Matches(podLabels) {
			t.Errorf("%s: selector %v does not select the pods (%s)", what, s.Spec.Selector, podLabels)
		}
		ports := map[int]bool{}
		for _, p := range s.Spec.Ports {
			target := p.TargetPort
			if target.Type == intstr.Int && target.IntVal == 0 {
				target = intstr.FromInt32(p.Port)
			}
			tp := resolvePort(c, target)
			if tp < 0 || !slices.ContainsFunc(c.Ports, func(cp corev1.ContainerPort) bool { return int(cp.ContainerPort) == tp }) {
				t.Errorf("%s: port %s targets %s, no port of the container", what, p.Name, target.String())
			}
			ports[tp] = true
		}
		if s == o.headless {
			if !ports[containerPort(t, c, "peer")] {
				t.Errorf("%s: no port for the peer port", what)
			}
		} else if ports[containerPort(t, c, "http")] {
			client = true
		}
	}
	if !client {
		t.Error("no Service but the headless one serves the HTTP port to clients")
	}

	if len(o.pdbs) == 0 {
		t.Fatal("no PodDisruptionBudget")
	}
	for _, p := range o.pdbs {
		selects("PodDisruptionBudget "+p.Name, p.Spec.Selector)
		// One member at a time keeps a majority of three (and of more).
		if p.Spec.MaxUnavailable == nil || *p.Spec.MaxUnavailable != intstr.FromInt32(1) {
			t.Errorf("PodDisruptionBudget %s: maxUnavailable %v, want 1", p.Name, p.Spec.MaxUnavailable)
		}
	}
	if a := o.sts.Spec.Template.Spec.Affinity; a != nil && a.PodAntiAffinity != nil {
		for i, term := range a.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution {
			selects(fmt.Sprintf("podAntiAffinity term %d", i), term.PodAffinityTerm.LabelSelector)
		}
		for i, term := range a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution {
			selects(fmt.Sprintf("required podAntiAffinity term %d", i), term.LabelSelector)
		}
	}
}

// TestHelpFlagParser keeps parseHelpFlags honest on the lines cobra prints.
func TestHelpFlagParser(t *testing.T) {
	got := parseHelpFlags(`Flags:
      --advertise-http string           HTTP address
      --election-ticks int              election timeout in ticks (default 10)
  -h, --help                            help for server
      --wal-direct                      make each WAL sync one O_DIRECT write
`)
	want := map[string]string{"advertise-http": "string", "election-ticks": "int", "wal-direct": ""}
	keys := func(m map[string]string) []string {
		var k []string
		for n, v := range m {
			k = append(k, n+":"+v)
		}
		sort.Strings(k)
		return k
	}
	if !slices.Equal(keys(got), keys(want)) {
		t.Fatalf("parseHelpFlags = %v, want %v", keys(got), keys(want))
	}
}
