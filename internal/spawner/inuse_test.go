package spawner

import (
	"slices"
	"testing"
	"time"
)

func TestInUse(t *testing.T) {
	dir := t.TempDir()
	if ids, err := InUse(dir); err != nil || len(ids) != 0 {
		t.Fatalf("InUse without a journal = %v, %v", ids, err)
	}
	j, err := createJournal(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer j.close()
	for _, r := range []*record{
		{ID: "j/running/1", PID: 10},
		{ID: "j/exited/1", PID: 11},
		{ID: "j/acked/1", PID: 12},
	} {
		if err := j.put(r); err != nil {
			t.Fatal(err)
		}
	}
	j.put(&record{ID: "j/exited/1", Exit: &Exit{ID: "j/exited/1", EndedAt: time.Now()}})
	j.put(&record{ID: "j/acked/1", Exit: &Exit{ID: "j/acked/1", EndedAt: time.Now()}})
	if err := j.forget([]string{"j/acked/1"}); err != nil {
		t.Fatal(err)
	}
	ids, err := InUse(dir)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(ids)
	if want := []string{"j/exited/1", "j/running/1"}; !slices.Equal(ids, want) {
		t.Errorf("InUse = %v, want %v", ids, want)
	}
}
