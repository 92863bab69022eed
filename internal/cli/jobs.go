package cli

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/lotehq/lote/api"
	"github.com/lotehq/lote/internal/apppkg"
)

func (a *app) jobCmd() *cobra.Command {
	c := &cobra.Command{Use: "job", Short: "Create, inspect, wait for, retry and end jobs"}
	c.AddCommand(a.jobCreateCmd(), a.jobListCmd(), a.jobShowCmd(), a.jobWaitCmd(), a.jobTerminateCmd(),
		a.jobDeleteCmd(), a.jobRetryCmd(), a.jobSetPriorityCmd())
	return c
}

// jobFlags are the job options shared by `job create` and `submit`.
type jobFlags struct {
	in         api.JobCreate
	maxRetries int
	tags, env  []string
	onDone     string
	wall       time.Duration
	prep       string
	prepTries  int
	prepIn     []string
	release    string
	releaseIn  []string
}

func (jf *jobFlags) register(c *cobra.Command, withEnv bool) {
	f := c.Flags()
	f.StringVar(&jf.in.PoolID, "pool", "local", "pool the job runs on; POOL,BURST,... lets tasks go to a later pool while the earlier ones are full")
	f.IntVar(&jf.in.Priority, "priority", 0, "priority from -1000 to 1000 (higher runs first)")
	f.IntVar(&jf.maxRetries, "max-retries", 0, "retries after a task fails (-1 = unlimited)")
	f.DurationVar(&jf.wall, "max-wall-clock", 0, "kill a task's attempt after this long (e.g. 10m)")
	f.StringVar(&jf.onDone, "on-all-tasks-complete", "no_action", "no_action or terminate_job")
	f.StringArrayVar(&jf.tags, "tag", nil, "job tag K=V (repeatable)")
	f.StringVar(&jf.prep, "prep-task", "", "shell command line run once on each node before the job's first task there; a node where it fails is barred from the job")
	f.IntVar(&jf.prepTries, "prep-task-retries", 0, "retries of a failing job preparation task on a node")
	f.StringArrayVar(&jf.prepIn, "prep-task-input", nil, "stage SRC into the preparation task's working dir as PATH before it runs: SRC=PATH[:MODE] as for --input; only {job} is expanded (repeatable)")
	f.StringVar(&jf.release, "release-task", "", "shell command line run on each node that ran the job's tasks when the job ends")
	f.StringArrayVar(&jf.releaseIn, "release-task-input", nil, "stage SRC into the release task's working dir as PATH before it runs: SRC=PATH[:MODE] as for --input; only {job} is expanded (repeatable)")
	if withEnv {
		f.StringArrayVar(&jf.env, "job-env", nil, "environment K=V for every task of the job (repeatable)")
	}
}

func (jf *jobFlags) build(c *cobra.Command) (api.JobCreate, error) {
	in := jf.in
	pools := strings.Split(in.PoolID, ",")
	in.PoolID, in.BurstPoolIDs = pools[0], pools[1:]
	var err error
	if in.Tags, err = parseKV("--tag", jf.tags); err != nil {
		return in, err
	}
	if in.Env, err = parseKV("--job-env", jf.env); err != nil {
		return in, err
	}
	if jf.prep != "" {
		in.PrepTask = &api.StartTask{Command: []string{jf.prep}, Shell: true, MaxRetries: jf.prepTries}
		if in.PrepTask.Inputs, err = parseInputs("--prep-task-input", jf.prepIn); err != nil {
			return in, err
		}
	} else if len(jf.prepIn) > 0 {
		return in, usageErr("--prep-task-input needs --prep-task")
	}
	if jf.release != "" {
		in.ReleaseTask = &api.StartTask{Command: []string{jf.release}, Shell: true}
		if in.ReleaseTask.Inputs, err = parseInputs("--release-task-input", jf.releaseIn); err != nil {
			return in, err
		}
	} else if len(jf.releaseIn) > 0 {
		return in, usageErr("--release-task-input needs --release-task")
	}
	if c.Flags().Changed("max-retries") {
		in.MaxRetries = &jf.maxRetries
	}
	if jf.wall < 0 {
		return in, usageErr("--max-wall-clock must not be negative")
	}
	in.MaxWallClock = api.Duration(jf.wall)
	in.OnAllTasksComplete = jf.onDone
	return in, nil
}

