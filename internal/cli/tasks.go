package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/lotehq/lote/api"
)

func (a *app) taskCmd() *cobra.Command {
	c := &cobra.Command{Use: "task", Short: "Add, inspect, retry and cancel tasks; read their output"}
	c.AddCommand(a.taskAddCmd(), a.taskListCmd(), a.taskShowCmd(), a.taskLogsCmd(), a.taskRetryCmd(), a.taskCancelCmd())
	return c
}

func exitStr(t api.Task) string {
	switch {
	case t.Signal != 0:
		return "sig " + strconv.Itoa(t.Signal)
	case t.ExitCode != nil:
		return strconv.Itoa(*t.ExitCode)
	}
	return "-"
}

func taskTable(w io.Writer, tasks []api.Task) {
	fmt.Fprintln(w, "TASK\tSTATE\tRESULT\tEXIT\tATTEMPT\tNODE\tWHY WAITING\tCOMMAND")
	for _, t := range tasks {
		result := t.Result
		if t.FailureCategory != "" {
			result += " (" + t.FailureCategory + ")"
		}
		cmd := strings.Join(t.Command, " ")
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", t.ID, t.State, dash(result), exitStr(t), t.Attempt,
			dash(t.NodeID), dash(t.PendingReason), cmd)
	}
}

func (a *app) taskListCmd() *cobra.Command {
	var state, next string
	var limit int
	var all, watch bool
	c := &cobra.Command{
		Use:   "list JOB",
		Short: "List a job's tasks, a page at a time; waiting tasks say why",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			return a.list(c.Context(), watch, func(ctx context.Context) (view, error) {
				page, err := cl.Tasks(ctx, args[0], state, limit, next)
				if err != nil {
					return view{}, err
				}
				for all && page.Next != "" {
					more, err := cl.Tasks(ctx, args[0], state, limit, page.Next)
					if err != nil {
						return view{}, err
					}
					page.Tasks, page.Next = append(page.Tasks, more.Tasks...), more.Next
				}
				return view{doc: page, ids: idsOf(page.Tasks, func(t api.Task) string { return t.ID }), table: func(w io.Writer) {
					taskTable(w, page.Tasks)
					if page.Next != "" {
						fmt.Fprintf(w, "\nmore: lote task list %s --next %s\n", args[0], page.Next)
					}
				}}, nil
			})
		},
	}
	addWatch(c, &watch)
	f := c.Flags()
	f.StringVar(&state, "state", "", "only tasks in this state (active, assigned, running, completed)")
	f.IntVar(&limit, "limit", 100, "tasks per page")
	f.StringVar(&next, "next", "", "page cursor printed by the previous page")
	f.BoolVar(&all, "all", false, "fetch every page")
	return c
}

func (a *app) taskShowCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "show JOB TASK",
		Short: "Show a task with every attempt",
		Args:  cobra.ExactArgs(2),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			t, err := cl.Task(c.Context(), args[0], args[1])
			if err != nil {
				return err
			}
			return a.emit(t, []string{t.ID}, func(w io.Writer) {
				taskTable(w, []api.Task{t})
				if len(t.Attempts) == 0 {
					return
				}
				fmt.Fprintln(w, "\nATTEMPT\tNODE\tRESULT\tEXIT\tSTARTED\tDURATION\tCPU\tMAX RSS\tMESSAGE")
				for _, at := range t.Attempts {
					exit, dur, started := "-", "-", "-"
					if at.ExitCode != nil {
						exit = strconv.Itoa(*at.ExitCode)
					}
					if at.Signal != 0 {
						exit = "sig " + strconv.Itoa(at.Signal)
					}
					if at.StartedAt != nil {
						started = at.StartedAt.Format(time.RFC3339)
						if at.EndedAt != nil {
							dur = at.EndedAt.Sub(*at.StartedAt).Round(time.Millisecond).String()
						}
					}
					cpu := (time.Duration(at.UserCPU) + time.Duration(at.SysCPU)).Round(time.Millisecond)
					result := at.Result
					if at.FailureCategory != "" {
						result += " (" + at.FailureCategory + ")"
					}
					fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%d KiB\t%s\n", at.Number, at.NodeID, dash(result), exit,
						started, dur, cpu, at.MaxRSSBytes>>10, dash(at.Message))
				}
			})
		},
	}
}

func (a *app) taskLogsCmd() *cobra.Command {
	var follow, stderr bool
	var attempt int
	c := &cobra.Command{
		Use:   "logs JOB TASK",
		Short: "Print a task's stdout (or --stderr); -f follows it while it runs",
		Args:  cobra.ExactArgs(2),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			stream := "stdout"
			if stderr {
				stream = "stderr"
			}
			// With -o json the output is gathered into one document.
			var out io.Writer = a.stdout
			var buf bytes.Buffer
			if a.output == "json" {
				out = &buf
			}
			var offset int64
			cur := attempt
			done := func() error {
				if a.output != "json" {
					return nil
				}
				return a.emit(map[string]any{"job_id": args[0], "task_id": args[1], "stream": stream, "attempt": cur,
					"data": buf.String()}, nil, nil)
			}
			for {
				chunk, err := cl.TaskLog(c.Context(), args[0], args[1], stream, attempt, offset)
				if err != nil {
					return err
				}
				if cur != 0 && chunk.Attempt != cur && attempt == 0 {
					// The task was retried: follow the new attempt from its start.
					if !a.quiet {
						fmt.Fprintf(a.stderr, "--- attempt %d ---\n", chunk.Attempt)
					}
					buf.Reset()
					offset = 0
					cur = chunk.Attempt
					continue
				}
				cur = chunk.Attempt
				if len(chunk.Data) > 0 {
					out.Write(chunk.Data)
					offset += int64(len(chunk.Data))
					continue
				}
				if !follow || (chunk.Final && chunk.State == api.TaskCompleted) {
					return done()
				}
				select {
				case <-c.Context().Done():
					return done()
				case <-time.After(250 * time.Millisecond):
				}
			}
		},
	}
	f := c.Flags()
	f.BoolVarP(&follow, "follow", "f", false, "keep printing output as the task writes it, until it completes")
	f.BoolVar(&stderr, "stderr", false, "print stderr instead of stdout")
	f.IntVar(&attempt, "attempt", 0, "attempt number (default: the latest)")
	return c
}
