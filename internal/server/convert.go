package server

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lotehq/lote/api"
	"github.com/lotehq/lote/internal/apppkg"
	"github.com/lotehq/lote/internal/arrayspec"
	"github.com/lotehq/lote/internal/blob"
	"github.com/lotehq/lote/internal/core"
	"github.com/lotehq/lote/internal/placeholder"
)

// Wire ↔ core conversion. Validation of request fields happens here, where
// the wire field names are known, so every 400 names the field at fault.

const (
	maxExplicitTasks = 1_000_000
	maxArgBytes      = 128 << 10
	maxLineBytes     = 64 << 10
	maxSlots         = 1 << 16
	maxTargetNodes   = 100_000
	maxKeyLen        = 128 // tag and label names
	maxValueLen      = 256 // tag and label values
	maxPairs         = 64  // tags or labels on one object
	maxEnvName       = 256 // environment variable names
	maxEnvValue      = 128 << 10
	maxEnvVars       = 4096 // variables in one environment
	maxPathLen       = 4096 // cwd
	maxIDPrefix      = 32
)

// maxTaskRetries bounds a finite max_retries (-1 is unlimited), so no count
// can come near an integer's range.
const maxTaskRetries = 1_000_000

// maxEnvBytes bounds one environment's NAME=VALUE strings: Linux's execve
// refuses arguments and environment over 2 MiB together (E2BIG), and a
// task's environment is its job's and its own merged.
const maxEnvBytes = 1 << 20

func lower(s string) string { return strings.ToLower(s) }

func jobSpec(in api.JobCreate, owner string) (core.JobSpec, error) {
	s := core.JobSpec{
		ID: in.ID, PoolID: in.PoolID, BurstPoolIDs: in.BurstPoolIDs, Priority: in.Priority,
		MaxWallClock: time.Duration(in.MaxWallClock), Owner: owner, Tags: in.Tags, Env: in.Env,
	}
	if in.ID != "" && !core.ValidID(in.ID) {
		return s, badID("id")
	}
	if in.PoolID == "" {
		return s, invalid("pool_id", "required")
	}
	if !core.ValidID(in.PoolID) {
		return s, badID("pool_id")
	}
	if len(in.BurstPoolIDs) >= core.MaxPoolsPerJob {
		return s, invalid("burst_pool_ids", "at most %d pools per job, pool_id included", core.MaxPoolsPerJob)
	}
	for i, id := range in.BurstPoolIDs {
		field := fmt.Sprintf("burst_pool_ids[%d]", i)
		if !core.ValidID(id) {
			return s, badID(field)
		}
		if lowerEq(id, in.PoolID) || slices.ContainsFunc(in.BurstPoolIDs[:i], func(o string) bool { return lowerEq(o, id) }) {
			return s, invalid(field, "pool %q is listed twice", id)
		}
	}
	if in.Priority < -core.MaxPriority || in.Priority > core.MaxPriority {
		return s, invalid("priority", "must be between -%d and %d", core.MaxPriority, core.MaxPriority)
	}
	if in.MaxRetries != nil {
		if *in.MaxRetries < -1 || *in.MaxRetries > maxTaskRetries {
			return s, invalid("max_retries", "must be -1 (unlimited) or 0 to %d", maxTaskRetries)
		}
		s.MaxRetries = *in.MaxRetries
	}
	switch in.OnAllTasksComplete {
	case "", "no_action":
	case "terminate_job":
		s.TerminateWhenDone = true
	default:
		return s, invalid("on_all_tasks_complete", "must be no_action or terminate_job")
	}
	if err := checkEnv("env", in.Env); err != nil {
		return s, err
	}
	if err := checkPairs("tags", in.Tags); err != nil {
		return s, err
	}
	var err error
	if s.PrepTask, err = startTask(in.PrepTask, "prep_task", placeholder.Job); err != nil {
		return s, err
	}
	if s.ReleaseTask, err = startTask(in.ReleaseTask, "release_task", placeholder.Job); err != nil {
		return s, err
	}
	return s, nil
}

func badID(field string) error {
	return invalid(field, "must be 1-64 characters of letters, digits, '_' and '-'")
}

