package core

// Nodes joining, reconnecting, draining and going silent.

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Node finds a node by ID.
func (c *Core) Node(id string) *Node { return c.nodes[key(id)] }

// Join is what an agent says when it connects.
type Join struct {
	NodeID    string // set when the agent already has an identity (checked by the shell)
	Name      string // proposed ID for a new node
	Pool      *Pool
	Hostname  string
	Slots     int
	Cores     int
	Memory    int64
	Labels    map[string]string
	TokenHash string // new node's credential hash
	Known     []AgentTask
}

// AgentPhase is where an agent says a task is.
type AgentPhase uint8

// Agent phases.
const (
	PhaseQueued AgentPhase = iota
	PhaseRunning
	PhaseFinished
)

// AgentTask is a task an agent knows about when it (re)connects.
type AgentTask struct {
	JobID   string
	TaskID  string
	Attempt int
	Phase   AgentPhase
}

// Reconcile is the core's answer to a join: what the agent must drop and
// which of its tasks stay. Tasks the agent lost are requeued by the core and
// tasks it never received are dispatched again through Effects.
type Reconcile struct {
	Drop []AgentTask
	Keep []*Task
}

// NodeJoin registers a new node or takes back a known one.
func (c *Core) NodeJoin(jn Join, now time.Time) (*Node, Reconcile, error) {
	var rec Reconcile
	if jn.Slots <= 0 {
		return nil, rec, fieldErr("slots", "must be at least 1")
	}
	n := c.nodes[key(jn.NodeID)]
	if jn.NodeID != "" && n == nil {
		return nil, rec, fmt.Errorf("node %q: %w", jn.NodeID, ErrNotFound)
	}
	if pn := c.nodes[key(jn.Name)]; n == nil && pn != nil && pn.Provisioned && pn.Pool == jn.Pool {
		// The machine the provider made for this node ID has come up.
		n = pn
		n.Provisioned, n.TokenHash, n.JoinedAt = false, jn.TokenHash, now.UnixNano()
	}
	if n == nil {
		base := jn.Name
		if !ValidID(base) {
			base = "node"
		}
		id := base
		for i := 2; c.nodes[key(id)] != nil; i++ {
			suffix := "-" + strconv.Itoa(i)
			id = base[:min(len(base), 64-len(suffix))] + suffix
		}
		n = &Node{ID: id, Pool: jn.Pool, TokenHash: jn.TokenHash, JoinedAt: now.UnixNano()}
		c.nodes[key(id)] = n
		jn.Pool.addNode(n)
	}
	n.Hostname, n.Slots, n.Cores, n.Memory, n.Labels = jn.Hostname, jn.Slots, jn.Cores, jn.Memory, jn.Labels
	n.Connected, n.Unreachable, n.LastSeen = true, false, now.UnixNano()
	if n.Pool.StartTask != nil && n.StartTask == StartTaskNone {
		n.StartTask = StartTaskRunning // the agent runs it on this join
	}
	n.Pool.dirty = true
	c.fx.SaveNode(n)

	known := make(map[taskRef]AgentTask, len(jn.Known))
	for _, k := range jn.Known {
		known[taskRef{key(k.JobID), key(k.TaskID)}] = k
	}
	for _, t := range slices.Clone(n.tasks) {
		k, ok := known[taskRef{key(t.Job.ID), key(t.ID)}]
		switch {
		case ok && k.Attempt == t.Attempt:
			delete(known, taskRef{key(t.Job.ID), key(t.ID)})
			rec.Keep = append(rec.Keep, t)
			if k.Phase == PhaseRunning && (t.State == TaskAssigned || t.State == TaskPreparing) {
				c.markRunning(t, now.UnixNano())
				c.fx.SaveTask(t)
			}
		case t.State == TaskAssigned && t.revoking:
			// The agent never started it and the revoke is moot: back to the
			// queue with its attempt unused, as a confirmed revoke does.
			c.unassign(t)
		case t.State == TaskAssigned:
			c.fx.Dispatch(n, t) // never received: send again, same attempt
		default:
			c.requeue(t, "the node lost the task", now)
		}
	}
	for _, k := range known {
		if k.Phase != PhaseFinished {
			rec.Drop = append(rec.Drop, k)
		}
	}
	slices.SortFunc(rec.Drop, func(a, b AgentTask) int {
		return strings.Compare(a.JobID+"/"+a.TaskID, b.JobID+"/"+b.TaskID)
	})
	return n, rec, nil
}

type taskRef struct{ job, task string }

// NodeDisconnected records that a node's stream ended. Its tasks stay
// assigned until the heartbeat timeout: a reconnect within it loses nothing.
func (c *Core) NodeDisconnected(n *Node, now time.Time) {
	n.Connected = false
	n.Pool.dirty = true
}

// Heartbeat records that a node is alive.
func (c *Core) Heartbeat(n *Node, now time.Time) { n.LastSeen = now.UnixNano() }

// SetDrained stops (or resumes) dispatch to a node; its tasks run on.
func (c *Core) SetDrained(n *Node, drained bool) {
	n.Drained = drained
	n.Pool.dirty = true
	c.fx.SaveNode(n)
}

// Tick declares silent nodes unreachable and requeues their tasks.
//
// It returns the nodes it gave up on: the shell closes their streams if they
// are still open, so an agent that was only slow must join again, and the
// join makes it drop the attempts that were requeued meanwhile.
func (c *Core) Tick(now time.Time) []*Node {
	deadline := now.Add(-c.cfg.HeartbeatTimeout).UnixNano()
	var lost []*Node
	for _, p := range c.Pools() {
		for _, n := range p.SortedNodes() {
			if n.Unreachable || n.Provisioned || n.LastSeen > deadline {
				continue
			}
			n.Unreachable = true
			n.Connected = false
			for _, t := range slices.Clone(n.tasks) {
				c.requeue(t, "node "+n.ID+" missed its heartbeats", now)
			}
			p.dirty = true
			lost = append(lost, n)
		}
	}
	return lost
}

// HeartbeatInterval is how often agents must send a frame: several per
// heartbeat timeout, at most every 5 s.
func (c *Core) HeartbeatInterval() time.Duration {
	return min(5*time.Second, c.cfg.HeartbeatTimeout/3)
}

// StartTaskDone records the end of a node's start task (after the agent's
// retries): a success opens the node to tasks, a failure keeps it closed
// (start_task_failed) when the pool waits for success. A report for a node
// not running its start task is ignored.
func (c *Core) StartTaskDone(n *Node, ok bool) {
	if n.StartTask != StartTaskRunning {
		return
	}
	n.StartTask = StartTaskFailed
	if ok {
		n.StartTask = StartTaskSucceeded
	}
	n.Pool.dirty = true
	c.fx.SaveNode(n)
}
