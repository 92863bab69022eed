package server

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/lotehq/lote/internal/core"
	"github.com/lotehq/lote/internal/proto"
)

// maxFrame bounds one agent frame (a batch of reports with inline logs).
const maxFrame = 64 << 20

// session is one agent's stream. Frames for the agent are staged while the
// committer seals a batch and queued for the writer once it is durable.
type session struct {
	srv    *Server
	node   *core.Node
	nodeID string
	conn   *websocket.Conn
	ctx    context.Context
	cancel context.CancelFunc

	// staged and sentTemplates are touched only by the committer (seal and
	// release are sequential).
	staged        proto.ToAgent
	sentTemplates map[string]bool

	mu      sync.Mutex
	queue   []*proto.ToAgent
	ackSeq  uint64
	notify  chan struct{}
	seq     atomic.Uint64
	pending sync.Map // log request ID → chan proto.LogChunk
}

func hashToken(tok string) string {
	h := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(h[:])
}

func newSecret() string {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// handleAgent upgrades an agent's request to its stream. The bearer token is
// a pool's join token (first join) or the node's own token "NODE.SECRET".
func (s *Server) handleAgent(w http.ResponseWriter, r *http.Request) {
	tok, ok := bearer(r)
	if !ok {
		writeErr(w, http.StatusUnauthorized, "unauthorized", "missing bearer token", "")
		return
	}
	conn, err := websocket.Accept(w, r, &websocket.AcceptOptions{CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		return
	}
	conn.SetReadLimit(maxFrame)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-ctx.Done():
		case <-s.stopping:
			cancel()
		}
	}()
	if err := s.serveAgent(ctx, cancel, conn, tok, agentCert(r)); err != nil && ctx.Err() == nil {
		s.log.Info("agent stream ended", "err", err)
	}
}

