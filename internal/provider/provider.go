// Package provider creates and deletes a pool's nodes: machines (or
// processes, or network namespaces) that run `lote agent` and join the pool
// with its join token. A provider knows nothing about tasks; the server
// decides how many nodes a pool gets and calls Create, Status and Delete.
//
// The server, not the provider, picks node IDs and records them before it
// calls Create, and each machine joins under the ID it was created for. So a
// machine that never joins can still be found (Status) and deleted by ID,
// and after a crash between Create and recording the result, the machines
// Status reports are recognisable as this pool's by their IDs.
//
// Kinds: local (Local: agent processes on the server's machine), exec (Exec:
// user commands that speak a JSON protocol, e.g. cloud CLIs), and static
// (Static: no provisioning; users start agents themselves).
package provider

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// Machine states a provider reports.
const (
	StateCreating = "creating" // asked for; not up yet
	StateRunning  = "running"  // up; its agent was started (it may not have joined yet)
	StateFailed   = "failed"   // will not come up by itself; delete it
	StateDeleted  = "deleted"  // gone
)

// Machine is what a provider knows of one node it made.
type Machine struct {
	ID      string `json:"id"`    // the node ID the server asked for
	State   string `json:"state"` // "creating" | "running" | "failed" | "deleted"
	Spot    bool   `json:"spot,omitempty"`
	Address string `json:"address,omitempty"`
	Error   string `json:"error,omitempty"`
}

// NodeRequest asks for one node.
type NodeRequest struct {
	ID   string `json:"id"`
	Spot bool   `json:"spot,omitempty"`
}

// CreateRequest carries what a new machine needs to start `lote agent` and
// join the pool.
type CreateRequest struct {
	Pool      string        `json:"pool"`
	Nodes     []NodeRequest `json:"nodes"`
	Server    string        `json:"server"` // URL agents dial
	JoinToken string        `json:"join_token"`
	CAPEM     string        `json:"ca_pem,omitempty"` // the server's CA when TLS
	Slots     int           `json:"slots,omitempty"`
}

// Provider creates, reports on and deletes the machines of pools. Calls
// for the same node must not overlap; the server serialises them.
type Provider interface {
	// Create starts one machine per requested node. It may return machines
	// together with an error (see ErrIncomplete): those machines exist, or
	// may, and must be tracked or deleted.
	Create(ctx context.Context, req CreateRequest) ([]Machine, error)
	// Status reports every machine of pool the provider knows, in one call.
	Status(ctx context.Context, pool string) ([]Machine, error)
	// Delete deletes machines by ID; deleting an unknown ID is not an error.
	Delete(ctx context.Context, pool string, ids []string) error
}

// Kinds of provider New builds.
const (
	KindStatic = "static"
	KindLocal  = "local"
	KindExec   = "exec"
)

var (
	// ErrIncomplete means Create reported fewer machines than asked for.
	ErrIncomplete = errors.New("incomplete create")
	// ErrNotSupported means the provider does not do this operation (static
	// pools neither create nor delete nodes).
	ErrNotSupported = errors.New("not supported")
)

// Config holds the settings of every kind; New reads the part its kind needs.
type Config struct {
	Exec  ExecConfig
	Local LocalConfig
}

// New builds the provider of a kind; "" means static.
func New(kind string, cfg Config) (Provider, error) {
	switch kind {
	case "", KindStatic:
		return Static{}, nil
	case KindLocal:
		return NewLocal(cfg.Local)
	case KindExec:
		return NewExec(cfg.Exec)
	}
	return nil, fmt.Errorf("provider %q: unknown kind (want static, local or exec)", kind)
}

// Static is the provider of pools whose nodes users start themselves with
// the pool's join token. It knows no machines, and Create and Delete fail
// with ErrNotSupported.
type Static struct{}

func (Static) Create(_ context.Context, req CreateRequest) ([]Machine, error) {
	if len(req.Nodes) == 0 {
		return nil, nil
	}
	return nil, fmt.Errorf("create pool %s: provider static does not create nodes; start agents with the pool's join token: %w",
		req.Pool, ErrNotSupported)
}

func (Static) Status(context.Context, string) ([]Machine, error) { return nil, nil }

func (Static) Delete(_ context.Context, pool string, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	return fmt.Errorf("delete pool %s: provider static does not delete nodes; stop their agents: %w", pool, ErrNotSupported)
}

// validState reports whether s is one of the Machine states.
func validState(s string) bool {
	switch s {
	case StateCreating, StateRunning, StateFailed, StateDeleted:
		return true
	}
	return false
}

// opError wraps err with the provider kind, the operation and the pool.
func opError(kind, op, pool string, err error) error {
	return fmt.Errorf("%s pool %s (provider %s): %w", op, pool, kind, err)
}

// joinErrors is errors.Join on one line: "a; b".
func joinErrors(errs []error) error {
	var nonNil []error
	for _, err := range errs {
		if err != nil {
			nonNil = append(nonNil, err)
		}
	}
	if len(nonNil) == 0 {
		return nil
	}
	return multiError(nonNil)
}

type multiError []error

func (m multiError) Error() string {
	s := make([]string, len(m))
	for i, err := range m {
		s[i] = err.Error()
	}
	return strings.Join(s, "; ")
}

func (m multiError) Unwrap() []error { return m }