// validKey reports whether k can name a tag or label: 1-128 characters of
// letters, digits and . _ - / : (so "run=abc" in a query is unambiguous).
func validKey(k string) bool {
	if k == "" || len(k) > maxKeyLen {
		return false
	}
	for i := 0; i < len(k); i++ {
		b := k[i]
		if !(b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || strings.IndexByte("._-/:", b) >= 0) {
			return false
		}
	}
	return true
}

// checkPairs validates tags or labels: at most 64, names by validKey,
// values up to 256 bytes without control characters.
func checkPairs(field string, m map[string]string) error {
	if len(m) > maxPairs {
		return invalid(field, "at most %d entries", maxPairs)
	}
	for k, v := range m {
		if !validKey(k) {
			return invalid(field, "bad name %q: 1-%d characters of letters, digits and . _ - / :", clip(k), maxKeyLen)
		}
		if len(v) > maxValueLen || hasControl(v) {
			return invalid(field+"."+k, "value must be at most %d bytes without control characters", maxValueLen)
		}
	}
	return nil
}

func hasControl(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return true
		}
	}
	return false
}

// clip shortens a value quoted in an error message.
func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

// checkEnv validates an environment: names without '=', NUL, blanks or
// control characters; values without NUL; bounded in count and size.
func checkEnv(field string, env map[string]string) error {
	if len(env) > maxEnvVars {
		return invalid(field, "at most %d variables", maxEnvVars)
	}
	total := 0
	for k, v := range env {
		total += len(k) + len(v) + 2 // NAME=VALUE\0
	}
	if total > maxEnvBytes {
		return invalid(field, "%d bytes of NAME=VALUE strings; at most %d", total, maxEnvBytes)
	}
	for k, v := range env {
		if k == "" || len(k) > maxEnvName || strings.ContainsAny(k, "= \t") || hasControl(k) {
			return invalid(field, "bad variable name %q", clip(k))
		}
		if len(v) > maxEnvValue {
			return invalid(field+"."+k, "value longer than %d bytes", maxEnvValue)
		}
		if strings.ContainsRune(v, 0) {
			return invalid(field+"."+k, "value contains a NUL byte")
		}
	}
	return nil
}

// poolSpec validates a pool create request.
func poolSpec(in api.PoolCreate) (core.PoolSpec, error) {
	var s core.PoolSpec
	if !core.ValidID(in.ID) {
		return s, badID("id")
	}
	fill, ok := core.ParseFillPolicy(in.FillPolicy)
	if !ok {
		return s, invalid("fill_policy", "must be spread or pack")
	}
	switch in.Provider {
	case "", "static", "local", "exec":
	default:
		return s, invalid("provider", "must be static, local or exec")
	}
	scaling, err := scalingSpec(in.Scaling, orDefault(in.Provider, "static"))
	if err != nil {
		return s, err
	}
	if in.SlotsPerNode < 0 || in.SlotsPerNode > maxSlots {
		return s, invalid("slots_per_node", "must be between 0 (the node's CPUs) and %d", maxSlots)
	}
	prefill := -1
	if in.Prefill != nil {
		if *in.Prefill < 0 || *in.Prefill > maxSlots {
			return s, invalid("prefill", "must be between 0 and %d", maxSlots)
		}
		prefill = *in.Prefill
	}
	if in.TargetNodes < 0 || in.TargetNodes > maxTargetNodes {
		return s, invalid("target_nodes", "must be between 0 and %d", maxTargetNodes)
	}
	if err := checkPairs("labels", in.Labels); err != nil {
		return s, err
	}
	st, err := startTask(in.StartTask, "start_task")
	if err != nil {
		return s, err
	}
	// createPool has already pinned every package to a version.
	var apps []string
	for i, a := range in.Apps {
		r, err := apppkg.Parse(a)
		if err == nil && r.Version == "" {
			err = errors.New("no version resolved")
		}
		if err != nil {
			return s, invalid(fmt.Sprintf("apps[%d]", i), "%v", err)
		}
		apps = append(apps, r.String())
	}
	return core.PoolSpec{
		ID: in.ID, Provider: orDefault(in.Provider, "static"), SlotsPerNode: in.SlotsPerNode, Fill: fill,
		Prefill: prefill, TargetNodes: in.TargetNodes, Labels: in.Labels, AllowRoot: in.AllowRoot,
		StartTask: st, Apps: apps, Scaling: scaling,
	}, nil
}