// uploadJobTaskInputs uploads the local inputs of a job's preparation and
// release tasks, as uploadLocalInputs does for tasks.
func (a *app) uploadJobTaskInputs(ctx context.Context, in *api.JobCreate) error {
	if in.PrepTask != nil {
		if err := a.uploadLocalInputs(ctx, "--prep-task-input", in.PrepTask.Inputs); err != nil {
			return err
		}
	}
	if in.ReleaseTask != nil {
		return a.uploadLocalInputs(ctx, "--release-task-input", in.ReleaseTask.Inputs)
	}
	return nil
}

func (a *app) jobCreateCmd() *cobra.Command {
	var jf jobFlags
	var key string
	c := &cobra.Command{
		Use:   "create [JOB]",
		Short: "Create a job (an ID is generated when none is given)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			in, err := jf.build(c)
			if err != nil {
				return err
			}
			if err := a.uploadJobTaskInputs(c.Context(), &in); err != nil {
				return err
			}
			if len(args) == 1 {
				in.ID = args[0]
			}
			cl, err := a.client()
			if err != nil {
				return err
			}
			j, err := cl.CreateJob(c.Context(), in, api.IdempotencyKey(key))
			if err != nil {
				return err
			}
			return a.emit(j, []string{j.ID}, func(w io.Writer) { fmt.Fprintln(w, j.ID) })
		},
	}
	jf.register(c, true)
	addIdempotencyKey(c, &key)
	return c
}

func jobTable(w io.Writer, jobs []api.Job) {
	fmt.Fprintln(w, "JOB\tPOOL\tSTATE\tPRIO\tACTIVE\tRUNNING\tSUCCEEDED\tFAILED\tTOTAL\tWAITING")
	for _, j := range jobs {
		c := j.TaskCounts
		fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%s\n", j.ID, j.PoolID, j.State, j.Priority,
			c.Active+c.Assigned, c.Running+c.Preparing, c.Succeeded, c.Failed, c.Total(), dash(j.PendingReason))
	}
}

func (a *app) jobListCmd() *cobra.Command {
	var state string
	var tags []string
	var watch bool
	c := &cobra.Command{
		Use:   "list",
		Short: "List jobs, optionally in one state and carrying tags (status of a whole run in one call)",
		Example: `  lote job list --state active
  lote job list --tag run=abc -o json     # every job of run abc with its state and task counts`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			tagMap, err := parseKV("--tag", tags)
			if err != nil {
				return err
			}
			cl, err := a.client()
			if err != nil {
				return err
			}
			return a.list(c.Context(), watch, func(ctx context.Context) (view, error) {
				jobs, err := cl.Jobs(ctx, state, tagMap)
				return view{doc: api.JobList{Version: api.Version, Jobs: jobs}, ids: idsOf(jobs, func(j api.Job) string { return j.ID }),
					table: func(w io.Writer) { jobTable(w, jobs) }}, err
			})
		},
	}
	c.Flags().StringVar(&state, "state", "", "only jobs in this state (active, terminating, completed)")
	c.Flags().StringArrayVar(&tags, "tag", nil, "only jobs carrying tag K=V (repeatable: all must match)")
	addWatch(c, &watch)
	return c
}

