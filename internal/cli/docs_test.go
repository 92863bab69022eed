package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// TestCLIDocsCurrent fails when docs/cli.md no longer matches the command
// definitions: run `make docs`.
func TestCLIDocsCurrent(t *testing.T) {
	var want bytes.Buffer
	if err := Markdown(&want); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("..", "..", "docs", "cli.md")
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Errorf("docs/cli.md is stale: run `make docs` (go run ./internal/cli/gendocs > docs/cli.md)")
	}
}
