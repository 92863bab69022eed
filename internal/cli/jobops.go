package cli

import (
	"context"
	"fmt"
	"io"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/lotehq/lote/api"
)

// Operations on existing jobs: terminate (by ID or by tag), delete, retry
// the failed tasks, change the priority.

// addIdempotencyKey registers --idempotency-key on a create.
func addIdempotencyKey(c *cobra.Command, key *string) {
	c.Flags().StringVar(key, "idempotency-key", "",
		"make this call safe to retry: a repeat with the same key (kept 24 h) returns the first result instead of creating again")
}

func (a *app) jobTerminateCmd() *cobra.Command {
	var tags []string
	c := &cobra.Command{
		Use:   "terminate [JOB... | --tag K=V...]",
		Short: "End jobs: tasks not completed are cancelled (by ID, or every job carrying the tags, in one call)",
		Example: `  lote job terminate J
  lote job terminate --tag run=abc`,
		RunE: func(c *cobra.Command, args []string) error {
			if (len(args) == 0) == (len(tags) == 0) {
				return usageErr("give job IDs or --tag, not both")
			}
			tagMap, err := parseKV("--tag", tags)
			if err != nil {
				return err
			}
			cl, err := a.client()
			if err != nil {
				return err
			}
			var jobs []api.Job
			if tagMap != nil {
				if jobs, err = cl.TerminateJobsByTag(c.Context(), tagMap); err != nil {
					return err
				}
			}
			for _, id := range args {
				j, err := cl.TerminateJob(c.Context(), id)
				if err != nil {
					return err
				}
				jobs = append(jobs, j)
			}
			return a.emit(api.JobList{Version: api.Version, Jobs: jobs}, idsOf(jobs, func(j api.Job) string { return j.ID }),
				func(w io.Writer) { jobTable(w, jobs) })
		},
	}
	c.Flags().StringArrayVar(&tags, "tag", nil, "terminate every job carrying tag K=V (repeatable: all must match)")
	return c
}

func (a *app) jobDeleteCmd() *cobra.Command {
	return a.deleteCmd("job", "Terminate jobs and delete their records and stored logs",
		func(ctx context.Context, cl *api.Client, id string) error { return cl.DeleteJob(ctx, id) })
}

func (a *app) jobRetryCmd() *cobra.Command {
	var failed bool
	c := &cobra.Command{
		Use:   "retry JOB --failed",
		Short: "Run a job's failed tasks again (and only those)",
		Long: `Run a job's failed tasks again, and only those: each gets a new attempt with its retry count reset;
tasks that succeeded are left alone. Follow with 'lote job wait JOB'.`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if !failed {
				return usageErr("say which tasks to retry: --failed")
			}
			cl, err := a.client()
			if err != nil {
				return err
			}
			res, err := cl.RetryFailed(c.Context(), args[0])
			if err != nil {
				return err
			}
			return a.emit(res, []string{res.JobID}, func(w io.Writer) {
				fmt.Fprintf(w, "job %s: %d failed task(s) retried\n", res.JobID, res.Retried)
			})
		},
	}
	c.Flags().BoolVar(&failed, "failed", false, "retry the tasks that failed")
	return c
}

func (a *app) jobSetPriorityCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "set-priority JOB PRIORITY",
		Short: "Change a job's priority (-1000 to 1000, higher runs first)",
		Example: `  lote job set-priority J 500
  lote job set-priority J -- -100     # a negative priority follows --`,
		Args: cobra.ExactArgs(2),
		RunE: func(c *cobra.Command, args []string) error {
			prio, err := strconv.Atoi(args[1])
			if err != nil {
				return usageErr("priority %q: want an integer from -1000 to 1000", args[1])
			}
			cl, err := a.client()
			if err != nil {
				return err
			}
			j, err := cl.UpdateJob(c.Context(), args[0], api.JobUpdate{Priority: &prio})
			if err != nil {
				return err
			}
			return a.emit(j, []string{j.ID}, func(w io.Writer) { jobTable(w, []api.Job{j}) })
		},
	}
}