// maxFormula bounds an autoscale formula's length.
const maxFormula = 4096

// scalingSpec reads a pool's autoscale, bounds, provider command and prices.
// The server creates and deletes the nodes of local and exec pools it
// creates; a static pool's formula only sets its target.
func scalingSpec(in api.Scaling, provider string) (core.Scaling, error) {
	s := core.Scaling{
		Managed: provider != "static", MinNodes: in.MinNodes, MaxNodes: in.MaxNodes, TargetSpotNodes: in.TargetSpotNodes,
		JoinTimeout: time.Duration(in.JoinTimeout), Price: in.Price, SpotPrice: in.SpotPrice,
	}
	d, ok := core.ParseDeallocation(in.Deallocation)
	if !ok {
		return s, invalid("deallocation", "must be requeue, terminate or task_completion")
	}
	s.Deallocation = d
	if a := in.Autoscale; a != nil {
		if len(a.Formula) > maxFormula {
			return s, invalid("autoscale.formula", "longer than %d bytes", maxFormula)
		}
		if strings.TrimSpace(a.Formula) == "" {
			return s, invalid("autoscale.formula", "required")
		}
		s.Autoscale = &core.Autoscale{Formula: a.Formula, Interval: time.Duration(a.Interval), Enabled: true}
	}
	switch {
	case provider == "exec" && (in.Exec == nil || in.Exec.Command == ""):
		return s, invalid("exec.command", "required for provider exec")
	case provider != "exec" && in.Exec != nil:
		return s, invalid("exec", "only for provider exec")
	case in.Exec != nil:
		if hasControl(in.Exec.Command) || !filepath.IsAbs(in.Exec.Command) {
			return s, invalid("exec.command", "must be an absolute path")
		}
		if in.Exec.Timeout < 0 {
			return s, invalid("exec.timeout", "must not be negative")
		}
		s.Exec = &core.ExecProvider{Command: in.Exec.Command, Args: in.Exec.Args, Timeout: time.Duration(in.Exec.Timeout)}
	}
	return s, nil
}

// maxStartTaskRetries bounds a start task's retries: each one delays the
// node's first task.
const maxStartTaskRetries = 100

// startTask validates a pool's start task or a job's preparation or
// release task (field names which); wait_for_success defaults to true, as
// in Azure Batch. Its inputs may use only the placeholders in vars: there
// is no task, index or attempt to expand the others for.
func startTask(in *api.StartTask, field string, vars ...string) (*core.StartTask, error) {
	if in == nil {
		return nil, nil
	}
	if len(in.Command) == 0 {
		return nil, invalid(field+".command", "required: the program and its arguments")
	}
	if in.Shell && len(in.Command) != 1 {
		return nil, invalid(field+".command", "with shell, give exactly one command line")
	}
	for i, a := range in.Command {
		if len(a) > maxArgBytes || strings.ContainsRune(a, 0) {
			return nil, invalid(fmt.Sprintf("%s.command[%d]", field, i), "longer than %d bytes or contains a NUL byte", maxArgBytes)
		}
	}
	if err := checkEnv(field+".env", in.Env); err != nil {
		return nil, err
	}
	if in.MaxRetries < 0 || in.MaxRetries > maxStartTaskRetries {
		return nil, invalid(field+".max_retries", "must be between 0 and %d", maxStartTaskRetries)
	}
	inputs, err := inputFiles(in.Inputs, field+".")
	if err != nil {
		return nil, err
	}
	for i, f := range in.Inputs {
		for _, v := range [...]struct{ name, s string }{{"source", f.Source}, {"path", f.Path}} {
			used, _ := placeholder.Uses(v.s)
			for _, u := range used {
				if !slices.Contains(vars, u) {
					return nil, invalid(fmt.Sprintf("%s.inputs[%d].%s", field, i, v.name),
						"{%s} has no value here (a start task has no placeholders; a job's preparation and release tasks have {job})", u)
				}
			}
		}
	}
	wait := in.WaitForSuccess == nil || *in.WaitForSuccess
	return &core.StartTask{Command: in.Command, Shell: in.Shell, Env: in.Env, MaxRetries: in.MaxRetries, WaitForSuccess: wait, Inputs: inputs}, nil
}

