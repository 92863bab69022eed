// Package sqlite is the embedded store: one SQLite database in WAL mode,
// written by one connection, one transaction per group commit. Tasks are
// upserted many rows per statement because per-row statement overhead, not
// disk, bounds throughput at tens of thousands of task changes a second.
package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"runtime"
	"strings"
	"sync"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/lotehq/lote/internal/core"
	"github.com/lotehq/lote/internal/store"
)

// migrations are applied in order; PRAGMA user_version records how many ran.
// Never edit one that has shipped: append a new one.
var migrations = []string{
	`CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
	CREATE TABLE pools (id TEXT PRIMARY KEY, body BLOB NOT NULL);
	CREATE TABLE nodes (id TEXT PRIMARY KEY, body BLOB NOT NULL);
	CREATE TABLE jobs (id TEXT PRIMARY KEY, body BLOB NOT NULL);
	CREATE TABLE task_groups (
		job_id TEXT NOT NULL, seq INTEGER NOT NULL, body BLOB NOT NULL, cursor INTEGER NOT NULL,
		PRIMARY KEY (job_id, seq)) WITHOUT ROWID;
	CREATE TABLE tasks (num INTEGER PRIMARY KEY, job_id TEXT NOT NULL, body BLOB NOT NULL);
	CREATE INDEX tasks_job ON tasks (job_id);
	CREATE TABLE task_logs (
		job_id TEXT NOT NULL, task_id TEXT NOT NULL, attempt INTEGER NOT NULL, stdout BLOB, stderr BLOB,
		PRIMARY KEY (job_id, task_id, attempt)) WITHOUT ROWID;`,
	`CREATE TABLE idempotency (
		key TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, status INTEGER NOT NULL, body BLOB NOT NULL,
		created_at INTEGER NOT NULL);`,
	`CREATE TABLE tokens (
		hash TEXT PRIMARY KEY, name TEXT NOT NULL, role TEXT NOT NULL, created_at INTEGER NOT NULL,
		revoked_at INTEGER NOT NULL);`,
	`CREATE TABLE data_owners (
		container TEXT PRIMARY KEY, owner TEXT NOT NULL, created_at INTEGER NOT NULL) WITHOUT ROWID;`,
	// A job's task rows are found by their numbers (store.DeletedJob):
	// keeping the index up took about a quarter of the store's time in
	// bench/journal's commits.
	`DROP INDEX tasks_job;`,
}

const taskCols = 3

// maxReaders bounds the reader connections.
const maxReaders = 4

// rowsPerInsert is the most task rows one upsert statement carries: 256
// took about 15 % less CPU than 64 in bench/journal's commit of 1,024
// tasks (binding, statement journal and other per-statement costs).
const rowsPerInsert = 256

// Store is the SQLite engine.
type Store struct {
	w *sql.DB // the one writer connection
	r *sql.DB // readers

	// Statements are prepared once: parsing SQL per batch cost more than
	// executing it.
	meta, pools, nodes, jobs, groups, cursor, logs, idem *sql.Stmt

	// applyMu serializes Apply. tasks[n] upserts n task rows; Apply
	// prepares one the first time a batch needs it, before its transaction
	// takes the writer connection.
	applyMu sync.Mutex
	tasks   map[int]*sql.Stmt
}

// Options tune durability.
type Options struct {
	// Synchronous is SQLite's synchronous setting: "full" (default: a
	// committed batch survives power loss) or "normal" (survives a process
	// crash; the last batches may be lost with the machine).
	Synchronous string
}

