package server_test

import (
	"os"
	"testing"

	"github.com/lotehq/lote/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }
