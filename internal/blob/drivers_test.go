package blob

import (
	"context"
	"strings"
	"testing"
)

// TestDriversRegistered: every URL scheme the docs promise reaches its
// driver. Without cloud credentials the cloud drivers may fail to open, but
// never with "no driver registered" — that would mean the scheme is not
// compiled in.
func TestDriversRegistered(t *testing.T) {
	t.Setenv("AZURE_STORAGE_ACCOUNT", "lotetest")
	for _, url := range []string{"mem://", "s3://bucket?region=us-east-1", "azblob://container", "gs://bucket"} {
		s, err := Open(context.Background(), url, t.TempDir())
		if err != nil && strings.Contains(err.Error(), "no driver registered") {
			t.Errorf("%s: %v", url, err)
		}
		if s != nil {
			s.Close()
		}
	}
}