// cert is the common name of the agent's verified client certificate ("" for
// none); with AgentMTLS it is required and names the node.
func (s *Server) serveAgent(ctx context.Context, cancel context.CancelFunc, conn *websocket.Conn, tok, cert string) error {
	defer conn.CloseNow()
	helloCtx, helloCancel := context.WithTimeout(ctx, 10*time.Second)
	var first proto.ToServer
	err := readFrame(helloCtx, conn, &first)
	helloCancel()
	if err != nil {
		return fmt.Errorf("reading hello: %w", err)
	}
	h := first.Hello
	fail := func(msg string) error {
		writeFrame(ctx, conn, &proto.ToAgent{Error: msg})
		conn.Close(websocket.StatusPolicyViolation, "refused")
		return errors.New(msg)
	}
	if h == nil {
		return fail("first frame must be a hello")
	}
	if h.Version != proto.Version {
		return fail(fmt.Sprintf("protocol version %d not supported (server speaks %d)", h.Version, proto.Version))
	}
	if s.cfg.AgentMTLS && cert == "" {
		return fail(errNoAgentCert)
	}
	var newToken string
	var node *core.Node
	var rec core.Reconcile
	var joinErr error
	sess := &session{srv: s, conn: conn, ctx: ctx, cancel: cancel, notify: make(chan struct{}, 1), sentTemplates: map[string]bool{}}
	seq := s.eng.do(func(c *core.Core, now time.Time) {
		jn := core.Join{
			Hostname: h.Hostname, Slots: h.Slots, Cores: h.Cores, Memory: h.Memory, Labels: h.Labels,
			Known: make([]core.AgentTask, 0, len(h.Known)),
		}
		for _, k := range h.Known {
			jn.Known = append(jn.Known, core.AgentTask{JobID: k.Ref.Job, TaskID: k.Ref.Task, Attempt: k.Ref.Attempt, Phase: core.AgentPhase(k.Phase)})
		}
		if id, secret, ok := strings.Cut(tok, "."); ok && h.NodeID != "" {
			n := c.Node(id)
			if n == nil || !strings.EqualFold(id, h.NodeID) ||
				subtle.ConstantTimeCompare([]byte(n.TokenHash), []byte(hashToken(id+"."+secret))) != 1 {
				joinErr = errors.New("unknown node or bad node token")
				return
			}
			if s.cfg.AgentMTLS && !certNames(cert, n.ID) {
				joinErr = fmt.Errorf("the agent's client certificate is for node %q, not %q", cert, n.ID)
				return
			}
			jn.NodeID, jn.Pool = n.ID, n.Pool
		} else {
			p := c.Pool(h.Pool)
			if p == nil || p.JoinToken == "" || subtle.ConstantTimeCompare([]byte(p.JoinToken), []byte(tok)) != 1 {
				joinErr = errors.New("unknown pool or bad join token")
				return
			}
			jn.Pool, jn.Name = p, h.Name
			if jn.Name == "" {
				jn.Name = h.Hostname
			}
			if s.cfg.AgentMTLS && !strings.EqualFold(jn.Name, cert) {
				joinErr = fmt.Errorf("the agent asks for node name %q but its client certificate is for %q", jn.Name, cert)
				return
			}
		}
		// Register before the join so that resends the join dispatches are
		// staged to this session, behind the welcome.
		var err error
		node, rec, err = c.NodeJoin(jn, now)
		if err != nil {
			joinErr = err
			return
		}
		if jn.NodeID == "" {
			newToken = node.ID + "." + newSecret()
			node.TokenHash = hashToken(newToken)
			s.eng.SaveNode(node)
		}
		sess.node, sess.nodeID = node, node.ID
		if old, loaded := s.eng.sessions.Swap(lower(node.ID), sess); loaded {
			old.(*session).cancel()
		}
	})
	if joinErr != nil {
		return fail(joinErr.Error())
	}
	defer s.agentGone(sess)
	if err := s.eng.wait(ctx, seq); err != nil {
		return err
	}
	s.eng.mu.Lock()
	w := &proto.Welcome{NodeID: node.ID, NodeToken: newToken, HeartbeatInterval: int64(s.eng.core.HeartbeatInterval()), AllowRoot: node.Pool.AllowRoot}
	if st := node.Pool.StartTask; st != nil && node.StartTask == core.StartTaskRunning {
		w.StartTask = new(nodeTaskOut(st))
	}
	for _, k := range rec.Drop {
		w.Drop = append(w.Drop, proto.Ref{Job: k.JobID, Task: k.TaskID, Attempt: k.Attempt})
	}
	for _, t := range rec.Keep {
		w.Keep = append(w.Keep, proto.Keep{Ref: proto.Ref{Job: t.Job.ID, Task: t.ID, Attempt: t.Attempt}, Slots: max(t.Template().Req.Slots, 1)})
	}
	s.eng.mu.Unlock()
	sess.push(&proto.ToAgent{Welcome: w}, true)
	go sess.writer()
	s.log.Info("agent connected", "node", node.ID, "pool", node.Pool.ID, "new", newToken != "")
	return sess.reader()
}

func (s *Server) agentGone(sess *session) {
	sess.cancel()
	if sess.node == nil {
		return
	}
	if s.eng.sessions.CompareAndDelete(lower(sess.nodeID), sess) {
		s.eng.do(func(c *core.Core, now time.Time) { c.NodeDisconnected(sess.node, now) })
	}
}

