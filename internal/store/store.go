// Package store defines Lote's durable record: the one place the server's
// state survives a crash. The core says what changed; the server groups those
// changes into batches and a Store applies each batch in one transaction
// (group commit). Engines live in subpackages and pass the conformance suite
// in storetest.
package store

import (
	"context"
	"errors"

	"github.com/lotehq/lote/internal/core"
)

// ErrNotFound is returned for a record that does not exist.
var ErrNotFound = errors.New("not found")

// Cursor is a group's dispatch frontier.
type Cursor struct {
	JobID  string
	Seq    int
	Cursor int
}

// Batch is one group commit: every change the core made since the last one.
// The server keeps only the last version of each object.
type Batch struct {
	Pools   []core.PoolRecord
	Nodes   []core.NodeRecord
	Jobs    []core.JobRecord
	Groups  []core.GroupRecord
	Cursors []Cursor
	Tasks   []core.TaskRecord
	Logs    []core.LogRecord
	Meta    map[string]string
	// Deletions are applied before the saves of the same batch, so an ID
	// deleted and reused in one batch ends up with the new object.
	DeletedJobs  []DeletedJob
	DeletedPools []string
	DeletedNodes []string
	Idempotency  []Idempotent
	Tokens       []Token
	DataOwners   []DataOwner
}

// DeletedJob is a job to delete with its groups, tasks and logs. Its task
// records are found by number: every task of the job has one from
// FirstTask to LastTask (both 0 when it has none), so a store needs no
// index of tasks by job, whose upkeep on every new task costs more than the
// rare deletion saves.
type DeletedJob struct {
	ID                  string
	FirstTask, LastTask int64
}

// DataOwner records who owns a data container: the user whose write first
// named it. Other users' requests for the container answer 404.
type DataOwner struct {
	Container string
	Owner     string
	CreatedAt int64
}

// Token is an API token as stored: its SHA-256 hash, never the token.
type Token struct {
	Hash      string
	Name      string
	Role      string
	CreatedAt int64
	RevokedAt int64 // 0 while valid
}

// Idempotent is the remembered answer to a request sent with an
// Idempotency-Key, committed with the change it made, so a client retrying
// after a crash between commit and reply gets the original answer.
type Idempotent struct {
	Key         string
	Fingerprint string // hash of the request, to refuse a key reused for another request
	Status      int
	Body        []byte
	CreatedAt   int64
}

// Empty reports whether the batch changes nothing.
func (b *Batch) Empty() bool {
	return len(b.Pools)+len(b.Nodes)+len(b.Jobs)+len(b.Groups)+len(b.Cursors)+len(b.Tasks)+len(b.Logs)+len(b.Meta)+
		len(b.DeletedJobs)+len(b.DeletedPools)+len(b.DeletedNodes)+len(b.Idempotency)+len(b.Tokens)+len(b.DataOwners) == 0
}

// Store is a durable engine.
type Store interface {
	// Load reads every record but the tasks', to rebuild the core at
	// start-up; Snapshot.Tasks stays empty.
	Load(ctx context.Context) (core.Snapshot, error)
	// LoadTasks reads every task record and hands them to fn in batches, in
	// no particular order, so that the core is rebuilt while the store is
	// still reading (core.Restorer). fn is called from the caller's
	// goroutine only and must not keep a batch: its memory is reused.
	LoadTasks(ctx context.Context, fn func([]core.TaskRecord) error) error
	// Apply writes a batch atomically and durably.
	Apply(ctx context.Context, b *Batch) error
	// Meta reads one server setting (admin token hash, schema facts).
	Meta(ctx context.Context, key string) (string, error)
	// Idempotency reads remembered answers created at or after since (unix
	// ns) and forgets older ones.
	Idempotency(ctx context.Context, since int64) ([]Idempotent, error)
	// Tokens reads every API token record.
	Tokens(ctx context.Context) ([]Token, error)
	// DataOwners reads every data container's owner.
	DataOwners(ctx context.Context) ([]DataOwner, error)
	// Logs reads a finished attempt's stored output.
	Logs(ctx context.Context, jobID, taskID string, attempt int) (stdout, stderr []byte, err error)
	Close() error
}
