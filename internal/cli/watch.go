package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
)

// view is what a list command shows: the document for -o json, the IDs for
// -q and the table; key, when set, is what --watch compares to decide that
// something changed (a node's heartbeat time alone is no change).
type view struct {
	doc   any
	ids   []string
	table func(w io.Writer)
	key   any
}

// watchInterval is how often --watch asks the server.
const watchInterval = time.Second

// addWatch registers --watch on a list command.
func addWatch(c *cobra.Command, watch *bool) {
	c.Flags().BoolVarP(watch, "watch", "w", false,
		"keep listing: redraw every second on a terminal, print again on each change otherwise; Ctrl-C stops")
}

// list shows fetch's view once or, with watch, until ctx ends (Ctrl-C): on
// a terminal it redraws the screen every second; otherwise it prints the
// view again each time it changes, so a log or a pipe gets one copy per
// change (with -o json, one document per change).
func (a *app) list(ctx context.Context, watch bool, fetch func(ctx context.Context) (view, error)) error {
	v, err := fetch(ctx)
	if err != nil {
		return err
	}
	if !watch {
		return a.emit(v.doc, v.ids, v.table)
	}
	tty := isTTY(a.stdout)
	var last []byte
	t := time.NewTicker(watchInterval)
	defer t.Stop()
	for first := true; ; first = false {
		key := v.key
		if key == nil {
			key = v.doc
		}
		k, err := json.Marshal(key)
		if err != nil {
			return err
		}
		switch {
		case tty:
			fmt.Fprint(a.stdout, "\x1b[H\x1b[2J")
			if err := a.emit(v.doc, v.ids, v.table); err != nil {
				return err
			}
		case first || !bytes.Equal(k, last):
			if !first && a.output != "json" {
				fmt.Fprintln(a.stdout)
			}
			if err := a.emit(v.doc, v.ids, v.table); err != nil {
				return err
			}
		}
		last = k
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if v, err = fetch(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
}
