package server_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/lotehq/lote/api"
	"github.com/lotehq/lote/internal/core"
	"github.com/lotehq/lote/internal/server"
	"github.com/lotehq/lote/internal/store/sqlite"
)

// startIn starts a server on dir and returns it with a client.
func startIn(t *testing.T, dir string) (*server.Server, *api.Client, error) {
	t.Helper()
	s, err := server.Start(context.Background(), server.Config{
		Dir: dir, Listen: "127.0.0.1:0", Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		return nil, nil, err
	}
	cl, err := api.NewClient(s.URL(), s.AdminToken(), "")
	if err != nil {
		t.Fatal(err)
	}
	return s, cl, nil
}

// TestDamagedStoreRefusesToStart: a truncated, emptied or corrupted database
// makes the server refuse to start with a clear error, never start empty.
func TestDamagedStoreRefusesToStart(t *testing.T) {
	damage := map[string]struct {
		spoil func(t *testing.T, db string)
		want  error
	}{
		"truncated to half":    {func(t *testing.T, db string) { truncate(t, db, size(t, db)/2) }, sqlite.ErrDamaged},
		"truncated to nothing": {func(t *testing.T, db string) { truncate(t, db, 0) }, server.ErrWrongStore},
		"garbage in the middle": {func(t *testing.T, db string) {
			f, err := os.OpenFile(db, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			junk := make([]byte, 4096)
			for i := range junk {
				junk[i] = 0xA5
			}
			if _, err := f.WriteAt(junk, 4096); err != nil {
				t.Fatal(err)
			}
		}, sqlite.ErrDamaged},
	}
	for name, tt := range damage {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			s, cl, err := startIn(t, dir)
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			if _, err := cl.CreatePool(ctx, api.PoolCreate{ID: "p"}); err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 200; i++ { // enough rows for several pages
				if _, err := cl.Submit(ctx, api.Submit{Job: api.JobCreate{PoolID: "p", Tags: map[string]string{"i": "x"}},
					Tasks: api.TaskAdd{Array: "1-10", Template: &api.TaskSpec{Command: []string{"true"}}}}); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			db := filepath.Join(dir, "lote.db")
			os.Remove(db + "-wal")
			os.Remove(db + "-shm")
			tt.spoil(t, db)
			s, _, err = startIn(t, dir)
			if err == nil {
				s.Close()
				t.Fatal("the server started on a damaged store")
			}
			if !errors.Is(err, tt.want) {
				t.Errorf("error = %v, want %v", err, tt.want)
			}
		})
	}
}

func size(t *testing.T, path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

func truncate(t *testing.T, path string, n int64) {
	if err := os.Truncate(path, n); err != nil {
		t.Fatal(err)
	}
}

// TestDeletedJobLeavesNoTaskRows: deleting a job removes its task rows,
// found by their numbers, and leaves those of a job whose tasks were
// numbered among them.
func TestDeletedJobLeavesNoTaskRows(t *testing.T) {
	dir := t.TempDir()
	s, cl, err := startIn(t, dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := cl.CreatePool(ctx, api.PoolCreate{ID: "p"}); err != nil {
		t.Fatal(err)
	}
	for _, job := range []string{"gone", "kept"} {
		if _, err := cl.Submit(ctx, api.Submit{Job: api.JobCreate{ID: job, PoolID: "p"},
			Tasks: api.TaskAdd{Array: "1-10", Template: &api.TaskSpec{Command: []string{"true"}}}}); err != nil {
			t.Fatal(err)
		}
	}
	// Cancelling a task gives it a row; alternate so the numbers interleave.
	for _, task := range []string{"2", "5", "9"} {
		for _, job := range []string{"gone", "kept"} {
			if _, err := cl.CancelTask(ctx, job, task); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := cl.DeleteJob(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	st, err := sqlite.Open(ctx, filepath.Join(dir, "lote.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var rows []string
	err = st.LoadTasks(ctx, func(recs []core.TaskRecord) error {
		for _, r := range recs {
			rows = append(rows, r.JobID+"/"+r.ID)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(rows)
	if want := []string{"kept/2", "kept/5", "kept/9"}; !slices.Equal(rows, want) {
		t.Errorf("task rows after the delete: %v, want %v", rows, want)
	}
}
