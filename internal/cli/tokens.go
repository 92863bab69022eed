package cli

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/lotehq/lote/api"
)

func (a *app) tokenCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "token",
		Short: "Manage API tokens (admin)",
		Long: `Manage API tokens. An admin token may do everything; a user token sees and acts on its own
jobs and data containers only. The server keeps only a hash: a token is shown once, when it is created.`,
	}
	var create api.TokenCreate
	createCmd := &cobra.Command{
		Use:   "create",
		Short: "Create a token and print it",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			tok, err := cl.CreateToken(c.Context(), create)
			if err != nil {
				return err
			}
			return a.emit(tok, []string{tok.Token}, func(w io.Writer) {
				fmt.Fprintf(w, "token for %s (%s):\t%s\n", tok.Name, tok.Role, tok.Token)
			})
		},
	}
	createCmd.Flags().StringVar(&create.Name, "name", "", "who the token is for; jobs it creates are owned by this name")
	createCmd.Flags().StringVar(&create.Role, "role", "user", "admin or user")
	createCmd.MarkFlagRequired("name")

	list := &cobra.Command{
		Use:   "list",
		Short: "List tokens (names and roles, never the tokens)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			toks, err := cl.Tokens(c.Context())
			if err != nil {
				return err
			}
			names := make([]string, len(toks))
			for i, t := range toks {
				names[i] = t.Name
			}
			return a.emit(api.TokenList{Version: api.Version, Tokens: toks}, names, func(w io.Writer) {
				fmt.Fprintln(w, "NAME\tROLE\tCREATED\tREVOKED")
				for _, t := range toks {
					revoked := "-"
					if t.RevokedAt != nil {
						revoked = t.RevokedAt.Format(time.RFC3339)
					}
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", t.Name, t.Role, t.CreatedAt.Format(time.RFC3339), revoked)
				}
			})
		},
	}
	revoke := &cobra.Command{
		Use:   "revoke NAME",
		Short: "Revoke a token: its requests and open streams stop",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			if err := cl.RevokeToken(c.Context(), args[0]); err != nil {
				return err
			}
			return a.emit(map[string]string{"revoked": args[0]}, []string{args[0]}, func(w io.Writer) {
				fmt.Fprintf(w, "token %s revoked\n", args[0])
			})
		},
	}
	c.AddCommand(createCmd, list, revoke)
	return c
}
