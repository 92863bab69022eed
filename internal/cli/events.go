package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/lotehq/lote/api"
)

// eventLine is one event as `lote events -f -o json` prints it: one
// compact JSON document per line, each with the schema version.
type eventLine struct {
	Version string `json:"version"`
	api.Event
}

func (a *app) eventsCmd() *cobra.Command {
	var f api.EventFilter
	var follow bool
	c := &cobra.Command{
		Use:   "events",
		Short: "Show task, node and job changes as they commit; -f follows new ones",
		Long: "Show task, node and job changes, oldest first, from the server's event stream (GET /v1/events).\n\n" +
			"Without -f it prints the recent events the server keeps (the last 65,536) and exits. With -f it\n" +
			"prints new events as they happen until Ctrl-C, resuming by itself if the connection drops.\n" +
			"--after ID starts after an event ID (0: the oldest kept); --tail N starts with the last N\n" +
			"events that pass the filters. With -o json, -f prints one JSON\n" +
			"document per line; without -f, one document holding the list. When events were missed (they\n" +
			"were dropped from the server's buffer, or the server restarted) a warning goes to stderr.",
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			f.Follow = follow
			switch {
			case c.Flags().Changed("after") && c.Flags().Changed("tail"):
				return usageErr("give --after or --tail, not both")
			case c.Flags().Changed("after"):
				f.FromStart = f.After == 0
			case f.Tail == 0:
				f.FromStart = !follow
			}
			warn := func(gap error) {
				if a.output == "json" {
					json.NewEncoder(a.stderr).Encode(map[string]any{"version": api.Version, "warning": gap.Error()})
					return
				}
				fmt.Fprintf(a.stderr, "lote: %v; fetch the state again to be sure\n", gap)
			}
			if !follow {
				evs := []api.Event{}
				err := cl.Events(c.Context(), f, func(ev api.Event, gap error) error {
					if gap != nil {
						warn(gap)
					} else {
						evs = append(evs, ev)
					}
					return nil
				})
				if err != nil {
					return err
				}
				ids := make([]string, len(evs))
				for i, ev := range evs {
					ids[i] = strconv.FormatUint(ev.ID, 10)
				}
				return a.emit(map[string]any{"events": evs}, ids, func(w io.Writer) {
					fmt.Fprintln(w, eventHeader)
					for _, ev := range evs {
						fmt.Fprintln(w, eventRow(ev))
					}
				})
			}
			if a.output == "table" && !a.quiet {
				fmt.Fprintln(a.stdout, fixedRow(eventHeader))
			}
			return cl.Events(c.Context(), f, func(ev api.Event, gap error) error {
				if gap != nil {
					warn(gap)
					return nil
				}
				return a.printEvent(ev)
			})
		},
	}
	fl := c.Flags()
	fl.BoolVarP(&follow, "follow", "f", false, "follow new events until Ctrl-C")
	fl.StringVar(&f.Job, "job", "", "only events of this job")
	fl.StringVar(&f.Pool, "pool", "", "only events of this pool")
	fl.StringVar(&f.Node, "node", "", "only events naming this node")
	fl.StringSliceVar(&f.Kinds, "kind", nil, "only these kinds: task, node, job, pool")
	fl.Uint64Var(&f.After, "after", 0, "start after this event ID (0: the oldest the server keeps)")
	fl.IntVar(&f.Tail, "tail", 0, "start with the last N events that pass the filters")
	return c
}

const eventHeader = "ID\tTIME\tKIND\tPOOL\tOBJECT\tNODE\tSTATE\tRESULT"

// eventRow is an event as a table line.
func eventRow(ev api.Event) string {
	obj := ev.JobID
	switch ev.Kind {
	case "task":
		obj = ev.JobID + "/" + ev.TaskID
	case "node":
		obj = ev.NodeID
	case "pool":
		obj = ev.PoolID
	}
	result := ev.Result
	if ev.FailureCategory != "" {
		result += " (" + ev.FailureCategory + ")"
	}
	if ev.ExitCode != nil {
		result += " exit " + strconv.Itoa(*ev.ExitCode)
	}
	state := ev.State
	if ev.Attempt > 0 {
		state += " #" + strconv.Itoa(ev.Attempt)
	}
	return fmt.Sprintf("%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s", ev.ID, ev.Time.Local().Format(time.TimeOnly+".000"), ev.Kind,
		dash(ev.PoolID), dash(obj), dash(ev.NodeID), dash(state), dash(result))
}

// printEvent prints one followed event as it arrives: a JSON line, the ID,
// or a table row.
func (a *app) printEvent(ev api.Event) error {
	var err error
	switch {
	case a.output == "json":
		var b []byte
		if b, err = json.Marshal(eventLine{api.Version, ev}); err == nil {
			_, err = a.stdout.Write(append(b, '\n'))
		}
	case a.quiet:
		_, err = fmt.Fprintln(a.stdout, ev.ID)
	default:
		_, err = fmt.Fprintln(a.stdout, fixedRow(eventRow(ev)))
	}
	return err
}

// eventWidths are the columns of followed events: rows are printed as they
// arrive, so columns get usual widths rather than measured ones.
var eventWidths = []int{16, 12, 4, 10, 20, 12, 14}

// fixedRow pads a tab-separated line to eventWidths.
func fixedRow(line string) string {
	var b strings.Builder
	for i, cell := range strings.Split(line, "\t") {
		b.WriteString(cell)
		if i < len(eventWidths) {
			b.WriteString(strings.Repeat(" ", max(eventWidths[i]-utf8.RuneCountInString(cell), 0)+2))
		}
	}
	return b.String()
}