// template validates one task spec; field prefixes the wire path.
func template(in *api.TaskSpec, jobRetries int, field string) (core.Template, error) {
	t := core.Template{
		Command: in.Command, Shell: in.Shell, Env: in.Env, MaxRetries: jobRetries,
		MaxWallClock: time.Duration(in.MaxWallClock), Cwd: in.Cwd,
	}
	if len(in.Command) == 0 {
		return t, invalid(field+"command", "required: the program and its arguments")
	}
	if in.Shell && len(in.Command) != 1 {
		return t, invalid(field+"command", "with shell, give exactly one command line")
	}
	for i, a := range in.Command {
		f := fmt.Sprintf("%scommand[%d]", field, i)
		if len(a) > maxArgBytes {
			return t, invalid(f, "longer than %d bytes", maxArgBytes)
		}
		if strings.ContainsRune(a, 0) {
			return t, invalid(f, "contains a NUL byte")
		}
		if err := placeholder.Check(a); err != nil {
			return t, invalid(f, "%v", err)
		}
	}
	if err := checkEnv(field+"env", in.Env); err != nil {
		return t, err
	}
	if in.Cwd != "" {
		switch {
		case !strings.HasPrefix(in.Cwd, "/"):
			return t, invalid(field+"cwd", "must be an absolute path (the CLI makes a relative --cwd absolute)")
		case len(in.Cwd) > maxPathLen || strings.ContainsRune(in.Cwd, 0):
			return t, invalid(field+"cwd", "must be at most %d bytes without NUL", maxPathLen)
		}
		if err := placeholder.Check(in.Cwd); err != nil {
			return t, invalid(field+"cwd", "%v", err)
		}
	}
	var err error
	if t.Inputs, err = inputFiles(in.Inputs, field); err != nil {
		return t, err
	}
	if t.Outputs, err = outputFiles(in.Outputs, field); err != nil {
		return t, err
	}
	// resolveApps has already pinned every package to a version.
	for i, s := range in.Apps {
		r, err := apppkg.Parse(s)
		if err == nil && r.Version == "" {
			err = errors.New("no version resolved")
		}
		if err != nil {
			return t, invalid(fmt.Sprintf("%sapps[%d]", field, i), "%v", err)
		}
		t.Apps = append(t.Apps, r.String())
	}
	if in.MaxRetries != nil {
		if *in.MaxRetries < -1 || *in.MaxRetries > maxTaskRetries {
			return t, invalid(field+"max_retries", "must be -1 (unlimited) or 0 to %d", maxTaskRetries)
		}
		t.MaxRetries = *in.MaxRetries
	}
	rq := in.Requirements
	switch {
	case rq.Slots < 0 || rq.Slots > maxSlots:
		return t, invalid(field+"requirements.slots", "must be between 0 and %d", maxSlots)
	case rq.Cores < 0 || rq.Cores > maxSlots:
		return t, invalid(field+"requirements.cores", "must be between 0 and %d", maxSlots)
	case rq.MemoryBytes < 0:
		return t, invalid(field+"requirements.memory_bytes", "must not be negative")
	}
	if err := checkPairs(field+"requirements.labels", rq.Labels); err != nil {
		return t, err
	}
	t.Req = core.Requirements{Slots: max(rq.Slots, 1), Cores: rq.Cores, Memory: rq.MemoryBytes, Labels: rq.Labels}
	return t, nil
}