// Open opens (creating if needed) the database at path and migrates it.
func Open(ctx context.Context, path string, o Options) (*Store, error) {
	sync := strings.ToUpper(o.Synchronous)
	if sync == "" {
		sync = "FULL"
	}
	if sync != "FULL" && sync != "NORMAL" {
		return nil, fmt.Errorf("sqlite: synchronous must be full or normal, not %q", o.Synchronous)
	}
	q := url.Values{}
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous("+sync+")")
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "foreign_keys(OFF)")
	// Multi-row upserts need a statement journal; in memory it costs no
	// write syscalls (it was a quarter of the server's CPU on a temp file).
	q.Add("_pragma", "temp_store(MEMORY)")
	dsn := "file:" + path + "?" + q.Encode()
	w, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	s := &Store{w: w}
	if err := s.check(ctx); err != nil {
		w.Close()
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	if err := s.migrate(ctx); err != nil {
		w.Close()
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	r, err := sql.Open("sqlite", dsn+"&_pragma=query_only(1)")
	if err != nil {
		w.Close()
		return nil, err
	}
	r.SetMaxOpenConns(maxReaders)
	s.r = r
	if err := s.prepare(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	return s, nil
}

func (s *Store) prepare(ctx context.Context) error {
	var err error
	prep := func(q string) *sql.Stmt {
		if err != nil {
			return nil
		}
		var st *sql.Stmt
		st, err = s.w.PrepareContext(ctx, q)
		return st
	}
	s.meta = prep(`INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)`)
	s.pools = prep(`INSERT OR REPLACE INTO pools (id, body) VALUES (?, ?)`)
	s.nodes = prep(`INSERT OR REPLACE INTO nodes (id, body) VALUES (?, ?)`)
	s.jobs = prep(`INSERT OR REPLACE INTO jobs (id, body) VALUES (?, ?)`)
	s.groups = prep(`INSERT OR REPLACE INTO task_groups (job_id, seq, body, cursor) VALUES (?, ?, ?, ?)`)
	s.cursor = prep(`UPDATE task_groups SET cursor = ? WHERE job_id = ? AND seq = ?`)
	s.idem = prep(`INSERT OR REPLACE INTO idempotency (key, fingerprint, status, body, created_at) VALUES (?, ?, ?, ?, ?)`)
	s.logs = prep(`INSERT OR REPLACE INTO task_logs (job_id, task_id, attempt, stdout, stderr) VALUES (?, ?, ?, ?, ?)`)
	s.tasks = map[int]*sql.Stmt{}
	return err
}

// ErrDamaged means the database failed its integrity check: the server must
// not start on it (it would run with part of its state missing).
var ErrDamaged = errors.New("database is damaged")

// check runs SQLite's quick integrity check (structure of every table and
// index, not the contents of every row) before anything else touches the
// file.
func (s *Store) check(ctx context.Context) error {
	rows, err := s.w.QueryContext(ctx, "PRAGMA quick_check")
	if err != nil {
		return fmt.Errorf("%w: %v", ErrDamaged, err)
	}
	defer rows.Close()
	var problems []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			return fmt.Errorf("%w: %v", ErrDamaged, err)
		}
		if line != "ok" {
			problems = append(problems, line)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("%w: %v", ErrDamaged, err)
	}
	if len(problems) > 0 {
		if len(problems) > 5 {
			problems = append(problems[:5], fmt.Sprintf("and %d more", len(problems)-5))
		}
		return fmt.Errorf("%w: %s", ErrDamaged, strings.Join(problems, "; "))
	}
	return nil
}

func (s *Store) migrate(ctx context.Context) error {
	var v int
	if err := s.w.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return fmt.Errorf("reading schema version: %w", err)
	}
	if v > len(migrations) {
		return fmt.Errorf("database schema version %d is newer than this binary knows (%d)", v, len(migrations))
	}
	for ; v < len(migrations); v++ {
		tx, err := s.w.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, migrations[v]); err != nil {
			tx.Rollback()
			return fmt.Errorf("migration %d: %w", v+1, err)
		}
		if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", v+1)); err != nil {
			tx.Rollback()
			return fmt.Errorf("migration %d: %w", v+1, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("migration %d: %w", v+1, err)
		}
	}
	return nil
}

// Close closes the database.
func (s *Store) Close() error {
	return errors.Join(s.r.Close(), s.w.Close())
}

// Apply writes a batch in one transaction.
func (s *Store) Apply(ctx context.Context, b *store.Batch) error {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	for _, n := range [...]int{min(len(b.Tasks), rowsPerInsert), len(b.Tasks) % rowsPerInsert} {
		if n > 0 && s.tasks[n] == nil {
			st, err := s.w.PrepareContext(ctx, insertTasksSQL(n))
			if err != nil {
				return fmt.Errorf("store: preparing: %w", err)
			}
			s.tasks[n] = st
		}
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: begin: %w", err)
	}
	if err := s.apply(ctx, tx, b); err != nil {
		tx.Rollback()
		return fmt.Errorf("store: apply: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: commit: %w", err)
	}
	return nil
}

