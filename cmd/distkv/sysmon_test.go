package main

import "testing"

func TestSysmonMode(t *testing.T) {
	for _, tc := range []struct{ godebug, want string }{
		{"", "runtime default"},
		{"schedtrace=0", "runtime default"},
		{"gctrace=1, " + sysmonSetting, "kept out of deep sleep (GODEBUG " + sysmonSetting + ")"},
		{sysmonSetting, "kept out of deep sleep (GODEBUG " + sysmonSetting + ")"},
	} {
		t.Setenv("GODEBUG", tc.godebug)
		if got := sysmonMode(); got != tc.want {
			t.Errorf("GODEBUG=%q: sysmonMode() = %q, want %q", tc.godebug, got, tc.want)
		}
	}
}
