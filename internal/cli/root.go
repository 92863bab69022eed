// Package cli is the `lote` command line: one binary whose subcommands run
// the server, the agents and `lote up`, and drive a server through the Go
// client in api/. Output follows DESIGN §4: tables by default, `-o json`
// prints exactly one JSON document with a "version" field, `-q` prints IDs
// only, errors go to stderr; exit 0 ok, 1 error or failed tasks, 2 usage or
// a request the server rejected as invalid.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/lotehq/lote/api"
)

// Version is the binary's version, set at build time.
var Version = "dev"

// app holds global flags and the streams, so commands are testable.
type app struct {
	server, token, caFile string
	output                string
	quiet                 bool
	stdout, stderr        io.Writer
	stdin                 io.Reader
}

// exitError carries an exit code out of a command.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }

// usageErr marks bad command-line input (exit 2).
func usageErr(format string, args ...any) error {
	return &exitError{2, fmt.Errorf(format, args...)}
}

// Main runs the CLI and returns the process exit code.
func Main(args []string) int {
	defer startProfile(args)()
	a := &app{stdout: os.Stdout, stderr: os.Stderr, stdin: os.Stdin}
	root := a.root()
	root.SetArgs(args)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	code := 1
	var ee *exitError
	var se *api.StatusError
	switch {
	case errors.As(err, &ee):
		code = ee.code
		if ee.err == errSilent {
			return code
		}
	case errors.As(err, &se):
		switch se.Status {
		case http.StatusBadRequest, http.StatusConflict, http.StatusRequestEntityTooLarge:
			code = 2
		}
	case isFlagError(err):
		code = 2
	}
	a.printError(err)
	return code
}

// errSilent ends a command with a code and no message (the output said it).
var errSilent = errors.New("")

func isFlagError(err error) bool {
	var fe *flagError
	return errors.As(err, &fe)
}

type flagError struct{ err error }

func (e *flagError) Error() string { return e.err.Error() }

func (a *app) printError(err error) {
	if a.output == "json" {
		body := api.ErrorBody{Code: "error", Message: err.Error()}
		var se *api.StatusError
		if errors.As(err, &se) {
			body = se.Body
		}
		json.NewEncoder(a.stderr).Encode(map[string]any{"version": api.Version, "error": body})
		return
	}
	fmt.Fprintln(a.stderr, "lote: "+err.Error())
}

func (a *app) root() *cobra.Command {
	root := &cobra.Command{
		Use:           "lote",
		Short:         "Lote runs batch and HPC work over pools of compute nodes",
		Long:          "Lote runs batch and HPC work over pools of compute nodes.\n\nStart everything on this machine with `lote up`, then submit work with `lote submit`.",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       Version,
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return &flagError{err} })
	pf := root.PersistentFlags()
	pf.StringVar(&a.server, "server", "", "server URL (env LOTE_SERVER; default from $LOTE_HOME/client.json)")
	pf.StringVar(&a.token, "token", "", "API token (env LOTE_TOKEN; default from client.json)")
	pf.StringVar(&a.caFile, "ca-file", "", "CA certificate to trust (default from client.json)")
	pf.StringVarP(&a.output, "output", "o", "table", "output format: table or json")
	pf.BoolVarP(&a.quiet, "quiet", "q", false, "print only IDs")
	root.PersistentPreRunE = func(c *cobra.Command, args []string) error {
		if a.output != "table" && a.output != "json" {
			return usageErr("--output must be table or json")
		}
		return nil
	}
	root.AddCommand(a.upCmd(), a.serverCmd(), a.agentCmd(), spawnerCmd(), simAgentsCmd(), a.poolCmd(), a.nodeCmd(),
		a.jobCmd(), a.taskCmd(), a.submitCmd(), a.eventsCmd(), a.tokenCmd(), a.dataCmd(), a.appCmd())
	return root
}

// home is $LOTE_HOME, else ~/.lote.
func home() string {
	if h := os.Getenv("LOTE_HOME"); h != "" {
		return h
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".lote")
	}
	return ".lote"
}

// client builds an API client: client.json under $LOTE_HOME, each field
// overridable by flag or environment.
func (a *app) client() (*api.Client, error) {
	var cfg api.ClientConfig
	if b, err := os.ReadFile(filepath.Join(home(), "client.json")); err == nil {
		if err := json.Unmarshal(b, &cfg); err != nil {
			return nil, fmt.Errorf("reading %s: %w", filepath.Join(home(), "client.json"), err)
		}
	}
	pick := func(flag, env, file string) string {
		if flag != "" {
			return flag
		}
		if v := os.Getenv(env); v != "" {
			return v
		}
		return file
	}
	server := pick(a.server, "LOTE_SERVER", cfg.Server)
	token := pick(a.token, "LOTE_TOKEN", cfg.Token)
	ca := pick(a.caFile, "LOTE_CA_FILE", cfg.CAFile)
	if server == "" {
		return nil, fmt.Errorf("no server: start one with `lote up`, or give --server (looked for %s)", filepath.Join(home(), "client.json"))
	}
	return api.NewClient(server, token, ca)
}
