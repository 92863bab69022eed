package server

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/lotehq/lote/api"
	"github.com/lotehq/lote/internal/blob"
	"github.com/lotehq/lote/internal/core"
	"github.com/lotehq/lote/internal/store"
)

// Data containers belong to users, like jobs: the first write naming a
// container (a put, or a submission with an output there) claims it for
// the caller, and the claim is committed before that write goes on. From
// then on only its owner, admins and agents (staging tasks' files with
// their node credential; the owner was checked at submission) may use it;
// to anyone else it answers 404, as if it did not exist. The system
// container _lote is shared under the narrower rules of systemAccess.

// roleNode is the identity of a request made with a node's credential.
const roleNode = "node"

// dataOwner is a container's owner and the batch that recorded the claim.
type dataOwner struct {
	name string
	seq  uint64
}

// dataOp is what a request does with a container.
type dataOp int

const (
	dataRead   dataOp = iota // get, head, list, a task's input
	dataWrite                // put, a task's output: claims an unowned container
	dataRemove               // delete
)

// dataAccess decides whether id may use ref for op. claim reports a write
// to a container nobody owns: the caller takes it. It needs e.mu held.
func (e *engine) dataAccess(id identity, ref blob.Ref, op dataOp) (claim bool, err error) {
	owner, owned := e.dataOwners[ref.Container]
	if id.admin() || id.role == roleNode {
		return id.admin() && op == dataWrite && !owned && !strings.HasPrefix(ref.Container, "_"), nil
	}
	if ref.Container == blob.SystemContainer {
		if systemAccess(ref.Path, op) {
			return false, nil
		}
		return false, noContainer(ref.Container)
	}
	switch {
	case owned && owner.name == id.name:
		return false, nil
	case !owned && op == dataWrite && !strings.HasPrefix(ref.Container, "_"):
		return true, nil
	}
	return false, noContainer(ref.Container)
}

// systemAccess says what a user may do in the system container: read and
// write uploads/SHA256/… (the CLI's uploads of local inputs; a put there
// must carry that SHA-256, so no one can change what another user's
// submission stages), and read apps/… (application packages, shared by
// all; admins upload them). Checkpoints and logs are reached only through
// their tasks.
func systemAccess(path string, op dataOp) bool {
	if strings.HasPrefix(path, "apps/") {
		return op == dataRead
	}
	parts := strings.SplitN(path, "/", 3)
	return len(parts) == 3 && parts[0] == "uploads" && isSHA256(parts[1]) && op != dataRemove
}

func isSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !(s[i] >= '0' && s[i] <= '9' || s[i] >= 'a' && s[i] <= 'f') {
			return false
		}
	}
	return true
}

func noContainer(c string) error { return notFound("no data container %q", c) }

// claimData records owner as container's owner in the open batch. It needs
// e.mu held.
func (e *engine) claimData(container, owner string, now time.Time) {
	e.dataOwners[container] = dataOwner{name: owner, seq: e.seq}
	e.open.owners = append(e.open.owners, store.DataOwner{Container: container, Owner: owner, CreatedAt: now.UnixNano()})
}

// useData checks that the caller may use ref for op, claims the container
// for a first write, and returns once the container's owner is durable, so
// no object is written into a container whose claim a crash could undo.
func (s *Server) useData(ctx context.Context, ref blob.Ref, op dataOp) error {
	id := callerOf(ctx)
	e := s.eng
	e.mu.Lock()
	claim, err := e.dataAccess(id, ref, op)
	if err == nil && claim {
		e.claimData(ref.Container, id.name, e.now())
	}
	seq := e.dataOwners[ref.Container].seq
	e.mu.Unlock()
	if err != nil {
		return err
	}
	if claim {
		e.kick()
	}
	return e.wait(ctx, seq)
}