func (a *app) jobShowCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "show JOB",
		Short: "Show a job and its task counts",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			j, err := cl.Job(c.Context(), args[0])
			if err != nil {
				return err
			}
			return a.emit(j, []string{j.ID}, func(w io.Writer) {
				jobTable(w, []api.Job{j})
				if len(j.BurstPoolIDs) > 0 {
					fmt.Fprintf(w, "\nburst pools\t%s\n", strings.Join(j.BurstPoolIDs, ", "))
				}
				fmt.Fprintf(w, "\nusage\t%.1f slot-seconds, %.1f node-seconds, cost %.4f\n", j.SlotSeconds, j.NodeSeconds, j.Cost)
			})
		},
	}
}

func (a *app) jobWaitCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "wait JOB",
		Short: "Wait until every task the job has now has completed; exit 1 if any failed",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			j, err := cl.Job(c.Context(), args[0])
			if err != nil {
				return err
			}
			return a.wait(c.Context(), cl, j.ID, j.TaskGroups)
		},
	}
}

// wait long-polls the job until its first `groups` task groups completed,
// drawing a progress bar on a terminal, then prints the job; exit 1 when any
// task failed.
func (a *app) wait(ctx context.Context, cl *api.Client, jobID string, groups int) error {
	p := newProgress(a.stderr)
	var j api.Job
	for {
		var err error
		j, err = cl.WaitJob(ctx, jobID, groups, time.Second)
		if err != nil {
			p.done()
			return err
		}
		p.update(j.TaskCounts, j.TaskCounts.Total())
		if j.Done {
			break
		}
	}
	p.done()
	if err := a.emit(j, []string{j.ID}, func(w io.Writer) { jobTable(w, []api.Job{j}) }); err != nil {
		return err
	}
	if j.TaskCounts.Failed > 0 {
		return &exitError{1, errSilent}
	}
	return nil
}

// taskFlags are the per-task options of `submit` (and `task add`).
type taskFlags struct {
	shell      bool
	env        []string
	labels     []string
	slots      int
	cores      int
	memory     string
	maxRetries int
	wall       time.Duration
	cwd        string
	callerEnv  bool
	inputs     []string
	outputs    []string
	apps       []string
}

// register adds the task flags. --output names output files here, so the
// global --output (format) keeps its -o shorthand under the name --format.
func (tf *taskFlags) register(c *cobra.Command, format *string) {
	f := c.Flags()
	f.StringVarP(format, "format", "o", "table", "output format: table or json (-o; --output names output files here)")
	f.BoolVar(&tf.shell, "shell", false, "run the one argument after -- with /bin/sh -c")
	f.StringArrayVar(&tf.env, "env", nil, "task environment K=V (repeatable)")
	f.StringArrayVar(&tf.labels, "label", nil, "run only on nodes with label K=V (repeatable)")
	f.IntVar(&tf.slots, "slots", 1, "slots each task takes")
	f.IntVar(&tf.cores, "cores", 0, "cores each task needs")
	f.StringVar(&tf.memory, "memory", "", "memory each task needs (e.g. 512M, 2G)")
	f.StringVar(&tf.cwd, "cwd", "", "run in this directory on the node instead of a fresh task directory per attempt (relative: to the current directory here)")
	f.BoolVar(&tf.callerEnv, "env-from-caller", false, "give the tasks this shell's environment (except LOTE_*, PWD, OLDPWD, SHLVL, _); --env wins")
	f.IntVar(&tf.maxRetries, "task-max-retries", 0, "retries for these tasks (default: the job's)")
	f.DurationVar(&tf.wall, "task-max-wall-clock", 0, "wall clock limit for these tasks (default: the job's)")
	f.StringArrayVar(&tf.inputs, "input", nil, "stage SRC into the working dir as PATH before the task runs: SRC=PATH[:MODE], SRC data://C/P, data://C/prefix/, http(s)://… or a local file (uploaded first); placeholders expanded (repeatable)")
	f.StringArrayVar(&tf.apps, "app", nil, "install application package NAME[@VERSION] on the node first and set LOTE_APP_<NAME> to its directory; no version = the newest uploaded (repeatable)")
	f.StringArrayVar(&tf.outputs, "output", nil, "upload files matching PATTERN (globs, ** too) to DEST after the task: PATTERN=DEST[@success|@failure|@always] (repeatable)")
}