func taskAdd(in api.TaskAdd, jobRetries int) (core.TaskAdd, error) {
	var a core.TaskAdd
	kinds := 0
	for _, set := range []bool{len(in.Tasks) > 0, in.Array != "", len(in.Lines) > 0} {
		if set {
			kinds++
		}
	}
	if kinds != 1 {
		return a, invalid("tasks", "give exactly one of tasks, array or lines")
	}
	if in.IDPrefix != "" && (len(in.IDPrefix) > maxIDPrefix || !core.ValidID(in.IDPrefix)) {
		return a, invalid("id_prefix", "must be 1-%d characters of letters, digits, '_' and '-'", maxIDPrefix)
	}
	a.IDPrefix = in.IDPrefix
	if len(in.Tasks) > 0 {
		if len(in.Tasks) > maxExplicitTasks {
			return a, &httpError{413, api.CodeTooLarge, fmt.Sprintf("at most %d tasks per request", maxExplicitTasks), "tasks"}
		}
		if in.Template != nil {
			return a, invalid("template", "only with array or lines")
		}
		a.Kind = core.GroupExplicit
		a.Items = make([]core.Item, len(in.Tasks))
		for i := range in.Tasks {
			f := fmt.Sprintf("tasks[%d].", i)
			t, err := template(&in.Tasks[i], jobRetries, f)
			if err != nil {
				return a, err
			}
			id := in.Tasks[i].ID
			if id != "" && !core.ValidID(id) {
				return a, badID(f + "id")
			}
			a.Items[i] = core.Item{ID: id, Template: t}
		}
		return a, nil
	}
	if in.Template == nil {
		return a, invalid("template", "required with array or lines")
	}
	t, err := template(in.Template, jobRetries, "template.")
	if err != nil {
		return a, err
	}
	if in.Template.ID != "" {
		return a, invalid("template.id", "array and line tasks are named by their index")
	}
	a.Template = &t
	if in.Array != "" {
		spec, err := arrayspec.Parse(in.Array)
		if err != nil {
			return a, invalid("array", "%v", err)
		}
		a.Kind, a.Spec = core.GroupArray, spec
		return a, nil
	}
	if len(in.Lines) > arrayspec.MaxTasks {
		return a, &httpError{413, api.CodeTooLarge, fmt.Sprintf("at most %d lines", arrayspec.MaxTasks), "lines"}
	}
	for i, l := range in.Lines {
		if len(l) > maxLineBytes || strings.ContainsRune(l, 0) {
			return a, invalid(fmt.Sprintf("lines[%d]", i), "longer than %d bytes or contains a NUL byte", maxLineBytes)
		}
	}
	a.Kind, a.Lines = core.GroupLines, in.Lines
	return a, nil
}

// nameTasks gives an explicit task without an ID "task-N" (or PREFIX+N),
// N its position in the job counting from 1, or the next free number when
// that ID is taken, so repeated single-task adds never collide. j is nil
// for a job being created.
func nameTasks(j *core.Job, a *core.TaskAdd) {
	if a.Kind != core.GroupExplicit {
		return
	}
	prefix := orDefault(a.IDPrefix, "task-")
	named := make(map[string]bool)
	for _, it := range a.Items {
		if it.ID != "" {
			named[lower(it.ID)] = true
		}
	}
	var ids *idIndex
	base := 0
	if j != nil {
		ids = newIDIndex(j)
		for _, g := range j.Groups {
			base += g.Count()
		}
	}
	n := 0 // the last number tried: numbers follow positions in the job
	for i := range a.Items {
		if a.Items[i].ID != "" {
			continue
		}
		n = max(n, base+i)
		for {
			n++
			id := prefix + strconv.Itoa(n)
			if !named[lower(id)] && (ids == nil || !ids.has(id)) {
				a.Items[i].ID = id
				break
			}
		}
	}
}

// idIndex tells whether a job has a task ID: explicit IDs from one pass
// over them, array and line IDs by arithmetic.
type idIndex struct {
	explicit map[string]bool
	derived  []*core.Group
}

func newIDIndex(j *core.Job) *idIndex {
	x := &idIndex{explicit: make(map[string]bool)}
	for _, g := range j.Groups {
		if g.Kind != core.GroupExplicit {
			x.derived = append(x.derived, g)
			continue
		}
		for _, it := range g.Items {
			x.explicit[lower(it.ID)] = true
		}
	}
	return x
}

func (x *idIndex) has(id string) bool {
	if x.explicit[lower(id)] {
		return true
	}
	for _, g := range x.derived {
		if _, ok := g.PosOf(id); ok {
			return true
		}
	}
	return false
}

