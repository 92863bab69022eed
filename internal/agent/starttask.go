package agent

// The pool's start task runs once on a node as it joins, before the server
// gives the node tasks (when the pool waits for success):
//
//	welcome(StartTask) ──► attempt 1 … MaxRetries+1 ──► startup/result.json ──► StartTaskDone
//
// It runs through the spawner like a task, in startup/wd with its output in
// startup/stdout.txt and startup/stderr.txt; its inputs are staged into
// startup/wd through the node cache before each attempt, and a staging
// failure is a failed attempt. The result is kept in
// startup/result.json, so a reconnect that is asked again (the report was
// lost) answers from it instead of running the start task twice.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/lotehq/lote/internal/proto"
	"github.com/lotehq/lote/internal/spawner"
)

// startTaskState is the agent's start task bookkeeping, guarded by Agent.mu;
// its zero value is ready to use.
type startTaskState struct {
	running bool
	done    *proto.StartTaskDone // to send on the next frame
	// wait holds the sent attempts of node tasks (start, job preparation
	// and release) whose exit someone waits for, by spawn ID. Only their
	// exit, or adopt finding that the spawner lost them, ends the wait.
	wait map[string]chan spawner.Exit
}

func (a *Agent) startupDir() string { return filepath.Join(a.cfg.Dir, "startup") }

// beginStartTaskLocked answers the server's request to run the start task.
func (a *Agent) beginStartTaskLocked(st proto.StartTask) {
	if a.start.running {
		return
	}
	if b, err := os.ReadFile(filepath.Join(a.startupDir(), "result.json")); err == nil {
		var done proto.StartTaskDone
		if json.Unmarshal(b, &done) == nil {
			a.start.done = &done
			return
		}
	}
	a.start.running = true
	go a.runStartTask(st)
}

func (a *Agent) runStartTask(st proto.StartTask) {
	done := a.runNodeTask(context.Background(), "startup", a.startupDir(), "", st)
	a.mu.Lock()
	stopping := a.stopping
	a.mu.Unlock()
	if stopping && !done.OK {
		// Stopped by shutdown, not failed: the next join runs it again.
		a.mu.Lock()
		a.start.running = false
		a.mu.Unlock()
		return
	}
	saveResult(filepath.Join(a.startupDir(), "result.json"), done)
	a.mu.Lock()
	a.start.running, a.start.done = false, &done
	a.mu.Unlock()
	a.wake()
}

// saveResult keeps a node task's outcome, so it is not run again.
func saveResult(path string, done proto.StartTaskDone) {
	b, _ := json.Marshal(done)
	if err := os.WriteFile(path+".tmp", b, 0o644); err == nil {
		os.Rename(path+".tmp", path)
	}
}

// runNodeTask runs a start, job preparation or release task (job names the
// job of the last two) with its retries and says how it ended.
func (a *Agent) runNodeTask(ctx context.Context, kind, dir, job string, st proto.StartTask) proto.StartTaskDone {
	var done proto.StartTaskDone
	for attempt := 1; attempt <= st.MaxRetries+1; attempt++ {
		done = proto.StartTaskDone{Attempts: attempt}
		ex, err := a.nodeTaskAttempt(ctx, kind, dir, job, st, attempt)
		switch {
		case err != nil:
			done.ExitCode, done.Err = -1, err.Error()
		default:
			done.ExitCode, done.OK = ex.ExitCode, succeeded(ex)
			switch {
			case ex.StartErr != "":
				done.Err = ex.StartErr
			case ex.Signal != 0:
				done.Err = "killed by signal " + strconv.Itoa(ex.Signal)
			case ex.TimedOut:
				done.Err = "timed out"
			case ex.Lost:
				done.Err = "lost: the node's spawner or agent stopped while it ran"
			}
		}
		a.log.Info(kind+" task attempt ended", "attempt", attempt, "ok", done.OK, "exit_code", done.ExitCode, "err", done.Err)
		if done.OK {
			break
		}
	}
	return done
}

// nodeTaskAttempt stages the inputs of a start, job preparation or job
// release task (kind names it) into dir/wd, runs one attempt there and
// waits for its exit.
func (a *Agent) nodeTaskAttempt(ctx context.Context, kind, dir, job string, st proto.StartTask, attempt int) (spawner.Exit, error) {
	wd := filepath.Join(dir, "wd")
	if err := os.MkdirAll(wd, 0o755); err != nil {
		return spawner.Exit{}, fmt.Errorf("%s task: %w", kind, err)
	}
	if err := a.stageNodeTaskInputs(ctx, st.Inputs, wd, job); err != nil {
		return spawner.Exit{}, fmt.Errorf("staging inputs: %w", err)
	}
	// As a task's: the run-as user owns the working directory it runs in.
	a.mu.Lock()
	cred := a.credLocked()
	a.mu.Unlock()
	if cred != nil {
		if err := os.Lchown(wd, int(cred.Uid), int(cred.Gid)); err != nil {
			return spawner.Exit{}, fmt.Errorf("giving %s to the run-as user: %w", wd, err)
		}
	}
	argv := st.Command
	if st.Shell {
		argv = []string{"/bin/sh", "-c", st.Command[0]}
	}
	// No '/' in the ID: a restarted agent must not adopt it as a task.
	id := fmt.Sprintf("%s-%d-%d", kind, attempt, time.Now().UnixNano())
	ch := make(chan spawner.Exit, 1)
	a.mu.Lock()
	env := []string{
		"LOTE_POOL_ID=" + a.cfg.Pool,
		"LOTE_NODE_ID=" + a.id.NodeID,
		"LOTE_TASK_WORKING_DIR=" + wd,
		"LOTE_TASK_DIR=" + dir,
		"LOTE_NODE_SHARED_DIR=" + filepath.Join(a.cfg.Dir, "shared"),
		"LOTE_NODE_ROOT_DIR=" + a.cfg.Dir,
		"LOTE_ATTEMPT=" + strconv.Itoa(attempt),
	}
	if job != "" {
		env = append(env, "LOTE_JOB_ID="+job, "LOTE_JOB_PREP_DIR="+a.jobPrepDir(job))
	}
	for k, v := range st.Env {
		env = append(env, k+"="+v)
	}
	// Sent under the lock, as a task's spawn is, so that adopt, which ends
	// the sent spawns a restarted spawner never recorded, sees this one
	// either as sent to an earlier spawner or not at all (it then goes to
	// the new spawner once adopt is done).
	err := a.spawner().Spawn(spawner.SpawnRequest{
		ID: id, Argv: argv, Env: env, Base: true, Dir: wd,
		Stdout: filepath.Join(dir, "stdout.txt"), Stderr: filepath.Join(dir, "stderr.txt"), Credential: cred,
	})
	if err == nil {
		if a.start.wait == nil {
			a.start.wait = map[string]chan spawner.Exit{}
		}
		a.start.wait[id] = ch
	}
	a.mu.Unlock()
	if err != nil {
		return spawner.Exit{}, fmt.Errorf("starting the %s task: %w", kind, err)
	}
	return <-ch, nil
}

// startTaskExitLocked hands a start task's exit to its waiter; it reports
// whether the exit was one.
func (a *Agent) startTaskExitLocked(ex spawner.Exit) bool {
	ch := a.start.wait[ex.ID]
	if ch == nil {
		return false
	}
	delete(a.start.wait, ex.ID)
	ch <- ex
	return true
}
