package cli

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/lotehq/lote/api"
)

func (a *app) nodeCmd() *cobra.Command {
	c := &cobra.Command{Use: "node", Short: "Inspect, drain and delete nodes"}
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
					fmt.Fprintf(w, "node %s: %s (drained=%t)\n", n.ID, n.State, n.Drained)
				})
			},
		}
	}
	del := a.deleteCmd("node", "Forget nodes that hold no tasks (drain them first); a deleted node's agent is refused",
		func(ctx context.Context, cl *api.Client, id string) error { return cl.DeleteNode(ctx, id) })
	preempt := &cobra.Command{
		Use:   "preempt NODE",
		Short: "Take a node back as a spot provider would: its tasks get SIGTERM, save their checkpoints and are requeued without using a retry",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			n, err := cl.PreemptNode(c.Context(), args[0])
			if err != nil {
				return err
			}
			return a.emit(n, []string{n.ID}, func(w io.Writer) { fmt.Fprintf(w, "node %s: %s\n", n.ID, n.State) })
		},
	}
	c.AddCommand(show, drain("drain", "Stop giving a node new tasks (running ones finish)", true),
		drain("undrain", "Give a drained node tasks again", false), del, preempt)
	return c
}

// deleteCmd is `lote NOUN delete ID...`: it deletes each in turn, stopping
// at the first error, and prints what it deleted.
func (a *app) deleteCmd(noun, short string, del func(ctx context.Context, cl *api.Client, id string) error) *cobra.Command {
	return &cobra.Command{
		Use:   "delete " + strings.ToUpper(noun) + "...",
		Short: short,
		Args:  cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			var done []string
			for _, id := range args {
				if err := del(c.Context(), cl, id); err != nil {
					if len(done) > 0 {
						a.emit(map[string]any{"deleted": done}, done, func(w io.Writer) { deleted(w, noun, done) })
					}
					return err
				}
				done = append(done, id)
			}
			return a.emit(map[string]any{"deleted": done}, done, func(w io.Writer) { deleted(w, noun, done) })
		},
	}
}

func deleted(w io.Writer, noun string, ids []string) {
	for _, id := range ids {
		fmt.Fprintf(w, "%s %s deleted\n", noun, id)
	}
}