func (tf *taskFlags) build(c *cobra.Command, argv []string) (api.TaskSpec, error) {
	s := api.TaskSpec{Command: argv, Shell: tf.shell, MaxWallClock: api.Duration(tf.wall)}
	if len(argv) == 0 {
		return s, usageErr("give the command after --, e.g. lote submit -- echo hello")
	}
	if tf.shell && len(argv) != 1 {
		return s, usageErr("--shell takes exactly one command line after --, quoted")
	}
	var err error
	if s.Env, err = parseKV("--env", tf.env); err != nil {
		return s, err
	}
	if tf.callerEnv {
		s.Env = withCallerEnv(s.Env, os.Environ())
	}
	if s.Cwd, err = absCwd(tf.cwd); err != nil {
		return s, err
	}
	if s.Requirements.Labels, err = parseKV("--label", tf.labels); err != nil {
		return s, err
	}
	s.Requirements.Slots, s.Requirements.Cores = tf.slots, tf.cores
	if tf.memory != "" {
		if s.Requirements.MemoryBytes, err = parseSize(tf.memory); err != nil {
			return s, usageErr("--memory: %v", err)
		}
	}
	if c.Flags().Changed("task-max-retries") {
		s.MaxRetries = &tf.maxRetries
	}
	if s.Inputs, err = parseInputs("--input", tf.inputs); err != nil {
		return s, err
	}
	if s.Outputs, err = parseOutputs(tf.outputs); err != nil {
		return s, err
	}
	for _, ap := range tf.apps {
		if _, err := apppkg.Parse(ap); err != nil {
			return s, usageErr("--app: %v", err)
		}
	}
	s.Apps = tf.apps
	return s, nil
}

