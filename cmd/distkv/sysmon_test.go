package main

import (
	"slices"
	"testing"
)

func TestGodebugWithSysmon(t *testing.T) {
	for _, tc := range []struct {
		cur, want string
		changed   bool
	}{
		{"", sysmonSetting, true},
		{" ", sysmonSetting, true},
		{"gctrace=1", "gctrace=1," + sysmonSetting, true},
		{"schedtrace=0", "schedtrace=0", false},
		{"gctrace=1,schedtrace=1000", "gctrace=1,schedtrace=1000", false},
		{"gctrace=1, schedtrace=5", "gctrace=1, schedtrace=5", false},
		{sysmonSetting, sysmonSetting, false},
		{"xschedtrace=1", "xschedtrace=1," + sysmonSetting, true},
	} {
		got, changed := godebugWithSysmon(tc.cur)
		if got != tc.want || changed != tc.changed {
			t.Errorf("godebugWithSysmon(%q) = %q, %v; want %q, %v", tc.cur, got, changed, tc.want, tc.changed)
		}
	}
}

func TestEnvWithSysmon(t *testing.T) {
	in := []string{"PATH=/bin", "GODEBUG=gctrace=1", "HOME=/root"}
	got := envWithSysmon(in)
	want := []string{"PATH=/bin", "GODEBUG=gctrace=1," + sysmonSetting, "HOME=/root"}
	if !slices.Equal(got, want) {
		t.Errorf("envWithSysmon(%q) = %q, want %q", in, got, want)
	}
	if in[1] != "GODEBUG=gctrace=1" {
		t.Errorf("envWithSysmon changed its argument: %q", in)
	}
	if got := envWithSysmon([]string{"PATH=/bin"}); !slices.Equal(got, []string{"PATH=/bin", "GODEBUG=" + sysmonSetting}) {
		t.Errorf("without GODEBUG: %q", got)
	}
	own := []string{"GODEBUG=schedtrace=0"}
	if got := envWithSysmon(own); !slices.Equal(got, own) {
		t.Errorf("a GODEBUG naming schedtrace was changed: %q", got)
	}
}
