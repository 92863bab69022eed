package provider

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/lotehq/lote/internal/sysmon"
)

// ExecConfig configures an Exec provider.
type ExecConfig struct {
	Command string        // path of the executable
	Args    []string      // arguments before the operation
	Timeout time.Duration // per call, for the whole process group; 0 means DefaultExecTimeout
	Env     []string      // KEY=VALUE added to the server's environment
}

// DefaultExecTimeout bounds one call of an exec provider's command.
const DefaultExecTimeout = 2 * time.Minute

const (
	maxReply   = 4 << 20 // bytes of stdout read
	stderrTail = 500     // bytes of stderr quoted in errors
	// waitDelay bounds the wait for stdout to close once the command has
	// exited (or was killed): a background child that kept it open must not
	// hold the call.
	waitDelay = 2 * time.Second
)

// Exec is a provider whose operations are a user's command: each call runs
// `Command Args... create|status|delete` in its own process group with a
// JSON request on stdin and reads a JSON reply from stdout (the protocol is
// documented in examples/providers/README.md). On timeout the whole process
// group is killed.
type Exec struct {
	cfg ExecConfig
}

// NewExec checks cfg and returns its provider.
func NewExec(cfg ExecConfig) (*Exec, error) {
	if cfg.Command == "" {
		return nil, errors.New("provider exec: no command")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultExecTimeout
	}
	return &Exec{cfg: cfg}, nil
}

type machinesReply struct {
	Machines []Machine `json:"machines"`
}

// Create runs `create` with req on stdin and expects {"machines":[...]}. A
// reply with machines missing returns those it has and an error wrapping
// ErrIncomplete; a machine with an ID that was not asked for is left out
// and makes an error; one with an unknown state comes back failed.
func (e *Exec) Create(ctx context.Context, req CreateRequest) ([]Machine, error) {
	if len(req.Nodes) == 0 {
		return nil, nil
	}
	var reply machinesReply
	if err := e.call(ctx, "create", req, &reply); err != nil {
		return nil, opError(KindExec, "create", req.Pool, err)
	}
	asked := make(map[string]bool, len(req.Nodes))
	for _, n := range req.Nodes {
		asked[n.ID] = true
	}
	var ms []Machine
	var errs []error
	seen := map[string]bool{}
	for _, m := range reply.Machines {
		switch {
		case !asked[m.ID]:
			errs = append(errs, fmt.Errorf("reply names machine %q, which was not asked for", m.ID))
			continue
		case seen[m.ID]:
			errs = append(errs, fmt.Errorf("reply names machine %q twice", m.ID))
			continue
		case !validState(m.State):
			errs = append(errs, fmt.Errorf("machine %q: unknown state %q", m.ID, m.State))
			msg := fmt.Sprintf("provider reported state %q", m.State)
			if m.Error != "" {
				msg = m.Error + "; " + msg
			}
			m.State, m.Error = StateFailed, msg
		}
		seen[m.ID] = true
		ms = append(ms, m)
	}
	if len(ms) < len(req.Nodes) {
		errs = append(errs, fmt.Errorf("asked for %d machines, got %d: %w", len(req.Nodes), len(ms), ErrIncomplete))
	}
	if len(errs) > 0 {
		return ms, opError(KindExec, "create", req.Pool, joinErrors(errs))
	}
	return ms, nil
}

// Status runs `status` with {"pool":P} on stdin and expects
// {"machines":[...]}: every machine of the pool, each once, in a known state.
func (e *Exec) Status(ctx context.Context, pool string) ([]Machine, error) {
	var reply machinesReply
	err := e.call(ctx, "status", struct {
		Pool string `json:"pool"`
	}{pool}, &reply)
	if err == nil {
		err = checkStatus(reply.Machines)
	}
	if err != nil {
		return nil, opError(KindExec, "status", pool, err)
	}
	return reply.Machines, nil
}