// parseSize reads 512, 512K, 2M, 1.5G (powers of 1024).
func parseSize(s string) (int64, error) {
	mult := int64(1)
	t := strings.TrimSuffix(strings.TrimSuffix(strings.ToUpper(s), "B"), "I")
	if n := len(t); n > 0 {
		switch t[n-1] {
		case 'K':
			mult, t = 1<<10, t[:n-1]
		case 'M':
			mult, t = 1<<20, t[:n-1]
		case 'G':
			mult, t = 1<<30, t[:n-1]
		case 'T':
			mult, t = 1<<40, t[:n-1]
		}
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || v < 0 || v*float64(mult) > 1<<62 {
		return 0, fmt.Errorf("bad size %q", s)
	}
	return int64(v * float64(mult)), nil
}

func (a *app) submitCmd() *cobra.Command {
	var jf jobFlags
	var tf taskFlags
	var jobID, array, eachLine, idPrefix, key string
	var wait bool
	c := &cobra.Command{
		Use:   "submit [flags] -- CMD [ARGS...]",
		Short: "Submit one task, an array (--array) or one task per line (--each-line)",
		Long: `Submit tasks. Without --job a new job is created and its ID printed.

The command after -- runs as argv, without a shell; with --shell the one argument after -- is run by
/bin/sh -c. Placeholders {index} {line} {job} {task} {attempt} are expanded in arguments ({{ and }} are
literal braces); the same values are in the environment as LOTE_TASK_INDEX, LOTE_TASK_LINE, ...

Arrays use Slurm's grammar: 1-100, 1-100:2, 1,5,9, 1-1000%50 (at most 50 at once). Task IDs are the
indices. --each-line FILE makes one task per line, numbered from 0.`,
		Example: `  lote submit --array 1-1000 --wait -- sh -c 'echo $((LOTE_TASK_INDEX*2))'
  lote submit --each-line inputs.txt -- convert {line} {line}.png`,
		RunE: func(c *cobra.Command, args []string) error {
			if array != "" && eachLine != "" {
				return usageErr("give --array or --each-line, not both")
			}
			tpl, err := tf.build(c, args)
			if err != nil {
				return err
			}
			if err := a.uploadLocalInputs(c.Context(), "--input", tpl.Inputs); err != nil {
				return err
			}
			jc, err := jf.build(c)
			if err != nil {
				return err
			}
			if err := a.uploadJobTaskInputs(c.Context(), &jc); err != nil {
				return err
			}
			add := api.TaskAdd{IDPrefix: idPrefix}
			switch {
			case array != "":
				add.Array, add.Template = array, &tpl
			case eachLine != "":
				lines, err := readLines(eachLine, a.stdin)
				if err != nil {
					return err
				}
				add.Lines, add.Template = lines, &tpl
			default:
				add.Tasks = []api.TaskSpec{tpl}
			}
			cl, err := a.client()
			if err != nil {
				return err
			}
			jc.ID = jobID
			res, err := a.submitTo(c.Context(), cl, jc, add, key)
			if err != nil {
				return err
			}
			if !wait {
				return a.emit(res, []string{res.JobID}, func(w io.Writer) { fmt.Fprintln(w, res.JobID) })
			}
			if a.output != "json" && !a.quiet {
				fmt.Fprintf(a.stderr, "job %s: %d task(s) submitted\n", res.JobID, res.Added)
			}
			j, err := cl.Job(c.Context(), res.JobID)
			if err != nil {
				return err
			}
			return a.wait(c.Context(), cl, res.JobID, j.TaskGroups)
		},
	}
	jf.register(c, true)
	tf.register(c, &a.output)
	f := c.Flags()
	f.StringVar(&jobID, "job", "", "add to this job (created when it does not exist)")
	f.StringVar(&array, "array", "", "array spec, e.g. 1-100, 1-100:2, 1,5,9, 1-1000%50")
	f.StringVar(&eachLine, "each-line", "", "one task per line of FILE (- for stdin)")
	f.StringVar(&idPrefix, "id-prefix", "", "prefix for the generated task IDs")
	f.BoolVar(&wait, "wait", false, "wait for the tasks to complete; exit 1 if any failed")
	addIdempotencyKey(c, &key)
	return c
}

// submitTo adds to an existing job, or creates the job with the tasks in one
// atomic request. With an idempotency key it tries the create first: the
// server answers a repeat with the first result, whichever of the two
// requests that was, so a retried submit never adds its tasks twice.
func (a *app) submitTo(ctx context.Context, cl *api.Client, jc api.JobCreate, add api.TaskAdd, key string) (api.TaskAddResult, error) {
	create := api.Submit{Job: jc, Tasks: add}
	existing := api.Submit{Job: api.JobCreate{ID: jc.ID}, Existing: true, Tasks: add}
	if key != "" {
		res, err := cl.Submit(ctx, create, api.IdempotencyKey(key))
		if jc.ID == "" || !api.IsStatus(err, http.StatusConflict) {
			return res, err
		}
		// The job exists, or the key went with the add to it: add (or replay).
		return cl.Submit(ctx, existing, api.IdempotencyKey(key))
	}
	if jc.ID != "" {
		res, err := cl.Submit(ctx, existing)
		if err == nil || !api.IsStatus(err, http.StatusNotFound) {
			return res, err
		}
	}
	return cl.Submit(ctx, create)
}

func readLines(path string, stdin io.Reader) ([]string, error) {
	r := stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, usageErr("--each-line: %v", err)
		}
		defer f.Close()
		r = f
	}
	var lines []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 64<<10)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if err := sc.Err(); err != nil {
		return nil, usageErr("--each-line: %v", err)
	}
	if len(lines) == 0 {
		return nil, usageErr("--each-line: %s has no lines", path)
	}
	return lines, nil
}
