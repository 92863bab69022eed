package cli

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/lotehq/lote/api"
)

func (a *app) poolCmd() *cobra.Command {
	c := &cobra.Command{Use: "pool", Short: "Create, resize and delete pools; list their nodes"}
	c.AddCommand(a.poolCreateCmd(), a.poolListCmd(), a.poolShowCmd(), a.poolResizeCmd(), a.poolDeleteCmd(), a.poolNodesCmd(),
		a.poolAutoscaleCmd())
	return c
}

func (a *app) poolCreateCmd() *cobra.Command {
	var in api.PoolCreate
	var labels []string
	var prefill int
	var startTask string
	var startEnv, startInputs []string
	var startRetries int
	var startNoWait bool
	var sf scalingFlags
	c := &cobra.Command{
		Use:   "create POOL",
		Short: "Create a pool; agents join it with the join token it prints",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			in.ID = args[0]
			var err error
			if in.Labels, err = parseKV("--label", labels); err != nil {
				return err
			}
			if c.Flags().Changed("prefill") {
				in.Prefill = &prefill
			}
			if err := sf.apply(c, &in); err != nil {
				return err
			}
			if startTask != "" {
				wait := !startNoWait
				in.StartTask = &api.StartTask{Command: []string{startTask}, Shell: true, MaxRetries: startRetries, WaitForSuccess: &wait}
				if in.StartTask.Env, err = parseKV("--start-task-env", startEnv); err != nil {
					return err
				}
				if in.StartTask.Inputs, err = parseInputs("--start-task-input", startInputs); err != nil {
					return err
				}
				if err := a.uploadLocalInputs(c.Context(), "--start-task-input", in.StartTask.Inputs); err != nil {
					return err
				}
			} else if len(startEnv) > 0 || len(startInputs) > 0 || startRetries != 0 || startNoWait {
				return usageErr("--start-task-env, --start-task-input, --start-task-retries and --start-task-no-wait need --start-task")
			}
			cl, err := a.client()
			if err != nil {
				return err
			}
			p, err := cl.CreatePool(c.Context(), in)
			if err != nil {
				return err
			}
			return a.emit(p, []string{p.ID}, func(w io.Writer) {
				fmt.Fprintf(w, "pool %s created\njoin token: %s\nstart an agent: lote agent --server URL --pool %s --join-token %s\n", p.ID, p.JoinToken, p.ID, p.JoinToken)
			})
		},
	}
	f := c.Flags()
	f.IntVar(&in.SlotsPerNode, "slots", 0, "task slots per node (default: the node's CPUs)")
	f.StringVar(&in.FillPolicy, "fill", "spread", "fill policy: spread or pack")
	f.IntVar(&prefill, "prefill", 0, "tasks queued on an agent beyond its free slots (default: 2 x slots, at least 4; up to 16 x slots for nodes whose tasks run for milliseconds)")
	f.StringArrayVar(&labels, "label", nil, "pool label K=V (repeatable)")
	f.StringArrayVar(&in.Apps, "app", nil, "application package NAME[@VERSION] every task of the pool gets (installed once per node; no version = the newest uploaded now; repeatable)")
	f.StringVar(&startTask, "start-task", "", "shell command line run on every node as it joins, in its startup/wd directory; nodes take tasks once it succeeded")
	f.StringArrayVar(&startEnv, "start-task-env", nil, "start task environment K=V (repeatable)")
	f.StringArrayVar(&startInputs, "start-task-input", nil, "stage SRC into the start task's working dir as PATH before it runs: SRC=PATH[:MODE] as for --input, no placeholders (repeatable)")
	f.IntVar(&startRetries, "start-task-retries", 0, "retries of a failing start task before the node is start_task_failed")
	f.BoolVar(&startNoWait, "start-task-no-wait", false, "give nodes tasks while their start task still runs (wait_for_success false)")
	f.BoolVar(&in.AllowRoot, "allow-root", false, "let tasks run as root on agents running as root (default: such agents run tasks as their --run-as user)")
	sf.register(f, &in)
	return c
}

func poolTable(w io.Writer, pools []api.Pool) {
	fmt.Fprintln(w, "POOL\tPROVIDER\tNODES\tIDLE\tRUNNING\tUNREACHABLE\tFILL")
	for _, p := range pools {
		fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%d\t%d\t%s\n", p.ID, p.Provider, p.CurrentNodes,
			p.NodeCounts["idle"], p.NodeCounts["running"], p.NodeCounts["unreachable"], p.FillPolicy)
	}
}

