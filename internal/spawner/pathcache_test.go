package spawner

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// writeCommand installs an executable script named name in dir.
func writeCommand(t *testing.T, dir, name, body string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
}

func TestPathCache(t *testing.T) {
	early, late := t.TempDir(), t.TempDir()
	env := []string{"PATH=" + early + ":" + late}
	writeCommand(t, late, "cmd", "exit 0")
	var c pathCache
	now := time.Unix(1_000_000, 0)
	look := func(at time.Time) (string, bool) {
		t.Helper()
		p, cached, err := c.look("cmd", env, "/", at)
		if err != nil {
			t.Fatal(err)
		}
		return p, cached
	}
	if p, cached := look(now); p != filepath.Join(late, "cmd") || cached {
		t.Fatalf("first look: %s (cached %v), want %s looked up", p, cached, filepath.Join(late, "cmd"))
	}
	writeCommand(t, early, "cmd", "exit 0")
	if p, cached := look(now.Add(pathCacheTTL / 2)); p != filepath.Join(late, "cmd") || !cached {
		t.Errorf("within the TTL: %s (cached %v), want the remembered %s", p, cached, filepath.Join(late, "cmd"))
	}
	if p, cached := look(now.Add(pathCacheTTL)); p != filepath.Join(early, "cmd") || cached {
		t.Errorf("after the TTL: %s (cached %v), want the command installed earlier in PATH", p, cached)
	}
	c.forget("cmd", env)
	if _, cached := look(now.Add(pathCacheTTL)); cached {
		t.Error("forgotten, yet remembered")
	}

	// A relative PATH entry depends on the task's directory: never cached.
	rel := []string{"PATH=bin:" + late}
	for range 2 {
		if _, cached, err := c.look("cmd", rel, "/", now); err != nil || cached {
			t.Fatalf("relative PATH: cached %v, %v; want a fresh look", cached, err)
		}
	}
	if p, cached, err := c.look("/bin/sh", env, "/", now); p != "/bin/sh" || cached || err != nil {
		t.Errorf("a path with a slash: %s, %v, %v", p, cached, err)
	}
}

// A command removed after the spawner found it, and installed elsewhere
// in PATH, still starts within the cache's TTL: the failed exec looks again.
func TestSpawnAfterCommandMoved(t *testing.T) {
	f := newFixture(t)
	f.serve(t, ServeConfig{})
	c := f.dial(t)
	early, late := t.TempDir(), t.TempDir()
	writeCommand(t, late, "cmd", "exit 3")
	req := func(id string) SpawnRequest {
		return SpawnRequest{ID: id, Argv: []string{"cmd"}, Env: []string{"PATH=" + early + ":" + late}, Dir: f.dir}
	}
	mustSpawn(t, c, req("a"))
	if ex := waitExit(t, c, "a"); ex.ExitCode != 3 || ex.StartErr != "" {
		t.Fatalf("first spawn: %+v", ex)
	}
	if err := os.Remove(filepath.Join(late, "cmd")); err != nil {
		t.Fatal(err)
	}
	writeCommand(t, early, "cmd", "exit 4")
	mustSpawn(t, c, req("b"))
	if ex := waitExit(t, c, "b"); ex.ExitCode != 4 || ex.StartErr != "" {
		t.Fatalf("after the command moved: %+v, want exit 4 from the new place", ex)
	}
}
