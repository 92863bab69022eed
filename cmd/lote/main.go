// Command lote is Lote's one binary: server, agent, lote up and the CLI.
package main

import (
	"os"

	"github.com/lotehq/lote/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:]))
}