// visibleContainers filters the data store's containers to those the caller
// may list: all for admins, their own for users.
func (s *Server) visibleContainers(id identity, all []string) []string {
	if id.admin() || id.role == roleNode {
		return all
	}
	s.eng.mu.Lock()
	defer s.eng.mu.Unlock()
	var out []string
	for _, c := range all {
		if o, ok := s.eng.dataOwners[c]; ok && o.name == id.name {
			out = append(out, c)
		}
	}
	return out
}

// checkTaskData checks that every data:// input and output of a task add
// names a container the caller may use, and returns the unowned containers
// its outputs claim (to be claimed once the add succeeds). field prefixes
// the wire path. It needs e.mu held.
func (e *engine) checkTaskData(id identity, a *core.TaskAdd, field string) ([]string, error) {
	var claims []string
	check := func(t *core.Template, f string) error {
		for i, in := range t.Inputs {
			if err := e.checkTaskRef(id, in.Source, dataRead, fmt.Sprintf("%sinputs[%d].source", f, i), &claims); err != nil {
				return err
			}
		}
		for i, out := range t.Outputs {
			if err := e.checkTaskRef(id, out.Dest, dataWrite, fmt.Sprintf("%soutputs[%d].destination", f, i), &claims); err != nil {
				return err
			}
		}
		return nil
	}
	if a.Template != nil {
		if err := check(a.Template, field+"template."); err != nil {
			return nil, err
		}
	}
	for i := range a.Items {
		if err := check(&a.Items[i].Template, fmt.Sprintf("%stasks[%d].", field, i)); err != nil {
			return nil, err
		}
	}
	return claims, nil
}

// checkJobData checks the inputs of a job's preparation and release tasks
// like checkTaskData. It needs e.mu held.
func (e *engine) checkJobData(id identity, spec core.JobSpec, field string) error {
	for _, st := range []struct {
		t     *core.StartTask
		field string
	}{{spec.PrepTask, "prep_task."}, {spec.ReleaseTask, "release_task."}} {
		if st.t == nil {
			continue
		}
		for i, in := range st.t.Inputs {
			if err := e.checkTaskRef(id, in.Source, dataRead, fmt.Sprintf("%s%sinputs[%d].source", field, st.field, i), nil); err != nil {
				return err
			}
		}
	}
	return nil
}

func (e *engine) checkTaskRef(id identity, src string, op dataOp, field string, claims *[]string) error {
	if !strings.HasPrefix(src, blob.Scheme) {
		return nil // an http(s) input
	}
	ref, err := blob.ParseRef(src)
	if err != nil {
		return invalid(field, "%v", err)
	}
	claim, err := e.dataAccess(id, ref, op)
	if err != nil {
		return &httpError{http.StatusNotFound, api.CodeNotFound,
			fmt.Sprintf("no data container %q (or it is not yours)", ref.Container), field}
	}
	if claim && claims != nil && !slices.Contains(*claims, ref.Container) {
		*claims = append(*claims, ref.Container)
	}
	return nil
}

// adoptContainers gives containers that hold data but no recorded owner
// (written before owners were recorded, or into the bucket directly) to
// admin, so no user can claim what someone else wrote.
func (s *Server) adoptContainers(ctx context.Context, owners []store.DataOwner) error {
	s.eng.dataOwners = make(map[string]dataOwner, len(owners))
	for _, o := range owners {
		s.eng.dataOwners[o.Container] = dataOwner{name: o.Owner}
	}
	all, err := s.blob.Containers(ctx)
	if err != nil {
		return fmt.Errorf("listing data containers: %w", err)
	}
	var b store.Batch
	now := s.cfg.Now().UnixNano()
	for _, c := range all {
		if _, ok := s.eng.dataOwners[c]; !ok && !strings.HasPrefix(c, "_") {
			b.DataOwners = append(b.DataOwners, store.DataOwner{Container: c, Owner: RoleAdmin, CreatedAt: now})
			s.eng.dataOwners[c] = dataOwner{name: RoleAdmin}
		}
	}
	if b.Empty() {
		return nil
	}
	s.log.Info("data containers without an owner now belong to admin", "containers", len(b.DataOwners))
	return s.st.Apply(ctx, &b)
}
