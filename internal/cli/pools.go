package cli

import (
	"fmt"
	"io"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/lotehq/lote/api"
)

func (a *app) poolCmd() *cobra.Command {
	c := &cobra.Command{Use: "pool", Short: "Manage pools"}
	c.AddCommand(a.poolCreateCmd(), a.poolListCmd(), a.poolShowCmd(), a.poolNodesCmd())
	return c
}

func (a *app) poolCreateCmd() *cobra.Command {
	var in api.PoolCreate
	var labels []string
	var prefill int
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
			cl, err := a.client()
			if err != nil {
				return err
			}
			p, err := cl.CreatePool(c.Context(), in)
			if err != nil {
				return err
			}
			return a.emit(p, []string{p.ID}, func(w io.Writer) {
				fmt.Fprintf(w, "pool %s created\njoin token:\t%s\nstart an agent:\tlote agent --server URL --pool %s --join-token %s\n", p.ID, p.JoinToken, p.ID, p.JoinToken)
			})
		},
	}
	f := c.Flags()
	f.IntVar(&in.SlotsPerNode, "slots", 0, "task slots per node (default: the node's CPUs)")
	f.StringVar(&in.FillPolicy, "fill", "spread", "fill policy: spread or pack")
	f.IntVar(&prefill, "prefill", 0, "tasks queued on an agent beyond its free slots (default: 2 x slots, at least 4)")
	f.StringArrayVar(&labels, "label", nil, "pool label K=V (repeatable)")
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
	return &cobra.Command{
		Use:   "list",
		Short: "List pools",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			pools, err := cl.Pools(c.Context())
			if err != nil {
				return err
			}
			ids := make([]string, len(pools))
			for i, p := range pools {
				ids[i] = p.ID
			}
			return a.emit(map[string]any{"pools": pools}, ids, func(w io.Writer) { poolTable(w, pools) })
		},
	}
}

func (a *app) poolShowCmd() *cobra.Command {
	var reveal bool
	c := &cobra.Command{
		Use:   "show POOL",
		Short: "Show a pool",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			p, err := cl.Pool(c.Context(), args[0], reveal)
			if err != nil {
				return err
			}
			return a.emit(p, []string{p.ID}, func(w io.Writer) {
				poolTable(w, []api.Pool{p})
				if p.JoinToken != "" {
					fmt.Fprintf(w, "\njoin token:\t%s\n", p.JoinToken)
				}
			})
		},
	}
	c.Flags().BoolVar(&reveal, "reveal-token", false, "print the pool's join token")
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
	return &cobra.Command{
		Use:   "nodes POOL",
		Short: "List a pool's nodes",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			nodes, err := cl.PoolNodes(c.Context(), args[0])
			if err != nil {
				return err
			}
			ids := make([]string, len(nodes))
			for i, n := range nodes {
				ids[i] = n.ID
			}
			return a.emit(map[string]any{"nodes": nodes}, ids, func(w io.Writer) { nodeTable(w, nodes) })
		},
	}
}

func (a *app) nodeCmd() *cobra.Command {
	c := &cobra.Command{Use: "node", Short: "Inspect and drain nodes"}
	show := &cobra.Command{
		Use:   "show NODE",
		Short: "Show a node",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			n, err := cl.Node(c.Context(), args[0])
			if err != nil {
				return err
			}
			return a.emit(n, []string{n.ID}, func(w io.Writer) { nodeTable(w, []api.Node{n}) })
		},
	}
	drain := func(use, short string, on bool) *cobra.Command {
		return &cobra.Command{
			Use:   use + " NODE",
			Short: short,
			Args:  cobra.ExactArgs(1),
			RunE: func(c *cobra.Command, args []string) error {
				cl, err := a.client()
				if err != nil {
					return err
				}
				n, err := cl.DrainNode(c.Context(), args[0], on)
				if err != nil {
					return err
				}
				return a.emit(n, []string{n.ID}, func(w io.Writer) {
					fmt.Fprintf(w, "node %s: %s (drained=%s)\n", n.ID, n.State, strconv.FormatBool(n.Drained))
				})
			},
		}
	}
	c.AddCommand(show, drain("drain", "Stop giving a node new tasks (running ones finish)", true),
		drain("undrain", "Give a drained node tasks again", false))
	return c
}
