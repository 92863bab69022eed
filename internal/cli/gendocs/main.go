// Command gendocs writes docs/cli.md, the command-line reference, from the
// command definitions: go run ./internal/cli/gendocs > docs/cli.md (make docs).
package main

import (
	"fmt"
	"os"

	"github.com/lotehq/lote/internal/cli"
)

func main() {
	if err := cli.Markdown(os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "gendocs:", err)
		os.Exit(1)
	}
}
