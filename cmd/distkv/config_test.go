package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/distkv/distkv/internal/raftnode"
)

func testFlags() (*pflag.FlagSet, *string, *string, *byteSize) {
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	id := fs.String("id", "n1", "")
	dataDir := fs.String("data-dir", "", "")
	size := byteSize(4096)
	fs.Var(&size, "max-key-size", "")
	fs.String("config", "", "")
	return fs, id, dataDir, &size
}

func writeTOML(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "distkv.toml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConfigPrecedenceFlagEnvFile(t *testing.T) {
	file := writeTOML(t, "id = \"from-file\"\ndata_dir = \"/file/dir\"\nmax-key-size = \"8KiB\"\n")
	t.Setenv("DISTKV_DATA_DIR", "/env/dir")
	fs, id, dataDir, size := testFlags()
	if err := fs.Parse([]string{"--id", "from-flag"}); err != nil {
		t.Fatal(err)
	}
	if err := applyConfigSources(fs, file); err != nil {
		t.Fatal(err)
	}
	if *id != "from-flag" || *dataDir != "/env/dir" || *size != 8192 {
		t.Fatalf("id=%q data-dir=%q max-key-size=%d; want flag, env and file values", *id, *dataDir, *size)
	}
}

func TestConfigRejectsUnknownAndBadValues(t *testing.T) {
	for _, tc := range []struct {
		name, toml, env, want string
	}{
		{"unknown key", "data_dri = \"x\"\n", "", `unknown setting "data_dri"`},
		{"bad size in file", "max_key_size = \"lots\"\n", "", "max-key-size"},
		{"bad size in env", "", "-3", "DISTKV_MAX_KEY_SIZE"},
		{"not toml", "id = \n", "", "config file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.env != "" {
				t.Setenv("DISTKV_MAX_KEY_SIZE", tc.env)
			}
			fs, _, _, _ := testFlags()
			fs.Parse(nil)
			err := applyConfigSources(fs, writeTOML(t, tc.toml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

func TestByteSize(t *testing.T) {
	for in, want := range map[string]int64{"4096": 4096, "64KiB": 64 << 10, "1MiB": 1 << 20, "2 GiB": 2 << 30} {
		var b byteSize
		if err := b.Set(in); err != nil || int64(b) != want {
			t.Errorf("Set(%q) = %d, %v; want %d", in, b, err, want)
		}
	}
	for _, in := range []string{"", "0", "-1", "1.5MiB", "10XB", "99999999999999999999"} {
		var b byteSize
		if err := b.Set(in); err == nil {
			t.Errorf("Set(%q) accepted %d", in, b)
		}
	}
}

// TestSizeOrZero: --range-split-bytes takes a size or 0 (never), and
// refuses what byteSize refuses.
func TestSizeOrZero(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, " 0 ": 0, "64KiB": 64 << 10} {
		var b sizeOrZero
		if err := b.Set(in); err != nil || int64(b.byteSize) != want {
			t.Errorf("Set(%q) = %d, %v; want %d", in, b.byteSize, err, want)
		}
	}
	for _, in := range []string{"", "-1", "00x", "1.5MiB"} {
		var b sizeOrZero
		if err := b.Set(in); err == nil {
			t.Errorf("Set(%q) accepted %d", in, b.byteSize)
		}
	}
}

func TestParseCluster(t *testing.T) {
	self := raftnode.Member{Name: "n2", Peer: "h2:9001", HTTP: "h2:8001"}
	ms, err := parseCluster("n1=h1:9000, n2=h2:9001,n3=h3:9002", self)
	if err != nil {
		t.Fatal(err)
	}
	// All members must bootstrap identical records: no HTTP address, not even
	// this node's own.
	want := []raftnode.Member{{Name: "n1", Peer: "h1:9000"}, {Name: "n2", Peer: "h2:9001"}, {Name: "n3", Peer: "h3:9002"}}
	if !reflect.DeepEqual(ms, want) {
		t.Fatalf("members = %+v, want %+v", ms, want)
	}
	for _, bad := range []string{"n1=h1:9000", "n1=h1:9000,n2=h2:1", "n2", "n2=h2:9001,n2=h2:9001", "=x"} {
		if _, err := parseCluster(bad, self); err == nil {
			t.Errorf("parseCluster(%q) accepted", bad)
		}
	}
}
