// Package autoscale evaluates a pool's autoscale formula and turns the result
// into a plan of nodes to create and remove. It is pure: no I/O, no clock, no
// goroutines; the shell passes in `now`, the current Metrics and a History of
// samples, and applies the Plan through its provider.
//
// Formulas are github.com/expr-lang/expr expressions, chosen over cel-go
// because it has no dependencies, treats numbers and maps natively (a formula
// returns a number or a map), has `let` bindings, and bounds evaluation with a
// memory budget.
//
// # Variables
//
// pending_tasks (active plus running), active_tasks, running_tasks,
// succeeded_tasks, failed_tasks, pending_slots (slots the pending tasks
// need), current_nodes (dedicated), current_spot_nodes (preempted included),
// idle_nodes, preempted_nodes and slots_per_node are numbers (float64, as in
// Azure Batch; write int(x) % 2 for a remainder). now is the evaluation time
// in UTC with methods Year, Month (1-12), Day, YearDay, Weekday (0 = Sunday),
// Hour, Minute, Second and Unix. The builtins now(), date() and timezone()
// are disabled: the clock is the now variable, and zones would read the zone
// database. The scalar builtins min, max, abs, ceil, floor and round work as
// usual: min(4, pending_tasks).
//
// # Window functions
//
// avg_over(v, w), max_over(v, w), min_over(v, w), count_over(v, w),
// percentile_over(v, p, w) and coverage(v, w) look at the samples of variable
// v in the window w ending at now, like Azure Batch's GetSample and
// GetSamplePercent. v is a variable written bare and w a duration string
// ("3m", "1h30m"); anything else is a compile error. The window holds the
// History's samples strictly inside it plus the current value at now, so it
// is never empty: with no history every function but coverage returns the
// current value (Azure fails the evaluation instead; acting on what is known
// is less surprising). percentile_over is nearest-rank, p in 0..100.
// coverage is the fraction, 0 to 1, of the window covered by samples when
// each sample stands for the History's sample interval ending at it (30s by
// default): a History sampled every interval for at least w gives 1, a young
// or gappy one less, and with no history at all it is interval/w.
//
// # Results
//
// A formula evaluates to a number, the dedicated node target, or to a map
// with keys target_nodes, target_spot_nodes (missing means 0) and
// deallocation ("requeue", "terminate" or "task_completion"). Unknown keys,
// wrong types, NaN and infinities are errors naming the key. Targets round
// up, since a fraction of a node's work still needs a node (within 1e-9 of an
// integer counts as that integer, absorbing float error), and negative ones
// mean 0. Bounds then clamp the total of dedicated and spot nodes: above Max
// spot nodes are cut first, below Min dedicated nodes are added, as dedicated
// capacity is the part that stays.
package autoscale
