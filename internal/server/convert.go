package server

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/lotehq/lote/api"
	"github.com/lotehq/lote/internal/arrayspec"
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
)

func lower(s string) string { return strings.ToLower(s) }

func jobSpec(in api.JobCreate, owner string) (core.JobSpec, error) {
	s := core.JobSpec{
		ID: in.ID, PoolID: in.PoolID, Priority: in.Priority, MaxWallClock: time.Duration(in.MaxWallClock),
		Owner: owner, Tags: in.Tags, Env: in.Env,
	}
	if in.PoolID == "" {
		return s, invalid("pool_id", "required")
	}
	if in.MaxRetries != nil {
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
	for k := range in.Tags {
		if k == "" || len(k) > 128 {
			return s, invalid("tags", "tag names must be 1-128 characters")
		}
	}
	return s, nil
}

func checkEnv(field string, env map[string]string) error {
	for k, v := range env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return invalid(field, "bad variable name %q", k)
		}
		if strings.ContainsRune(v, 0) {
			return invalid(field+"."+k, "value contains a NUL byte")
		}
	}
	return nil
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
		if !strings.HasPrefix(in.Cwd, "/") {
			return t, invalid(field+"cwd", "must be an absolute path")
		}
		if err := placeholder.Check(in.Cwd); err != nil {
			return t, invalid(field+"cwd", "%v", err)
		}
	}
	if in.MaxRetries != nil {
		if *in.MaxRetries < -1 {
			return t, invalid(field+"max_retries", "must be -1 (unlimited) or more")
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
	if in.IDPrefix != "" && (len(in.IDPrefix) > 32 || !core.ValidID(in.IDPrefix)) {
		return a, invalid("id_prefix", "must be 1-32 characters of letters, digits, '_' and '-'")
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
			if id == "" {
				id = "task-" + strconv.Itoa(i+1)
				if in.IDPrefix != "" {
					id = in.IDPrefix + strconv.Itoa(i+1)
				}
			}
			if !core.ValidID(id) {
				return a, invalid(f+"id", "must be 1-64 characters of letters, digits, '_' and '-'")
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

func ts(ns int64) time.Time { return time.Unix(0, ns).UTC() }

func tsPtr(ns int64) *time.Time {
	if ns == 0 {
		return nil
	}
	t := ts(ns)
	return &t
}

func poolOut(p *core.Pool, withToken bool) api.Pool {
	out := api.Pool{
		ID: p.ID, Provider: p.Provider, SlotsPerNode: p.SlotsPerNode, FillPolicy: p.Fill.String(),
		Prefill: p.Prefill, TargetNodes: p.TargetNodes, Labels: p.Labels, CreatedAt: ts(p.CreatedAt),
		NodeCounts: map[string]int{},
	}
	for _, n := range p.Nodes {
		out.NodeCounts[n.State().String()]++
		if n.State() != core.NodeUnreachable {
			out.CurrentNodes++
		}
	}
	if withToken {
		out.JoinToken = p.JoinToken
	}
	return out
}

func nodeOut(n *core.Node) api.Node {
	return api.Node{
		ID: n.ID, PoolID: n.Pool.ID, State: n.State().String(), Hostname: n.Hostname, Slots: n.Slots,
		Cores: n.Cores, MemoryBytes: n.Memory, Labels: n.Labels, Drained: n.Drained, Connected: n.Connected,
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
		CompletedAt: tsPtr(j.CompletedAt),
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
		Number: a.Number, NodeID: a.NodeID, AssignedAt: ts(a.AssignedAt), StartedAt: tsPtr(a.StartedAt),
		EndedAt: tsPtr(a.EndedAt), Result: a.Result.String(), FailureCategory: a.Category.String(),
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