func checkStatus(ms []Machine) error {
	seen := map[string]bool{}
	for _, m := range ms {
		switch {
		case m.ID == "":
			return errors.New("reply has a machine without an ID")
		case seen[m.ID]:
			return fmt.Errorf("reply names machine %q twice", m.ID)
		case !validState(m.State):
			return fmt.Errorf("machine %q: unknown state %q", m.ID, m.State)
		}
		seen[m.ID] = true
	}
	return nil
}

// Delete runs `delete` with {"pool":P,"ids":[...]} on stdin and expects any
// JSON value (conventionally {}).
func (e *Exec) Delete(ctx context.Context, pool string, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	var reply any
	err := e.call(ctx, "delete", struct {
		Pool string   `json:"pool"`
		IDs  []string `json:"ids"`
	}{pool, ids}, &reply)
	if err != nil {
		return opError(KindExec, "delete", pool, err)
	}
	return nil
}

// call runs the command for op with req as JSON on stdin and decodes its
// stdout, one JSON value, into reply.
func (e *Exec) call(ctx context.Context, op string, req, reply any) error {
	in, err := json.Marshal(req)
	if err != nil {
		return err
	}
	name := e.cfg.Command + " " + op
	tctx, cancel := context.WithTimeout(ctx, e.cfg.Timeout)
	defer cancel()
	cmd := exec.CommandContext(tctx, e.cfg.Command, append(slices.Clone(e.cfg.Args), op)...)
	cmd.Env = append(sysmon.UserEnviron(), e.cfg.Env...)
	cmd.Stdin = bytes.NewReader(in)
	stdout := &cappedBuffer{max: maxReply}
	stderr := &tailBuffer{max: stderrTail}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = waitDelay
	err = cmd.Run()
	var exitErr *exec.ExitError
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("running %s: %w", name, ctx.Err())
	case tctx.Err() != nil:
		return fmt.Errorf("running %s: timed out after %v%s", name, e.cfg.Timeout, stderr.suffix())
	case errors.As(err, &exitErr):
		return fmt.Errorf("running %s: %v%s", name, exitErr.ProcessState, stderr.suffix())
	case errors.Is(err, exec.ErrWaitDelay):
		// It exited 0 and a background child still holds stdout: the
		// reply is what it wrote before exiting.
	case err != nil:
		return fmt.Errorf("running %s: %w", name, err)
	}
	if stdout.over {
		return fmt.Errorf("%s: reply is larger than %d bytes", name, maxReply)
	}
	if err := decodeOne(stdout.buf, reply); err != nil {
		return fmt.Errorf("%s: %w%s", name, err, stderr.suffix())
	}
	return nil
}

// decodeOne decodes b, which must hold exactly one JSON value, into v.
func decodeOne(b []byte, v any) error {
	if len(bytes.TrimSpace(b)) == 0 {
		return errors.New("empty reply on stdout, want JSON")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("malformed JSON reply: %w (stdout starts %q)", err, head(b, 200))
	}
	if rest := bytes.TrimSpace(b[dec.InputOffset():]); len(rest) > 0 {
		return fmt.Errorf("malformed JSON reply: data after the JSON value: %q", head(rest, 200))
	}
	return nil
}

func head(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}

// cappedBuffer keeps the first max bytes written to it and discards the
// rest (so the writer is never blocked), noting that it did.
type cappedBuffer struct {
	buf  []byte
	max  int
	over bool
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	room := b.max - len(b.buf)
	if len(p) > room {
		b.buf = append(b.buf, p[:room]...)
		b.over = true
		return len(p), nil
	}
	b.buf = append(b.buf, p...)
	return len(p), nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	buf []byte
	max int
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.buf = append(b.buf, p...)
	if len(b.buf) > b.max {
		n := copy(b.buf, b.buf[len(b.buf)-b.max:])
		b.buf = b.buf[:n]
	}
	return len(p), nil
}

// suffix is "; stderr: TAIL", or "" when nothing was written to stderr.
func (b *tailBuffer) suffix() string {
	s := strings.TrimSpace(strings.ToValidUTF8(string(b.buf), ""))
	if s == "" {
		return ""
	}
	return "; stderr: " + s
}
