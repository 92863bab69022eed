// Package journal holds Go benchmarks of Lote's journal: the durable record
// the server's group commit writes and a restart reads back. They drive the
// real core (internal/core) and the real SQLite store (synchronous=full), in
// process, so a regression in what a batch holds, how it is encoded or how it
// is loaded shows in review without the end-to-end bench:
//
//	go test -run '^$' -bench . ./bench/journal
//
// The store's own BenchmarkApplyTasks (internal/store/sqlite) measures task
// rows alone; these measure the batches the core really produces.
package journal