// existingTask names the first explicit task the job already has, to turn
// the core's conflict into a 409 that names the field; it returns err when
// no task explains it.
func existingTask(j *core.Job, a *core.TaskAdd, err error) error {
	if a.Kind != core.GroupExplicit || !errors.Is(err, core.ErrConflict) || j.State != core.JobActive {
		return err
	}
	ids := newIDIndex(j)
	for i, it := range a.Items {
		if ids.has(it.ID) {
			return &httpError{http.StatusConflict, api.CodeConflict,
				fmt.Sprintf("task %q already exists in job %q", it.ID, j.ID), fmt.Sprintf("tasks[%d].id", i)}
		}
	}
	return err
}

// conflictAt names field in a 409 the core returned without one.
func conflictAt(err error, field string) error {
	var he *httpError
	if errors.Is(err, core.ErrConflict) && !errors.As(err, &he) {
		return &httpError{http.StatusConflict, api.CodeConflict, err.Error(), field}
	}
	return err
}

// groupField is the request field a conflicting task group is blamed on.
func groupField(prefix string, a core.TaskAdd) string {
	switch a.Kind {
	case core.GroupArray:
		return prefix + "array"
	case core.GroupLines:
		return prefix + "lines"
	}
	return prefix + "tasks"
}

func ts(ns int64) time.Time { return time.Unix(0, ns).UTC() }

func tsPtr(ns int64) *time.Time {
	if ns == 0 {
		return nil
	}
	t := ts(ns)
	return &t
}

func poolOut(p *core.Pool, withToken bool, now time.Time) api.Pool {
	out := api.Pool{
		ID: p.ID, Provider: p.Provider, SlotsPerNode: p.SlotsPerNode, FillPolicy: p.Fill.String(),
		Prefill: p.Prefill, TargetNodes: p.TargetNodes, Labels: p.Labels, CreatedAt: ts(p.CreatedAt),
		AllowRoot: p.AllowRoot, NodeCounts: map[string]int{}, Scaling: scalingOut(p.Scaling),
	}
	u := p.UsageAt(now)
	out.Usage = api.Usage{NodeSeconds: u.NodeSeconds, SpotNodeSeconds: u.SpotNodeSeconds, Cost: u.Cost}
	out.Apps = p.Apps
	if st := p.StartTask; st != nil {
		wait := st.WaitForSuccess
		out.StartTask = &api.StartTask{Command: st.Command, Shell: st.Shell, Env: st.Env, MaxRetries: st.MaxRetries, WaitForSuccess: &wait,
			Inputs: inputFilesOut(st.Inputs)}
	}
	for _, n := range p.Nodes {
		st := n.State()
		out.NodeCounts[st.String()]++
		switch {
		case st == core.NodeUnreachable || st == core.NodePreempted:
		case n.Spot:
			out.CurrentSpotNodes++
		default:
			out.CurrentNodes++
		}
	}
	if withToken {
		out.JoinToken = p.JoinToken
	}
	return out
}

func scalingOut(s core.Scaling) api.Scaling {
	out := api.Scaling{
		MinNodes: s.MinNodes, MaxNodes: s.MaxNodes, TargetSpotNodes: s.TargetSpotNodes,
		Deallocation: string(s.Deallocation), JoinTimeout: api.Duration(s.JoinTimeout), Price: s.Price, SpotPrice: s.SpotPrice,
	}
	if a := s.Autoscale; a != nil {
		out.Autoscale = &api.Autoscale{Formula: a.Formula, Interval: api.Duration(a.Interval), Enabled: a.Enabled}
	}
	if e := s.Exec; e != nil {
		out.Exec = &api.ExecProvider{Command: e.Command, Args: e.Args, Timeout: api.Duration(e.Timeout)}
	}
	return out
}

func nodeOut(n *core.Node) api.Node {
	return api.Node{
		ID: n.ID, PoolID: n.Pool.ID, State: n.State().String(), Hostname: n.Hostname, Slots: n.Slots,
		Cores: n.Cores, MemoryBytes: n.Memory, Labels: n.Labels, Drained: n.Drained, Connected: n.Connected, Spot: n.Spot,
		RunningTasks: n.Running(), AssignedTasks: len(n.Tasks()) - n.Running(),
		JoinedAt: ts(n.JoinedAt), LastSeenAt: ts(n.LastSeen),
	}
}