func (s *Store) apply(ctx context.Context, tx *sql.Tx, b *store.Batch) error {
	exec := func(st *sql.Stmt, args ...any) error {
		_, err := tx.StmtContext(ctx, st).ExecContext(ctx, args...)
		return err
	}
	for _, j := range b.DeletedJobs {
		for _, q := range []string{`DELETE FROM jobs WHERE id = ?`, `DELETE FROM task_groups WHERE job_id = ?`,
			`DELETE FROM task_logs WHERE job_id = ?`} {
			if _, err := tx.ExecContext(ctx, q, j.ID); err != nil {
				return err
			}
		}
		if j.LastTask > 0 {
			if _, err := tx.ExecContext(ctx, `DELETE FROM tasks WHERE num BETWEEN ? AND ? AND job_id = ?`,
				j.FirstTask, j.LastTask, j.ID); err != nil {
				return err
			}
		}
	}
	for _, id := range b.DeletedNodes {
		if _, err := tx.ExecContext(ctx, `DELETE FROM nodes WHERE id = ?`, id); err != nil {
			return err
		}
	}
	for _, id := range b.DeletedPools {
		if _, err := tx.ExecContext(ctx, `DELETE FROM pools WHERE id = ?`, id); err != nil {
			return err
		}
	}
	for k, v := range b.Meta {
		if err := exec(s.meta, k, v); err != nil {
			return err
		}
	}
	for _, r := range b.Pools {
		if err := execJSON(exec, s.pools, r.ID, r); err != nil {
			return err
		}
	}
	for _, r := range b.Nodes {
		if err := execJSON(exec, s.nodes, r.ID, r); err != nil {
			return err
		}
	}
	for _, r := range b.Jobs {
		if err := execJSON(exec, s.jobs, r.ID, r); err != nil {
			return err
		}
	}
	for _, r := range b.Groups {
		body, err := json.Marshal(r)
		if err != nil {
			return err
		}
		if err := exec(s.groups, r.JobID, r.Seq, body, r.Cursor); err != nil {
			return err
		}
	}
	for _, c := range b.Cursors {
		if err := exec(s.cursor, c.Cursor, c.JobID, c.Seq); err != nil {
			return err
		}
	}
	if err := s.putTasks(exec, b.Tasks); err != nil {
		return err
	}
	for _, t := range b.Tokens {
		if _, err := tx.ExecContext(ctx, `INSERT OR REPLACE INTO tokens (hash, name, role, created_at, revoked_at) VALUES (?, ?, ?, ?, ?)`,
			t.Hash, t.Name, t.Role, t.CreatedAt, t.RevokedAt); err != nil {
			return err
		}
	}
	for _, o := range b.DataOwners {
		if _, err := tx.ExecContext(ctx, `INSERT OR REPLACE INTO data_owners (container, owner, created_at) VALUES (?, ?, ?)`,
			o.Container, o.Owner, o.CreatedAt); err != nil {
			return err
		}
	}
	for _, i := range b.Idempotency {
		if err := exec(s.idem, i.Key, i.Fingerprint, i.Status, i.Body, i.CreatedAt); err != nil {
			return err
		}
	}
	for _, l := range b.Logs {
		if err := exec(s.logs, l.JobID, l.TaskID, l.Attempt, l.Stdout, l.Stderr); err != nil {
			return err
		}
	}
	return nil
}

type execFunc func(st *sql.Stmt, args ...any) error

func execJSON(exec execFunc, st *sql.Stmt, id string, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return exec(st, id, body)
}

func insertTasksSQL(rows int) string {
	var sb strings.Builder
	sb.WriteString(`INSERT INTO tasks (num, job_id, body) VALUES `)
	for i := 0; i < rows; i++ {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString("(?,?,?)")
	}
	sb.WriteString(` ON CONFLICT (num) DO UPDATE SET body = excluded.body`)
	return sb.String()
}

