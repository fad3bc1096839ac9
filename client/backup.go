package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"time"
)

// BackupInfo describes a backup that Backup received.
type BackupInfo struct {
	// Revision is the revision of the copy: every write acknowledged
	// before Backup was called has a revision at or below it, and no write
	// with a revision above it is in the copy.
	Revision uint64
	// Endpoint is the node that sent it.
	Endpoint string
	// Bytes is the size of the backup stream written to w.
	Bytes int64
}

// Backup asks a node for a backup (GET /backup: a consistent copy of the
// cluster's state at one revision, in the format of `distkv backup` files)
// and copies it to w as it arrives. The endpoints are tried in turn until
// one starts sending; once one has, a failure is returned as it is, since w
// then holds part of a backup (which the format's checksum refuses). The
// answer is not verified here: check it (as `distkv backup` does) before
// trusting it. Config.Timeout bounds the wait for the answer to start, not
// the copy; ctx bounds everything.
func (c *Client) Backup(ctx context.Context, w io.Writer) (BackupInfo, error) {
	c.mu.Lock()
	eps, first := slices.Clone(c.endpoints), c.preferred
	c.mu.Unlock()
	var errs []error
	for i := range eps {
		ep := eps[(first+i)%len(eps)]
		info, started, err := c.backupFrom(ctx, ep, w)
		if err == nil || started {
			if err != nil {
				err = fmt.Errorf("backup from %s: %w", ep, err)
			}
			return info, err
		}
		errs = append(errs, fmt.Errorf("%s: %w", ep, err))
		if ctx.Err() != nil {
			break
		}
	}
	return BackupInfo{}, fmt.Errorf("no node sent a backup: %w", errors.Join(errs...))
}

// backupFrom asks ep for a backup; started reports that the body began.
func (c *Client) backupFrom(ctx context.Context, ep string, w io.Writer) (info BackupInfo, started bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, ep+"/backup", nil)
	if err != nil {
		return BackupInfo{}, false, err
	}
	c.authorize(req)
	type answer struct {
		resp *http.Response
		err  error
	}
	answered := make(chan answer, 1)
	go func() {
		resp, err := c.http.Do(req)
		answered <- answer{resp, err}
	}()
	var a answer
	if c.cfg.Timeout > 0 {
		timer := time.NewTimer(c.cfg.Timeout)
		select {
		case a = <-answered:
			timer.Stop()
		case <-timer.C:
			cancel()
			if a = <-answered; a.err == nil {
				a.resp.Body.Close()
			}
			return BackupInfo{}, false, fmt.Errorf("no answer within %v", c.cfg.Timeout)
		}
	} else {
		a = <-answered
	}
	if a.err != nil {
		return BackupInfo{}, false, a.err
	}
	defer a.resp.Body.Close()
	if a.resp.StatusCode != http.StatusOK {
		data, _ := io.ReadAll(io.LimitReader(a.resp.Body, 64<<10))
		return BackupInfo{}, false, statusError(a.resp.StatusCode, data, false)
	}
	info = BackupInfo{Endpoint: ep}
	if info.Revision, err = strconv.ParseUint(a.resp.Header.Get("X-Distkv-Revision"), 10, 64); err != nil {
		return BackupInfo{}, false, fmt.Errorf("answer without a revision (X-Distkv-Revision): %w", err)
	}
	c.prefer(ep)
	info.Bytes, err = io.Copy(w, a.resp.Body)
	return info, true, err
}
