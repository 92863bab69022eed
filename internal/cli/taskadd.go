package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/lotehq/lote/api"
)

// Bulk adds travel in requests of at most addChunkTasks tasks or about
// addChunkBytes of JSON, well inside the server's 64 MiB body limit.
const (
	addChunkTasks = 100_000
	addChunkBytes = 32 << 20
)

func (a *app) taskAddCmd() *cobra.Command {
	var tf taskFlags
	var id, jsonFile, key string
	c := &cobra.Command{
		Use:   "add JOB (-- CMD [ARGS...] | --json FILE)",
		Short: "Add one task to a job, or many from a JSON file (an array or JSON lines of task specs)",
		Long: `Add one task to a job (the command after --), or many from --json FILE: a JSON array of task specs,
or one spec per line (JSON lines); - reads standard input. A spec is the REST API's TaskSpec:

    {"id": "t1", "command": ["render", "frame1.exr"], "env": {"K": "V"}, "requirements": {"slots": 2},
     "max_retries": 1, "max_wall_clock": "10m", "cwd": "/shared/run", "shell": false}

Flags such as --env, --slots or --cwd fill in what a spec leaves unset. Tasks are sent 100,000 per
request; with --idempotency-key K the requests use K, K.2, K.3, ... A task without an ID is named
task-N, N its position in the job.`,
		Example: `  lote task add J --id t1 -- echo hello
  lote task add J --json tasks.jsonl
  generate-specs | lote task add J --json -`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			job, argv := args[0], args[1:]
			var specs []api.TaskSpec
			var err error
			if jsonFile != "" {
				if len(argv) > 0 || id != "" {
					return usageErr("--json takes the tasks from the file: give no command and no --id")
				}
				if specs, err = a.readSpecs(jsonFile); err != nil {
					return err
				}
				def, err := tf.defaults(c)
				if err != nil {
					return err
				}
				for i := range specs {
					if err := def.fill(&specs[i]); err != nil {
						return err
					}
				}
			} else {
				spec, err := tf.build(c, argv)
				if err != nil {
					return err
				}
				spec.ID = id
				specs = []api.TaskSpec{spec}
			}
			if err := a.uploadLocalInputs(c.Context(), "--input", specInputs(specs)...); err != nil {
				return err
			}
			cl, err := a.client()
			if err != nil {
				return err
			}
			res, err := addInChunks(c.Context(), cl, job, specs, key, addChunkTasks)
			if err != nil {
				return err
			}
			ids := []string{res.FirstID}
			if res.LastID != res.FirstID {
				ids = append(ids, res.LastID)
			}
			return a.emit(res, ids, func(w io.Writer) {
				fmt.Fprintf(w, "job %s: %d task(s) added (%s)\n", res.JobID, res.Added, span(res.FirstID, res.LastID))
			})
		},
	}
	tf.register(c, &a.output)
	f := c.Flags()
	f.StringVar(&id, "id", "", "the task's ID (default task-N, N its position in the job)")
	f.StringVar(&jsonFile, "json", "", "read task specs from FILE: a JSON array or JSON lines (- for stdin)")
	addIdempotencyKey(c, &key)
	return c
}

func span(first, last string) string {
	if first == last {
		return first
	}
	return first + " … " + last
}

// addInChunks sends specs in requests of at most maxTasks tasks and about
// addChunkBytes, and sums the answers.
func addInChunks(ctx context.Context, cl *api.Client, job string, specs []api.TaskSpec, key string, maxTasks int) (api.TaskAddResult, error) {
	total := api.TaskAddResult{Version: api.Version, JobID: job}
	n := 0
	for start := 0; start < len(specs); {
		end, size := start, 0
		for end < len(specs) && end-start < maxTasks && (size < addChunkBytes || end == start) {
			b, err := json.Marshal(specs[end])
			if err != nil {
				return total, err
			}
			size += len(b) + 1
			end++
		}
		n++
		k := key
		if key != "" && n > 1 {
			k = key + "." + strconv.Itoa(n)
		}
		res, err := cl.AddTasks(ctx, job, api.TaskAdd{Tasks: specs[start:end]}, api.IdempotencyKey(k))
		if err != nil {
			if total.Added > 0 {
				return total, fmt.Errorf("after adding %d task(s) (%s): %w", total.Added, span(total.FirstID, total.LastID), err)
			}
			return total, err
		}
		if total.FirstID == "" {
			total.FirstID = res.FirstID
		}
		total.JobID, total.LastID, total.Added = res.JobID, res.LastID, total.Added+res.Added
		start = end
	}
	return total, nil
}

