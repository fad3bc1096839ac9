package main

import (
	"errors"
	"fmt"
	"testing"

	"github.com/distkv/distkv/internal/httpapi"
	"github.com/distkv/distkv/internal/raftnode"
)

// TestAdminErrorSaysItOnce: a membership error keeps raftnode's message and
// still picks the HTTP status (it used to read "no such member: no such
// member: ...").
func TestAdminErrorSaysItOnce(t *testing.T) {
	for _, c := range []struct {
		err  error
		mark error
	}{
		{fmt.Errorf("%w: %q", raftnode.ErrUnknownMember, "n9"), httpapi.ErrUnknownMember},
		{fmt.Errorf("%w: %q", raftnode.ErrMemberExists, "n2"), httpapi.ErrMemberExists},
	} {
		got := adminErr(c.err)
		if got.Error() != c.err.Error() || !errors.Is(got, c.mark) || !errors.Is(got, errors.Unwrap(c.err)) {
			t.Errorf("adminErr(%q) = %q; want the same text, matching %v", c.err, got, c.mark)
		}
	}
}