func (a *app) poolListCmd() *cobra.Command {
	var watch bool
	c := &cobra.Command{
		Use:   "list",
		Short: "List pools",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			return a.list(c.Context(), watch, func(ctx context.Context) (view, error) {
				pools, err := cl.Pools(ctx)
				return view{doc: api.PoolList{Version: api.Version, Pools: pools}, ids: idsOf(pools, func(p api.Pool) string { return p.ID }),
					table: func(w io.Writer) { poolTable(w, pools) }}, err
			})
		},
	}
	addWatch(c, &watch)
	return c
}

func (a *app) poolShowCmd() *cobra.Command {
	var reveal, rotate bool
	c := &cobra.Command{
		Use:   "show POOL",
		Short: "Show a pool; --reveal-token prints its join token, --rotate-token replaces it",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			var p api.Pool
			if rotate {
				p, err = cl.RotateJoinToken(c.Context(), args[0])
			} else {
				p, err = cl.Pool(c.Context(), args[0], reveal)
			}
			if err != nil {
				return err
			}
			return a.emit(p, []string{p.ID}, func(w io.Writer) {
				poolTable(w, []api.Pool{p})
				poolDetails(w, p)
				if p.JoinToken != "" {
					fmt.Fprintf(w, "\njoin token: %s\n", p.JoinToken)
				}
			})
		},
	}
	c.Flags().BoolVar(&reveal, "reveal-token", false, "print the pool's join token")
	c.Flags().BoolVar(&rotate, "rotate-token", false, "give the pool a new join token and print it (joined nodes keep working)")
	return c
}

func nodeTable(w io.Writer, nodes []api.Node) {
	fmt.Fprintln(w, "NODE\tPOOL\tSTATE\tSLOTS\tRUNNING\tASSIGNED\tCORES\tHOST\tLAST SEEN")
	for _, n := range nodes {
		fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\t%s\n", n.ID, n.PoolID, n.State, n.Slots, n.RunningTasks,
			n.AssignedTasks, n.Cores, n.Hostname, ago(n.LastSeenAt))
	}
}

func (a *app) poolNodesCmd() *cobra.Command {
	var watch bool
	c := &cobra.Command{
		Use:   "nodes POOL",
		Short: "List a pool's nodes",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			return a.list(c.Context(), watch, func(ctx context.Context) (view, error) {
				nodes, err := cl.PoolNodes(ctx, args[0])
				// A heartbeat alone is no change worth printing again.
				key := make([]api.Node, len(nodes))
				for i, n := range nodes {
					n.LastSeenAt = time.Time{}
					key[i] = n
				}
				return view{doc: api.NodeList{Version: api.Version, Nodes: nodes}, ids: idsOf(nodes, func(n api.Node) string { return n.ID }),
					table: func(w io.Writer) { nodeTable(w, nodes) }, key: key}, err
			})
		},
	}
	addWatch(c, &watch)
	return c
}

func (a *app) poolResizeCmd() *cobra.Command {
	var in api.PoolResize
	c := &cobra.Command{
		Use:   "resize POOL --nodes N",
		Short: "Set the number of nodes a pool should have",
		Long: `Set the number of nodes a pool should have. --deallocation says what happens to the tasks of nodes
removed when it shrinks: requeue them (the default), terminate them, or let them complete first
(task_completion).`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if !c.Flags().Changed("nodes") {
				return usageErr("--nodes is required")
			}
			cl, err := a.client()
			if err != nil {
				return err
			}
			p, err := cl.ResizePool(c.Context(), args[0], in)
			if err != nil {
				return err
			}
			return a.emit(p, []string{p.ID}, func(w io.Writer) {
				fmt.Fprintf(w, "pool %s: target %d node(s), %d now\n", p.ID, p.TargetNodes, p.CurrentNodes)
			})
		},
	}
	c.Flags().IntVar(&in.TargetNodes, "nodes", 0, "target number of nodes")
	c.Flags().IntVar(&in.TargetSpotNodes, "spot-nodes", 0, "target number of spot nodes")
	c.Flags().StringVar(&in.Deallocation, "deallocation", "", "on shrink: requeue, terminate or task_completion (default: the pool's, else requeue); kept for later shrinks")
	return c
}

func (a *app) poolDeleteCmd() *cobra.Command {
	return a.deleteCmd("pool", "Delete pools that have no jobs (delete their jobs first); their nodes are forgotten",
		func(ctx context.Context, cl *api.Client, id string) error { return cl.DeletePool(ctx, id) })
}