func jobOut(j *core.Job) api.Job {
	onDone := "no_action"
	if j.TerminateWhenDone {
		onDone = "terminate_job"
	}
	return api.Job{
		ID: j.ID, PoolID: j.Pool.ID, State: j.State.String(), Priority: j.Priority, MaxRetries: j.MaxRetries,
		MaxWallClock: api.Duration(j.MaxWallClock), OnAllTasksComplete: onDone, Owner: j.Owner, Tags: j.Tags,
		Env: j.Env, TaskGroups: len(j.Groups), PendingReason: j.PendingReason, CreatedAt: ts(j.CreatedAt),
		CompletedAt: tsPtr(j.CompletedAt), BurstPoolIDs: j.BurstPoolIDs(),
		SlotSeconds: j.SlotSeconds, NodeSeconds: j.NodeSeconds, Cost: j.Cost,
		TaskCounts: api.TaskCounts{
			Active: j.Counts[core.TaskActive], Assigned: j.Counts[core.TaskAssigned],
			Preparing: j.Counts[core.TaskPreparing], Running: j.Counts[core.TaskRunning],
			Completed: j.Counts[core.TaskCompleted], Succeeded: j.Succeeded, Failed: j.Failed,
		},
	}
}

func indexPtr(i int) *int {
	if i < 0 {
		return nil
	}
	return &i
}

// pendingTaskOut shows a task that never left active: waiting, or cancelled
// in bulk when its job was terminated.
func pendingTaskOut(g *core.Group, pos int) api.Task {
	tpl := g.TemplateAt(pos)
	out := api.Task{
		JobID: g.Job.ID, ID: g.IDAt(pos), Index: indexPtr(g.IndexAt(pos)), State: api.TaskActive,
		PendingReason: g.Job.PendingReason, Command: tpl.Command, Shell: tpl.Shell,
	}
	if g.Closed() {
		out.State, out.PendingReason = api.TaskCompleted, ""
		out.Result, out.FailureCategory = core.ResultFailure.String(), core.CategoryCancelled.String()
	}
	return out
}

func attemptOut(a *core.AttemptRecord) api.Attempt {
	out := api.Attempt{
		Number: a.Number, NodeID: a.NodeID, AssignedAt: ts(a.AssignedAt), PreparingAt: tsPtr(a.PreparingAt),
		StartedAt: tsPtr(a.StartedAt),
		EndedAt:   tsPtr(a.EndedAt), Result: a.Result.String(), FailureCategory: a.Category.String(),
		Signal: a.Signal, UserCPU: api.Duration(a.UserCPU), SysCPU: api.Duration(a.SysCPU), MaxRSSBytes: a.MaxRSS,
		Message: a.Message,
	}
	if a.EndedAt != 0 && a.Category != core.CategoryInfra && a.Category != core.CategoryCancelled && a.Signal == 0 {
		x := a.ExitCode
		out.ExitCode = &x
	}
	return out
}

func taskOut(t *core.Task, withAttempts bool) api.Task {
	tpl := t.Template()
	out := api.Task{
		JobID: t.Job.ID, ID: t.ID, Index: indexPtr(t.Index()), State: t.State.String(), Attempt: t.Attempt,
		Retries: t.Retries, Requeues: t.Requeues, Command: tpl.Command, Shell: tpl.Shell,
	}
	last := &t.Cur
	if last.Number == 0 && len(t.History) > 0 {
		last = &t.History[len(t.History)-1]
	}
	if t.State == core.TaskActive {
		out.PendingReason = t.Job.PendingReason
	}
	if last.Number != 0 {
		a := attemptOut(last)
		out.NodeID, out.StartedAt, out.EndedAt = a.NodeID, a.StartedAt, a.EndedAt
	}
	if t.State == core.TaskCompleted {
		// Cur holds the outcome, also for a task cancelled before it ran.
		a := attemptOut(&t.Cur)
		out.Result, out.FailureCategory, out.ExitCode, out.Signal = a.Result, a.FailureCategory, a.ExitCode, a.Signal
	}
	if withAttempts {
		for i := range t.History {
			out.Attempts = append(out.Attempts, attemptOut(&t.History[i]))
		}
		if t.Cur.Number != 0 {
			out.Attempts = append(out.Attempts, attemptOut(&t.Cur))
		}
	}
	return out
}