// reader applies the agent's frames to the core. It never waits for a
// commit: the acknowledgement rides on the batch the frame landed in.
func (sess *session) reader() error {
	e := sess.srv.eng
	for {
		var f proto.ToServer
		if err := readFrame(sess.ctx, sess.conn, &f); err != nil {
			return err
		}
		for _, l := range f.Logs {
			if ch, ok := sess.pending.LoadAndDelete(l.ID); ok {
				ch.(chan proto.LogChunk) <- l
			}
		}
		e.mu.Lock()
		c, now, n := e.core, e.now(), sess.node
		c.Heartbeat(n, now)
		jobEnded := false
		for _, st := range f.Preparing {
			c.TaskPreparing(n, st.Ref.Job, st.Ref.Task, st.Ref.Attempt, time.Unix(0, st.At))
		}
		for _, st := range f.Started {
			c.TaskStarted(n, st.Ref.Job, st.Ref.Task, st.Ref.Attempt, time.Unix(0, st.At))
		}
		for i := range f.Finished {
			fin := &f.Finished[i]
			c.TaskFinished(n, core.Finish{
				JobID: fin.Ref.Job, TaskID: fin.Ref.Task, Attempt: fin.Ref.Attempt, ExitCode: fin.ExitCode,
				Signal: fin.Signal, TimedOut: fin.TimedOut, Lost: fin.Lost, StartErr: fin.StartErr,
				StartedAt: fin.StartedAt, EndedAt: fin.EndedAt, UserCPU: fin.UserCPU, SysCPU: fin.SysCPU,
				MaxRSS: fin.MaxRSS, Stdout: fin.Stdout, Stderr: fin.Stderr, StagingErr: fin.StagingErr,
				PrepFailed: fin.PrepFailed,
			}, now)
			if j := c.Job(fin.Ref.Job); j != nil && allDone(j) {
				jobEnded = true
			}
		}
		for _, rv := range f.Revoked {
			c.RevokeAnswered(n, rv.Ref.Job, rv.Ref.Task, rv.Ref.Attempt, rv.Revoked)
		}
		if d := f.StartTaskDone; d != nil {
			c.StartTaskDone(n, d.OK)
			sess.srv.log.Info("start task ended", "node", n.ID, "ok", d.OK, "exit_code", d.ExitCode, "attempts", d.Attempts, "err", d.Err)
		}
		if f.Seq != 0 {
			e.open.acks[sess] = f.Seq
		}
		e.mu.Unlock()
		switch {
		case jobEnded:
			e.kick() // someone may be waiting for the job: commit it promptly
		case len(f.Started)+len(f.Preparing)+len(f.Finished)+len(f.Revoked) > 0 || f.Seq != 0 || f.StartTaskDone != nil:
			e.kickReports()
		}
	}
}

// allDone reports whether every task of j has completed.
func allDone(j *core.Job) bool {
	for _, g := range j.Groups {
		if g.Done() < g.Count() {
			return false
		}
	}
	return true
}

// stage converts a batch's effects for this node into a frame (under the
// core lock, at seal time).
func (sess *session) stage(f *outFrame) {
	st := &sess.staged
	for _, t := range f.assign {
		if t.State != core.TaskAssigned || t.Node != sess.node {
			continue // revoked, requeued or finished before the batch sealed
		}
		g := t.Group
		tpl := t.Template()
		tkey := t.Job.ID + "/" + strconv.Itoa(g.Seq)
		once := g.Kind == core.GroupExplicit
		if once {
			tkey += "/" + t.ID
		}
		if once || !sess.sentTemplates[tkey] {
			if !once {
				sess.sentTemplates[tkey] = true
			}
			st.Templates = append(st.Templates, protoTemplate(tkey, t.Job, tpl))
		}
		a := proto.Assign{Ref: proto.Ref{Job: t.Job.ID, Task: t.ID, Attempt: t.Attempt}, Template: tkey, Index: t.Index()}
		if g.Kind == core.GroupLines {
			a.Line, a.HasLine = g.Lines[t.Pos], true
		}
		st.Assign = append(st.Assign, a)
	}
	st.Revoke = append(st.Revoke, f.revoke...)
	st.Kill = append(st.Kill, f.kill...)
	st.Release = append(st.Release, f.release...)
}

func protoTemplate(k string, j *core.Job, t *core.Template) proto.Template {
	env := t.Env
	if len(j.Env) > 0 {
		env = make(map[string]string, len(j.Env)+len(t.Env))
		for k, v := range j.Env {
			env[k] = v
		}
		for k, v := range t.Env {
			env[k] = v
		}
	}
	wall := t.MaxWallClock
	if wall == 0 {
		wall = j.MaxWallClock
	}
	pt := proto.Template{
		Key: k, Job: j.ID, Pool: j.Pool.ID, Command: t.Command, Shell: t.Shell, Env: env,
		MaxWallClock: int64(wall), Cwd: t.Cwd, Slots: max(t.Req.Slots, 1), Apps: t.Apps,
	}
	if len(j.Pool.Apps) > 0 {
		// The pool's packages first, so a task's own version of one wins.
		pt.Apps = append(slices.Clone(j.Pool.Apps), t.Apps...)
	}
	if st := j.PrepTask; st != nil {
		pt.JobPrep = new(nodeTaskOut(st))
	}
	pt.Inputs = inputsOut(t.Inputs)
	for _, o := range t.Outputs {
		pt.Outputs = append(pt.Outputs, proto.Output{Pattern: o.Pattern, Dest: o.Dest, When: uint8(o.When)})
	}
	return pt
}