func (s *Store) putTasks(exec execFunc, tasks []core.TaskRecord) error {
	args := make([]any, 0, rowsPerInsert*taskCols)
	var buf []byte
	for start := 0; start < len(tasks); start += rowsPerInsert {
		chunk := tasks[start:min(start+rowsPerInsert, len(tasks))]
		args = args[:0]
		buf = buf[:0]
		// One buffer holds the chunk's bodies; each arg is a slice of it.
		offs := make([]int, len(chunk)+1)
		for i := range chunk {
			buf = encodeTask(buf, &chunk[i])
			offs[i+1] = len(buf)
		}
		for i := range chunk {
			args = append(args, chunk[i].Num, chunk[i].JobID, buf[offs[i]:offs[i+1]])
		}
		if err := exec(s.tasks[len(chunk)], args...); err != nil {
			return err
		}
	}
	return nil
}

// Meta reads one setting; store.ErrNotFound when unset.
func (s *Store) Meta(ctx context.Context, key string) (string, error) {
	var v string
	err := s.r.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = ?`, key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", store.ErrNotFound
	}
	return v, err
}

// Tokens reads every API token record.
func (s *Store) Tokens(ctx context.Context) ([]store.Token, error) {
	rows, err := s.w.QueryContext(ctx, `SELECT hash, name, role, created_at, revoked_at FROM tokens`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.Token
	for rows.Next() {
		var t store.Token
		if err := rows.Scan(&t.Hash, &t.Name, &t.Role, &t.CreatedAt, &t.RevokedAt); err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// DataOwners reads every data container's owner.
func (s *Store) DataOwners(ctx context.Context) ([]store.DataOwner, error) {
	rows, err := s.w.QueryContext(ctx, `SELECT container, owner, created_at FROM data_owners`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.DataOwner
	for rows.Next() {
		var o store.DataOwner
		if err := rows.Scan(&o.Container, &o.Owner, &o.CreatedAt); err != nil {
			return nil, err
		}
		out = append(out, o)
	}
	return out, rows.Err()
}

// Idempotency reads remembered answers since a time and forgets older ones.
func (s *Store) Idempotency(ctx context.Context, since int64) ([]store.Idempotent, error) {
	if _, err := s.w.ExecContext(ctx, `DELETE FROM idempotency WHERE created_at < ?`, since); err != nil {
		return nil, err
	}
	rows, err := s.w.QueryContext(ctx, `SELECT key, fingerprint, status, body, created_at FROM idempotency`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.Idempotent
	for rows.Next() {
		var i store.Idempotent
		if err := rows.Scan(&i.Key, &i.Fingerprint, &i.Status, &i.Body, &i.CreatedAt); err != nil {
			return nil, err
		}
		out = append(out, i)
	}
	return out, rows.Err()
}

// Logs reads a finished attempt's stored output; empty output was never
// stored and reads as empty.
func (s *Store) Logs(ctx context.Context, jobID, taskID string, attempt int) ([]byte, []byte, error) {
	var out, errb []byte
	err := s.r.QueryRowContext(ctx, `SELECT stdout, stderr FROM task_logs WHERE job_id = ? AND task_id = ? AND attempt = ?`,
		jobID, taskID, attempt).Scan(&out, &errb)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil, nil
	}
	return out, errb, err
}

// Load reads every record but the tasks' (see LoadTasks).
func (s *Store) Load(ctx context.Context) (core.Snapshot, error) {
	var snap core.Snapshot
	if err := loadJSON(ctx, s.w, "pools", &snap.Pools); err != nil {
		return snap, err
	}
	if err := loadJSON(ctx, s.w, "nodes", &snap.Nodes); err != nil {
		return snap, err
	}
	if err := loadJSON(ctx, s.w, "jobs", &snap.Jobs); err != nil {
		return snap, err
	}
	rows, err := s.w.QueryContext(ctx, `SELECT body, cursor FROM task_groups`)
	if err != nil {
		return snap, err
	}
	for rows.Next() {
		var body []byte
		var g core.GroupRecord
		if err := rows.Scan(&body, &g.Cursor); err != nil {
			rows.Close()
			return snap, err
		}
		cur := g.Cursor
		if err := json.Unmarshal(body, &g); err != nil {
			rows.Close()
			return snap, fmt.Errorf("task group: %w", err)
		}
		g.Cursor = cur
		snap.Groups = append(snap.Groups, g)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return snap, err
	}
	return snap, nil
}

// loadParts is how many ranges of task numbers LoadTasks reads at once
// (tests change it).
var loadParts = defaultLoadParts

// defaultLoadParts reads one range per CPU, up to the reader connections,
// once there are enough rows to pay off.
func defaultLoadParts(rows int64) int {
	if rows < 50_000 {
		return 1
	}
	return min(runtime.GOMAXPROCS(0), maxReaders)
}

// taskBatch is how many task records LoadTasks hands over at once.
const taskBatch = 1024

// LoadTasks reads every task record and hands them to fn in batches, in no
// particular order. Decoding is CPU-bound (a million rows took seconds,
// most of a restart), so a large table is read as ranges of task numbers,
// each on its own reader connection, while fn (called from this goroutine
// only) takes the batches already decoded. A batch is reused once fn
// returns. Nothing may write while the server loads.
func (s *Store) LoadTasks(ctx context.Context, fn func([]core.TaskRecord) error) error {
	var lo, hi sql.NullInt64
	if err := s.w.QueryRowContext(ctx, `SELECT min(num) FROM tasks`).Scan(&lo); err != nil {
		return fmt.Errorf("reading tasks: %w", err)
	}
	if err := s.w.QueryRowContext(ctx, `SELECT max(num) FROM tasks`).Scan(&hi); err != nil {
		return fmt.Errorf("reading tasks: %w", err)
	}
	if !lo.Valid {
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	span := hi.Int64 - lo.Int64 + 1
	parts := loadParts(span)
	// Every batch is in one reader's hands, in full, in fn's hands or in
	// free: free never fills up.
	full := make(chan []core.TaskRecord, 2*parts)
	free := make(chan []core.TaskRecord, 3*parts+1)
	errs := make([]error, parts+1)
	var wg sync.WaitGroup
	for i := range parts {
		from, to := lo.Int64+span*int64(i)/int64(parts), lo.Int64+span*int64(i+1)/int64(parts)
		wg.Go(func() { errs[i] = s.readTasks(ctx, from, to, free, full) })
	}
	go func() {
		wg.Wait()
		close(full)
	}()
	for b := range full {
		if errs[parts] == nil {
			if errs[parts] = fn(b); errs[parts] != nil {
				cancel()
			}
		}
		free <- b[:0]
	}
	if err := errs[parts]; err != nil {
		return err
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("reading tasks: %w", err)
	}
	return nil
}

// readTasks decodes the tasks numbered from from to to (excluded) into
// batches taken from free (or new ones) and sends them to full.
func (s *Store) readTasks(ctx context.Context, from, to int64, free <-chan []core.TaskRecord, full chan<- []core.TaskRecord) error {
	rows, err := s.r.QueryContext(ctx, `SELECT num, job_id, body FROM tasks WHERE num >= ? AND num < ?`, from, to)
	if err != nil {
		return err
	}
	defer rows.Close()
	batch := func() []core.TaskRecord {
		select {
		case b := <-free:
			return b
		default:
			return make([]core.TaskRecord, 0, taskBatch)
		}
	}
	send := func(b []core.TaskRecord) error {
		select {
		case full <- b:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	var d taskDecoder
	b := batch()
	for rows.Next() {
		var num int64
		var job string
		var body sql.RawBytes
		if err := rows.Scan(&num, &job, &body); err != nil {
			return err
		}
		b = append(b, core.TaskRecord{Num: num, JobID: job})
		if err := d.decode(body, &b[len(b)-1]); err != nil {
			return fmt.Errorf("task %d of job %s: %w", num, job, err)
		}
		if len(b) == cap(b) {
			if err := send(b); err != nil {
				return err
			}
			b = batch()
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if len(b) > 0 {
		return send(b)
	}
	return nil
}

func loadJSON[T any](ctx context.Context, db *sql.DB, table string, out *[]T) error {
	rows, err := db.QueryContext(ctx, "SELECT body FROM "+table)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var body []byte
		if err := rows.Scan(&body); err != nil {
			return err
		}
		var v T
		if err := json.Unmarshal(body, &v); err != nil {
			return fmt.Errorf("%s: %w", table, err)
		}
		*out = append(*out, v)
	}
	return rows.Err()
}
