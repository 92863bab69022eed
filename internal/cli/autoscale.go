package cli

// Pool sizing on the command line: the scaling flags of pool create,
// pool autoscale enable|disable|eval, and the figures pool show prints.

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/lotehq/lote/api"
)

// scalingFlags are pool create's provider, size, autoscale and price flags.
type scalingFlags struct {
	formula      string
	interval     time.Duration
	joinTimeout  time.Duration
	provTimeout  time.Duration
	provCommand  string
	provArgs     []string
	dealloc      string
	spotNodes    int
	minN, maxN   int
	price, spotP float64
}

func (sf *scalingFlags) register(f *pflag.FlagSet, in *api.PoolCreate) {
	f.StringVar(&in.Provider, "provider", "static", "who makes the pool's nodes: static (you start agents with the join token), local (agents on the server's machine) or exec (--provider-command makes machines)")
	f.IntVar(&in.TargetNodes, "nodes", 0, "nodes the pool should have (local and exec pools make them)")
	f.IntVar(&sf.spotNodes, "spot-nodes", 0, "spot nodes the pool should have (cheaper, may be preempted)")
	f.StringVar(&sf.formula, "autoscale", "", `autoscale formula, evaluated every --autoscale-interval, e.g. "min(4, pending_tasks)" (see docs/autoscale.md)`)
	f.DurationVar(&sf.interval, "autoscale-interval", 30*time.Second, "how often the formula is evaluated (at least 1s)")
	f.IntVar(&sf.minN, "min-nodes", 0, "the fewest nodes the formula may set")
	f.IntVar(&sf.maxN, "max-nodes", 0, "the most nodes the formula may set (0: no bound)")
	f.StringVar(&sf.dealloc, "deallocation", "requeue", "what scale-down does to running tasks: requeue, terminate or task_completion")
	f.DurationVar(&sf.joinTimeout, "join-timeout", 10*time.Minute, "delete a made node that has not joined by then, as a resize error")
	f.StringVar(&sf.provCommand, "provider-command", "", "exec provider: absolute path of the command run as COMMAND ARGS... create|status|delete (see examples/providers/README.md)")
	f.StringArrayVar(&sf.provArgs, "provider-arg", nil, "exec provider: argument before the operation (repeatable)")
	f.DurationVar(&sf.provTimeout, "provider-timeout", 2*time.Minute, "exec provider: time limit of one call")
	f.Float64Var(&sf.price, "price", 0, "price of a node-hour, for the cost pool show and job show report")
	f.Float64Var(&sf.spotP, "spot-price", 0, "price of a spot node-hour")
}

func (sf *scalingFlags) apply(c *cobra.Command, in *api.PoolCreate) error {
	f := c.Flags()
	s := api.Scaling{
		MinNodes: sf.minN, MaxNodes: sf.maxN, TargetSpotNodes: sf.spotNodes, Price: sf.price, SpotPrice: sf.spotP,
		JoinTimeout: api.Duration(sf.joinTimeout),
	}
	if f.Changed("deallocation") {
		s.Deallocation = sf.dealloc
	}
	if sf.formula != "" {
		s.Autoscale = &api.Autoscale{Formula: sf.formula, Interval: api.Duration(sf.interval), Enabled: true}
	} else if f.Changed("autoscale-interval") || f.Changed("min-nodes") || f.Changed("max-nodes") {
		return usageErr("--autoscale-interval, --min-nodes and --max-nodes need --autoscale")
	}
	if sf.provCommand != "" {
		s.Exec = &api.ExecProvider{Command: sf.provCommand, Args: sf.provArgs, Timeout: api.Duration(sf.provTimeout)}
		if !f.Changed("provider") {
			in.Provider = "exec"
		}
	} else if len(sf.provArgs) > 0 || f.Changed("provider-timeout") {
		return usageErr("--provider-arg and --provider-timeout need --provider-command")
	}
	in.Scaling = s
	return nil
}