// nodeTaskOut is a start, job preparation or job release task as the agent
// gets it.
func nodeTaskOut(st *core.StartTask) proto.StartTask {
	return proto.StartTask{Command: st.Command, Shell: st.Shell, Env: st.Env, MaxRetries: st.MaxRetries, Inputs: inputsOut(st.Inputs)}
}

func inputsOut(in []core.InputFile) []proto.Input {
	var out []proto.Input
	for _, f := range in {
		out = append(out, proto.Input{Source: f.Source, Path: f.Path, Mode: f.Mode})
	}
	return out
}

func (sess *session) flushStaged(uint64) {
	st := sess.staged
	sess.staged = proto.ToAgent{}
	if len(st.Assign)+len(st.Revoke)+len(st.Kill)+len(st.Templates)+len(st.Release) == 0 {
		return
	}
	sess.push(&st, false)
}

func (sess *session) ack(seq uint64) {
	sess.mu.Lock()
	if seq > sess.ackSeq {
		sess.ackSeq = seq
	}
	sess.mu.Unlock()
	sess.wake()
}

func (sess *session) push(f *proto.ToAgent, front bool) {
	sess.mu.Lock()
	if front {
		sess.queue = append([]*proto.ToAgent{f}, sess.queue...)
	} else {
		sess.queue = append(sess.queue, f)
	}
	sess.mu.Unlock()
	sess.wake()
}

func (sess *session) wake() {
	select {
	case sess.notify <- struct{}{}:
	default:
	}
}

// writer sends queued frames, merging what accumulated into one frame, and
// acknowledges reports.
func (sess *session) writer() {
	defer sess.cancel()
	var sentAck uint64
	for {
		select {
		case <-sess.ctx.Done():
			return
		case <-sess.notify:
		}
		sess.mu.Lock()
		q := sess.queue
		sess.queue = nil
		ack := sess.ackSeq
		sess.mu.Unlock()
		out := &proto.ToAgent{}
		if len(q) > 0 && q[0].Welcome != nil {
			out = q[0]
			q = q[1:]
		}
		for _, f := range q {
			out.Templates = append(out.Templates, f.Templates...)
			out.Assign = append(out.Assign, f.Assign...)
			out.Revoke = append(out.Revoke, f.Revoke...)
			out.Kill = append(out.Kill, f.Kill...)
			out.LogReqs = append(out.LogReqs, f.LogReqs...)
			out.Release = append(out.Release, f.Release...)
		}
		if ack > sentAck {
			out.AckReports = ack
			sentAck = ack
		}
		if out.Welcome == nil && out.AckReports == 0 && len(out.Assign)+len(out.Revoke)+len(out.Kill)+len(out.LogReqs)+len(out.Templates)+len(out.Release) == 0 {
			continue
		}
		out.Seq = sess.seq.Add(1)
		if err := writeFrame(sess.ctx, sess.conn, out); err != nil {
			return
		}
	}
}

// requestLog asks the agent for bytes of a running task's output.
func (sess *session) requestLog(ctx context.Context, req proto.LogReq) (proto.LogChunk, error) {
	ch := make(chan proto.LogChunk, 1)
	req.ID = logReqID.Add(1)
	sess.pending.Store(req.ID, ch)
	defer sess.pending.Delete(req.ID)
	sess.push(&proto.ToAgent{LogReqs: []proto.LogReq{req}}, false)
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	select {
	case c := <-ch:
		return c, nil
	case <-ctx.Done():
		return proto.LogChunk{}, fmt.Errorf("node %s did not answer: %w", sess.nodeID, ctx.Err())
	case <-sess.ctx.Done():
		return proto.LogChunk{}, fmt.Errorf("node %s disconnected", sess.nodeID)
	}
}

var logReqID atomic.Uint64

func readFrame(ctx context.Context, c *websocket.Conn, v any) error {
	typ, b, err := c.Read(ctx)
	if err != nil {
		return err
	}
	if typ != websocket.MessageBinary {
		return errors.New("text frame on agent stream")
	}
	return proto.Unmarshal(b, v)
}

func writeFrame(ctx context.Context, c *websocket.Conn, v any) error {
	b, err := proto.Marshal(v)
	if err != nil {
		return err
	}
	return c.Write(ctx, websocket.MessageBinary, b)
}