// maxFiles bounds the inputs or outputs of one task.
const maxFiles = 1000

// checkSource validates an input source: data://C/P, a data://C/prefix/, or
// an http(s) URL.
func checkSource(src string) error {
	if strings.HasPrefix(src, blob.Scheme) {
		_, err := blob.ParseRef(src)
		return err
	}
	u, err := url.Parse(src)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q: must be data://CONTAINER/PATH, data://CONTAINER/PREFIX/ or an http(s):// URL", clip(src))
	}
	return nil
}

// inputFiles validates resource files. Paths are checked here as written
// (placeholders included) and again by the agent once expanded.
func inputFiles(in []api.InputFile, field string) ([]core.InputFile, error) {
	if len(in) > maxFiles {
		return nil, invalid(field+"inputs", "at most %d input files", maxFiles)
	}
	var out []core.InputFile
	for i, f := range in {
		fp := fmt.Sprintf("%sinputs[%d].", field, i)
		if err := checkSource(f.Source); err != nil {
			return nil, invalid(fp+"source", "%v", err)
		}
		if err := placeholder.Check(f.Source); err != nil {
			return nil, invalid(fp+"source", "%v", err)
		}
		prefix := strings.HasPrefix(f.Source, blob.Scheme) && strings.HasSuffix(f.Source, "/")
		if !(prefix && (f.Path == "." || f.Path == "./")) {
			if err := blob.CheckPath(strings.TrimSuffix(f.Path, "/")); err != nil {
				return nil, invalid(fp+"path", "%v (relative to the task's working directory)", err)
			}
		}
		if err := placeholder.Check(f.Path); err != nil {
			return nil, invalid(fp+"path", "%v", err)
		}
		mode, err := api.ParseMode(f.Mode)
		if err != nil {
			return nil, invalid(fp+"mode", "%v", err)
		}
		out = append(out, core.InputFile{Source: f.Source, Path: f.Path, Mode: mode})
	}
	return out, nil
}

// inputFilesOut is inputFiles' inverse, for answers.
func inputFilesOut(in []core.InputFile) []api.InputFile {
	var out []api.InputFile
	for _, f := range in {
		o := api.InputFile{Source: f.Source, Path: f.Path}
		if f.Mode != 0 {
			o.Mode = fmt.Sprintf("%04o", f.Mode)
		}
		out = append(out, o)
	}
	return out
}

// outputFiles validates output files: patterns confined to the working
// directory, destinations in the data store.
func outputFiles(in []api.OutputFile, field string) ([]core.OutputFile, error) {
	if len(in) > maxFiles {
		return nil, invalid(field+"outputs", "at most %d output files", maxFiles)
	}
	var out []core.OutputFile
	for i, f := range in {
		fp := fmt.Sprintf("%soutputs[%d].", field, i)
		if err := blob.CheckPath(f.Pattern); err != nil {
			return nil, invalid(fp+"pattern", "%v (relative to the task's working directory)", err)
		}
		if err := placeholder.Check(f.Pattern); err != nil {
			return nil, invalid(fp+"pattern", "%v", err)
		}
		r, err := blob.ParseRef(f.Destination)
		if err != nil {
			return nil, invalid(fp+"destination", "%v", err)
		}
		if r.Path == "" {
			return nil, invalid(fp+"destination", "name a path or a prefix ending in / inside the container")
		}
		if err := placeholder.Check(f.Destination); err != nil {
			return nil, invalid(fp+"destination", "%v", err)
		}
		when, ok := core.ParseUploadWhen(f.When)
		if !ok {
			return nil, invalid(fp+"when", "must be success, failure or always")
		}
		out = append(out, core.OutputFile{Pattern: f.Pattern, Dest: f.Destination, When: when})
	}
	return out, nil
}