// readSpecs reads task specs from a JSON array or JSON lines; unknown
// fields are refused here with the position, before anything is sent.
func (a *app) readSpecs(path string) ([]api.TaskSpec, error) {
	r := a.stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, usageErr("--json: %v", err)
		}
		defer f.Close()
		r = f
	}
	br := bufio.NewReaderSize(r, 1<<16)
	first, err := peekNonSpace(br)
	if err != nil {
		return nil, usageErr("--json %s: no task specs", path)
	}
	dec := json.NewDecoder(br)
	dec.DisallowUnknownFields()
	var specs []api.TaskSpec
	if first == '[' {
		if err := dec.Decode(&specs); err != nil {
			return nil, usageErr("--json %s: %v", path, err)
		}
	} else {
		for i := 1; ; i++ {
			var s api.TaskSpec
			if err := dec.Decode(&s); err == io.EOF {
				break
			} else if err != nil {
				return nil, usageErr("--json %s: spec %d: %v", path, i, err)
			}
			specs = append(specs, s)
		}
	}
	if len(specs) == 0 {
		return nil, usageErr("--json %s: no task specs", path)
	}
	return specs, nil
}

func peekNonSpace(br *bufio.Reader) (byte, error) {
	for {
		b, err := br.Peek(1)
		if err != nil {
			return 0, err
		}
		if !bytes.ContainsRune([]byte(" \t\r\n"), rune(b[0])) {
			return b[0], nil
		}
		br.ReadByte()
	}
}

// specDefaults are the task flags given on the command line, which fill in
// what a spec from --json leaves unset.
type specDefaults struct {
	spec    api.TaskSpec
	changed func(flag string) bool
}

func (tf *taskFlags) defaults(c *cobra.Command) (specDefaults, error) {
	// build needs a command; the defaults carry none.
	s, err := tf.build(c, []string{"-"})
	if tf.shell {
		return specDefaults{}, usageErr("--shell applies to the command after --; set \"shell\": true in the specs")
	}
	return specDefaults{spec: s, changed: c.Flags().Changed}, err
}

func (d specDefaults) fill(s *api.TaskSpec) error {
	for k, v := range d.spec.Env {
		if _, ok := s.Env[k]; !ok {
			if s.Env == nil {
				s.Env = map[string]string{}
			}
			s.Env[k] = v
		}
	}
	rq, def := &s.Requirements, d.spec.Requirements
	if d.changed("slots") && rq.Slots == 0 {
		rq.Slots = def.Slots
	}
	if d.changed("cores") && rq.Cores == 0 {
		rq.Cores = def.Cores
	}
	if d.changed("memory") && rq.MemoryBytes == 0 {
		rq.MemoryBytes = def.MemoryBytes
	}
	for k, v := range def.Labels {
		if _, ok := rq.Labels[k]; !ok {
			if rq.Labels == nil {
				rq.Labels = map[string]string{}
			}
			rq.Labels[k] = v
		}
	}
	if d.changed("task-max-retries") && s.MaxRetries == nil {
		s.MaxRetries = d.spec.MaxRetries
	}
	if d.changed("task-max-wall-clock") && s.MaxWallClock == 0 {
		s.MaxWallClock = d.spec.MaxWallClock
	}
	if s.Cwd == "" {
		s.Cwd = d.spec.Cwd
	}
	s.Inputs = append(s.Inputs, d.spec.Inputs...)
	s.Outputs = append(s.Outputs, d.spec.Outputs...)
	s.Apps = append(s.Apps, d.spec.Apps...)
	var err error
	s.Cwd, err = absCwd(s.Cwd)
	return err
}

func (a *app) taskRetryCmd() *cobra.Command {
	return a.taskOpCmd("retry", "Run completed tasks again (a new attempt each, retry counts reset)",
		func(ctx context.Context, cl *api.Client, job, id string) (api.Task, error) {
			return cl.RetryTask(ctx, job, id)
		})
}

func (a *app) taskCancelCmd() *cobra.Command {
	return a.taskOpCmd("cancel", "Cancel tasks that have not completed (running ones are killed); they fail as cancelled",
		func(ctx context.Context, cl *api.Client, job, id string) (api.Task, error) {
			return cl.CancelTask(ctx, job, id)
		})
}

// taskOpCmd is `lote task VERB JOB TASK...`: op on each task in turn,
// stopping at the first error; it prints the tasks as op left them.
func (a *app) taskOpCmd(verb, short string, op func(ctx context.Context, cl *api.Client, job, id string) (api.Task, error)) *cobra.Command {
	return &cobra.Command{
		Use:   verb + " JOB TASK...",
		Short: short,
		Args:  cobra.MinimumNArgs(2),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			tasks := []api.Task{}
			for _, id := range args[1:] {
				t, err := op(c.Context(), cl, args[0], id)
				if err != nil {
					return err
				}
				tasks = append(tasks, t)
			}
			return a.emit(api.TaskList{Version: api.Version, Tasks: tasks}, idsOf(tasks, func(t api.Task) string { return t.ID }),
				func(w io.Writer) { taskTable(w, tasks) })
		},
	}
}