func (a *app) poolAutoscaleCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "autoscale",
		Short: "Turn a pool's autoscale formula on or off, or try one without applying it",
	}
	var in api.AutoscaleChange
	var interval time.Duration
	enable := &cobra.Command{
		Use:   "enable POOL [--formula F] [--interval D]",
		Short: "Turn the pool's formula on (a new --formula or --interval replaces the old)",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			in.Interval = api.Duration(interval)
			p, err := cl.EnableAutoscale(c.Context(), args[0], in)
			if err != nil {
				return err
			}
			return a.emit(p, []string{p.ID}, func(w io.Writer) { fmt.Fprintf(w, "pool %s: autoscale on\n", p.ID) })
		},
	}
	enable.Flags().StringVar(&in.Formula, "formula", "", "the formula (default: the pool's)")
	enable.Flags().DurationVar(&interval, "interval", 0, "how often it is evaluated (default: the pool's, else 30s)")
	disable := &cobra.Command{
		Use:   "disable POOL",
		Short: "Turn the pool's formula off; its size stays until resized",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			p, err := cl.DisableAutoscale(c.Context(), args[0])
			if err != nil {
				return err
			}
			return a.emit(p, []string{p.ID}, func(w io.Writer) { fmt.Fprintf(w, "pool %s: autoscale off\n", p.ID) })
		},
	}
	var evalIn api.AutoscaleChange
	eval := &cobra.Command{
		Use:   "eval POOL [--formula F]",
		Short: "Evaluate a formula (default: the pool's) now and print every variable and the result; nothing is applied",
		Example: `  lote pool autoscale eval burst --formula 'min(4, pending_tasks)'
  lote pool autoscale eval burst --formula 'coverage(pending_tasks, "3m") < 0.7 ? 1 : avg_over(pending_tasks, "3m")'`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			run, err := cl.EvalAutoscale(c.Context(), args[0], evalIn)
			if err != nil {
				return err
			}
			if err := a.emit(run, nil, func(w io.Writer) { runTable(w, run) }); err != nil {
				return err
			}
			if run.Error != "" {
				return fmt.Errorf("formula: %s", run.Error)
			}
			return nil
		},
	}
	eval.Flags().StringVar(&evalIn.Formula, "formula", "", "the formula to try (default: the pool's)")
	c.AddCommand(enable, disable, eval)
	return c
}

// runTable prints one evaluation: each variable, then the result.
func runTable(w io.Writer, run api.AutoscaleRun) {
	names := make([]string, 0, len(run.Vars))
	for k := range run.Vars {
		names = append(names, k)
	}
	slices.Sort(names)
	fmt.Fprintln(w, "VARIABLE\tVALUE")
	for _, k := range names {
		fmt.Fprintf(w, "%s\t%g\n", k, run.Vars[k])
	}
	if run.Error != "" {
		fmt.Fprintf(w, "\nerror: %s\n", run.Error)
		return
	}
	fmt.Fprintf(w, "\ntarget_nodes\t%d\ntarget_spot_nodes\t%d\n", run.TargetNodes, run.TargetSpotNodes)
	if run.Deallocation != "" {
		fmt.Fprintf(w, "deallocation\t%s\n", run.Deallocation)
	}
}

// poolDetails prints what pool show adds to the pool's row: its sizing,
// usage, latest evaluations and resize errors.
func poolDetails(w io.Writer, p api.Pool) {
	fmt.Fprintf(w, "\ntarget\t%d node(s), %d spot\n", p.TargetNodes, p.TargetSpotNodes)
	if a := p.Autoscale; a != nil {
		state := "off"
		if a.Enabled {
			state = "on"
		}
		fmt.Fprintf(w, "autoscale\t%s, every %s, nodes %d..%s: %s\n", state, time.Duration(a.Interval), p.MinNodes, maxNodes(p.MaxNodes), a.Formula)
	}
	fmt.Fprintf(w, "usage\t%.0f node-seconds, %.0f spot node-seconds, cost %.4f\n", p.Usage.NodeSeconds, p.Usage.SpotNodeSeconds, p.Usage.Cost)
	if len(p.AutoscaleRuns) > 0 {
		fmt.Fprintln(w, "\nEVALUATED\tTARGET\tSPOT\tPENDING\tNODES\tERROR")
		for _, r := range p.AutoscaleRuns {
			fmt.Fprintf(w, "%s\t%d\t%d\t%g\t%g\t%s\n", ago(r.Time), r.TargetNodes, r.TargetSpotNodes,
				r.Vars["pending_tasks"], r.Vars["current_nodes"]+r.Vars["current_spot_nodes"], dash(r.Error))
		}
	}
	if len(p.ResizeErrors) > 0 {
		fmt.Fprintln(w, "\nRESIZE ERROR\tWHEN")
		for _, e := range p.ResizeErrors {
			fmt.Fprintf(w, "%s\t%s\n", strings.ReplaceAll(e.Message, "\n", " "), ago(e.Time))
		}
	}
}

func maxNodes(n int) string {
	if n == 0 {
		return "∞"
	}
	return fmt.Sprint(n)
}
