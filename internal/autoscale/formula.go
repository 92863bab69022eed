package autoscale

import (
	"fmt"
	"math"
	"reflect"
	"slices"
	"sort"
	"time"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/vm"
)

const (
	// MaxFormulaLen is the longest formula source Compile accepts, in bytes.
	MaxFormulaLen = 4096
	// memoryBudget bounds what one evaluation may allocate, in expr's units
	// (roughly one per array element or string byte).
	memoryBudget = 100_000
	// maxWindowCalls bounds the window function calls of one evaluation, so
	// a formula looping over a window cannot scan the history without end:
	// at MaxSamples each, the worst evaluation stays near 100ms
	// (BenchmarkEval).
	maxWindowCalls = 100
	// maxNodeCount caps a target before bounds apply, so a huge float
	// converts to int safely.
	maxNodeCount = math.MaxInt32
	// roundingSlack absorbs float error before rounding up: 3.0000000000000004
	// asks for 3 nodes, not 4.
	roundingSlack = 1e-9
)

// Deallocation options a formula may set.
const (
	DeallocRequeue        = "requeue"
	DeallocTerminate      = "terminate"
	DeallocTaskCompletion = "task_completion"
)

// Result keys a formula returning a map may set.
const (
	keyTargetNodes     = "target_nodes"
	keyTargetSpotNodes = "target_spot_nodes"
	keyDeallocation    = "deallocation"
)

// Formula is a compiled autoscale formula. It holds no evaluation state, so
// one Formula may be evaluated any number of times, concurrently.
type Formula struct {
	src     string
	program *vm.Program
}

// Bounds limit a pool's total node count, dedicated plus spot. Max must be
// at least Min, and Min at least 0; Max 0 keeps the pool empty.
type Bounds struct{ Min, Max int }

// Validate reports whether b is usable.
func (b Bounds) Validate() error {
	if b.Min < 0 || b.Max < b.Min {
		return fmt.Errorf("autoscale bounds min %d, max %d: want 0 <= min <= max", b.Min, b.Max)
	}
	return nil
}

// Result is what an evaluation asks for.
type Result struct {
	TargetNodes, TargetSpotNodes int    // after rounding and bounds
	Deallocation                 string // "" when the formula did not set it
	// Vars holds every input variable's value at evaluation, `now` as unix
	// seconds. Eval sets it even when it returns an error.
	Vars map[string]float64
}

// ResultError says what is wrong with the value a formula evaluated to. Key
// names the map key at fault, or is empty when the value as a whole is wrong.
type ResultError struct {
	Key    string
	Reason string
}

func (e *ResultError) Error() string {
	if e.Key == "" {
		return "formula result " + e.Reason
	}
	return fmt.Sprintf("formula result key %q: %s", e.Key, e.Reason)
}

// Time is how a formula sees `now`: calendar fields in UTC, with Month and
// Weekday as plain numbers so `now.Weekday() >= 1` compares.
type Time struct{ t time.Time }

// Year is the year, e.g. 2025.
func (t Time) Year() int { return t.t.Year() }

// Month is the month of the year, 1 (January) to 12.
func (t Time) Month() int { return int(t.t.Month()) }

// Day is the day of the month, 1 to 31.
func (t Time) Day() int { return t.t.Day() }

// YearDay is the day of the year, 1 to 366.
func (t Time) YearDay() int { return t.t.YearDay() }

// Weekday is the day of the week, 0 (Sunday) to 6 (Saturday), as in Go.
func (t Time) Weekday() int { return int(t.t.Weekday()) }

// Hour is the hour of the day, 0 to 23.
func (t Time) Hour() int { return t.t.Hour() }

// Minute is the minute of the hour, 0 to 59.
func (t Time) Minute() int { return t.t.Minute() }

// Second is the second of the minute, 0 to 59.
func (t Time) Second() int { return t.t.Second() }

// Unix is the time as seconds since 1970-01-01 UTC.
func (t Time) Unix() int64 { return t.t.Unix() }

// windowFunc describes one window function for the compile-time checks.
type windowFunc struct {
	arity int
	usage string
}

var windowFuncs = map[string]windowFunc{
	"avg_over":        {2, `avg_over(pending_tasks, "5m")`},
	"max_over":        {2, `max_over(pending_tasks, "5m")`},
	"min_over":        {2, `min_over(pending_tasks, "5m")`},
	"count_over":      {2, `count_over(pending_tasks, "5m")`},
	"coverage":        {2, `coverage(pending_tasks, "5m")`},
	"percentile_over": {3, `percentile_over(pending_tasks, 90, "5m")`},
}

// Compile parses and type-checks a formula. Errors carry the line and column
// (an *file.Error from expr inside); formulas over MaxFormulaLen are refused.
func Compile(src string) (*Formula, error) {
	if len(src) > MaxFormulaLen {
		return nil, fmt.Errorf("compiling formula: %d bytes, over the limit of %d", len(src), MaxFormulaLen)
	}
	patcher := &windowPatcher{source: file.NewSource(src), called: map[*ast.IdentifierNode]bool{}}
	program, err := expr.Compile(src,
		expr.Env((&evaluation{}).env()),
		expr.Patch(patcher),
		// The clock is the `now` variable; zones would read the zone database.
		expr.DisableBuiltin("now"),
		expr.DisableBuiltin("date"),
		expr.DisableBuiltin("timezone"),
	)
	if perr := patcher.finish(); perr != nil {
		return nil, fmt.Errorf("compiling formula: %w", perr)
	}
	if err != nil {
		return nil, fmt.Errorf("compiling formula: %w", err)
	}
	if t := program.Node().Type(); t != nil && !resultKindOK(t.Kind()) {
		return nil, fmt.Errorf("compiling formula: %w",
			&ResultError{Reason: fmt.Sprintf("is %s, want a number or a map", kindName(t.Kind()))})
	}
	return &Formula{src: src, program: program}, nil
}

// Source returns the formula as written.
func (f *Formula) Source() string { return f.src }

// Eval evaluates the formula with the current metrics cur at now (taken as
// UTC) over the samples in h (nil means none), rounds the targets up, and
// applies b. It never panics; runaway formulas fail on expr's memory budget.
func (f *Formula) Eval(now time.Time, cur Metrics, h *History, b Bounds) (res Result, err error) {
	now = now.UTC()
	res.Vars = make(map[string]float64, len(variables)+1)
	for _, v := range variables {
		res.Vars[v.name] = float64(v.get(cur))
	}
	res.Vars["now"] = float64(now.Unix())
	if err := b.Validate(); err != nil {
		return res, err
	}
	defer func() {
		if r := recover(); r != nil {
			res.TargetNodes, res.TargetSpotNodes, res.Deallocation = 0, 0, ""
			err = fmt.Errorf("evaluating formula: panic: %v", r)
		}
	}()
	e := &evaluation{now: now, cur: cur, h: h}
	machine := vm.VM{MemoryBudget: memoryBudget}
	out, err := machine.Run(f.program, e.env())
	if err != nil {
		return res, fmt.Errorf("evaluating formula: %w", err)
	}
	t, err := readResult(out)
	if err != nil {
		return res, fmt.Errorf("evaluating formula: %w", err)
	}
	res.TargetNodes, res.TargetSpotNodes = b.apply(nodeCount(t.nodes), nodeCount(t.spot))
	res.Deallocation = t.dealloc
	return res, nil
}

// apply clamps the total of dedicated and spot into b. Above Max, spot nodes
// go first (dedicated capacity is the reliable part); below Min, dedicated
// nodes make up the difference for the same reason.
func (b Bounds) apply(nodes, spot int) (int, int) {
	if total := nodes + spot; total > b.Max {
		cut := min(spot, total-b.Max)
		spot -= cut
		nodes -= total - b.Max - cut
	} else if total < b.Min {
		nodes += b.Min - total
	}
	return nodes, spot
}

// nodeCount rounds a target up: a fraction of a node's work still needs a
// whole node. Negative targets mean none.
func nodeCount(f float64) int {
	c := math.Ceil(f - roundingSlack)
	switch {
	case c <= 0:
		return 0
	case c >= maxNodeCount:
		return maxNodeCount
	}
	return int(c)
}

// target is a formula's value before rounding and bounds.
type target struct {
	nodes, spot float64
	dealloc     string
}

// readResult interprets the value a formula evaluated to.
func readResult(out any) (target, error) {
	if n, ok := number(out); ok {
		if err := finite("", n); err != nil {
			return target{}, err
		}
		return target{nodes: n}, nil
	}
	rv := reflect.ValueOf(out)
	if !rv.IsValid() || rv.Kind() != reflect.Map || rv.Type().Key().Kind() != reflect.String {
		return target{}, &ResultError{Reason: fmt.Sprintf("is %s, want a number or a map", describe(out))}
	}
	keys := rv.MapKeys()
	slices.SortFunc(keys, func(a, b reflect.Value) int {
		switch {
		case a.String() < b.String():
			return -1
		case a.String() > b.String():
			return 1
		}
		return 0
	})
	var t target
	for _, k := range keys {
		key := k.String()
		v := rv.MapIndex(k).Interface()
		switch key {
		case keyTargetNodes, keyTargetSpotNodes:
			n, ok := number(v)
			if !ok {
				return target{}, &ResultError{Key: key, Reason: fmt.Sprintf("is %s, want a number", describe(v))}
			}
			if err := finite(key, n); err != nil {
				return target{}, err
			}
			if key == keyTargetNodes {
				t.nodes = n
			} else {
				t.spot = n
			}
		case keyDeallocation:
			s, ok := v.(string)
			if !ok {
				return target{}, &ResultError{Key: key, Reason: fmt.Sprintf("is %s, want a string", describe(v))}
			}
			switch s {
			case DeallocRequeue, DeallocTerminate, DeallocTaskCompletion:
				t.dealloc = s
			default:
				return target{}, &ResultError{Key: key, Reason: fmt.Sprintf("is %q, want %q, %q or %q",
					s, DeallocRequeue, DeallocTerminate, DeallocTaskCompletion)}
			}
		default:
			return target{}, &ResultError{Key: key, Reason: fmt.Sprintf("is not a known key; want %s, %s or %s",
				keyTargetNodes, keyTargetSpotNodes, keyDeallocation)}
		}
	}
	return t, nil
}

func finite(key string, n float64) error {
	if math.IsNaN(n) || math.IsInf(n, 0) {
		return &ResultError{Key: key, Reason: fmt.Sprintf("is %v, want a finite number", n)}
	}
	return nil
}

// number converts any Go number to float64.
func number(v any) (float64, bool) {
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return float64(rv.Int()), true
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return float64(rv.Uint()), true
	case reflect.Float32, reflect.Float64:
		return rv.Float(), true
	}
	return 0, false
}

// resultKindOK reports whether a value of kind k may be a formula's result;
// Interface stands for "known only at run time".
func resultKindOK(k reflect.Kind) bool {
	switch k {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64, reflect.Map, reflect.Interface:
		return true
	}
	return false
}

func describe(v any) string {
	if v == nil {
		return "nil"
	}
	return kindName(reflect.TypeOf(v).Kind())
}

func kindName(k reflect.Kind) string {
	switch k {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a bool"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Map:
		return "a map"
	case reflect.Struct:
		return "a time"
	case reflect.Func:
		return "a function"
	}
	return "a " + k.String()
}

// windowPatcher rewrites window function calls at compile time: the bare
// variable in first position becomes the series name, and the window string
// becomes nanoseconds, so evaluation never parses. It records the first
// misuse instead, since an ast.Visitor cannot return an error.
type windowPatcher struct {
	source file.Source
	err    *file.Error
	refs   []*ast.IdentifierNode        // every identifier naming a window function
	called map[*ast.IdentifierNode]bool // those in callee position
}

func (p *windowPatcher) Visit(node *ast.Node) {
	switch n := (*node).(type) {
	case *ast.IdentifierNode:
		if _, ok := windowFuncs[n.Value]; ok {
			p.refs = append(p.refs, n)
		}
	case *ast.CallNode:
		callee, ok := n.Callee.(*ast.IdentifierNode)
		if !ok {
			return
		}
		if wf, ok := windowFuncs[callee.Value]; ok {
			p.called[callee] = true
			p.patchCall(n, callee.Value, wf)
		}
	}
}

func (p *windowPatcher) patchCall(n *ast.CallNode, name string, wf windowFunc) {
	if len(n.Arguments) != wf.arity {
		p.fail(n.Location(), "%s takes %d arguments, got %d; write %s", name, wf.arity, len(n.Arguments), wf.usage)
		return
	}
	series, ok := n.Arguments[0].(*ast.IdentifierNode)
	if !ok {
		p.fail(n.Arguments[0].Location(), "first argument of %s must be a variable name written bare, as in %s", name, wf.usage)
		return
	}
	if _, ok := variableIndex[series.Value]; !ok {
		p.fail(series.Location(), "%s has no history: %s needs a sampled variable, as in %s", series.Value, name, wf.usage)
		return
	}
	last := len(n.Arguments) - 1
	window, ok := n.Arguments[last].(*ast.StringNode)
	if !ok {
		p.fail(n.Arguments[last].Location(), "window of %s must be a duration string, as in %s", name, wf.usage)
		return
	}
	d, err := time.ParseDuration(window.Value)
	if err != nil || d <= 0 {
		p.fail(window.Location(), "window %q of %s is not a positive duration like \"5m\" or \"1h30m\"", window.Value, name)
		return
	}
	ast.Patch(&n.Arguments[0], &ast.StringNode{Value: series.Value})
	ast.Patch(&n.Arguments[last], &ast.IntegerNode{Value: int(d)})
}

func (p *windowPatcher) fail(loc file.Location, format string, args ...any) {
	if p.err == nil {
		p.err = (&file.Error{Location: loc, Message: fmt.Sprintf(format, args...)}).Bind(p.source)
	}
}

// finish reports the first misuse, including window functions used as
// values rather than called (`let f = avg_over`), which would escape the
// compile-time checks.
func (p *windowPatcher) finish() error {
	for _, ref := range p.refs {
		if !p.called[ref] {
			p.fail(ref.Location(), "%s must be called, as in %s", ref.Value, windowFuncs[ref.Value].usage)
		}
	}
	if p.err == nil {
		return nil
	}
	return p.err
}

// evaluation is the state of one Eval: what the window functions read.
type evaluation struct {
	now   time.Time
	cur   Metrics
	h     *History
	calls int
}

// env is the formula's environment. Compile builds one from a zero
// evaluation for its types; Eval builds one per run.
func (e *evaluation) env() map[string]any {
	env := make(map[string]any, len(variables)+1+len(windowFuncs))
	for _, v := range variables {
		env[v.name] = float64(v.get(e.cur))
	}
	env["now"] = Time{e.now}
	env["avg_over"] = e.avgOver
	env["max_over"] = e.maxOver
	env["min_over"] = e.minOver
	env["count_over"] = e.countOver
	env["coverage"] = e.coverage
	env["percentile_over"] = e.percentileOver
	return env
}

// window returns the samples of series in the window of the given length
// ending at now: the History's samples strictly inside it, oldest first, then
// the current value at now (which stands in for any sample taken at now).
func (e *evaluation) window(series string, window int) (at []time.Time, vals []float64, err error) {
	idx, ok := variableIndex[series]
	if !ok {
		return nil, nil, fmt.Errorf("no history for %q", series)
	}
	if window <= 0 {
		return nil, nil, fmt.Errorf("window %v is not positive", time.Duration(window))
	}
	if e.calls++; e.calls > maxWindowCalls {
		return nil, nil, fmt.Errorf("more than %d window function calls", maxWindowCalls)
	}
	get := variables[idx].get
	past := e.h.between(e.now.Add(-time.Duration(window)), e.now)
	at = make([]time.Time, 0, len(past)+1)
	vals = make([]float64, 0, len(past)+1)
	for _, s := range past {
		at = append(at, s.at)
		vals = append(vals, float64(get(s.m)))
	}
	return append(at, e.now), append(vals, float64(get(e.cur))), nil
}

func (e *evaluation) avgOver(series string, window int) (float64, error) {
	_, vals, err := e.window(series, window)
	if err != nil {
		return 0, err
	}
	var sum float64
	for _, v := range vals {
		sum += v
	}
	return sum / float64(len(vals)), nil
}

func (e *evaluation) maxOver(series string, window int) (float64, error) {
	_, vals, err := e.window(series, window)
	if err != nil {
		return 0, err
	}
	return slices.Max(vals), nil
}

func (e *evaluation) minOver(series string, window int) (float64, error) {
	_, vals, err := e.window(series, window)
	if err != nil {
		return 0, err
	}
	return slices.Min(vals), nil
}

func (e *evaluation) countOver(series string, window int) (float64, error) {
	_, vals, err := e.window(series, window)
	if err != nil {
		return 0, err
	}
	return float64(len(vals)), nil
}

// percentileOver is the nearest-rank percentile: the smallest sample with at
// least p percent of the samples at or below it; p 0 gives the minimum.
func (e *evaluation) percentileOver(series string, p float64, window int) (float64, error) {
	if math.IsNaN(p) || p < 0 || p > 100 {
		return 0, fmt.Errorf("percentile %v is outside 0..100", p)
	}
	_, vals, err := e.window(series, window)
	if err != nil {
		return 0, err
	}
	sort.Float64s(vals)
	rank := int(math.Ceil(p / 100 * float64(len(vals))))
	return vals[max(rank-1, 0)], nil
}

// coverage is the fraction of the window covered by samples, each sample
// standing for the sample interval that ends at it (the current value
// included). With samples every interval it is 1; a young history or missed
// samples make it less. It is Azure Batch's GetSamplePercent as a fraction,
// robust to sampling faster than the interval.
func (e *evaluation) coverage(series string, window int) (float64, error) {
	at, _, err := e.window(series, window)
	if err != nil {
		return 0, err
	}
	interval := DefaultSampleInterval
	if e.h != nil {
		interval = e.h.interval
	}
	from := e.now.Add(-time.Duration(window))
	var covered time.Duration
	reached := from
	for _, t := range at {
		lo := t.Add(-interval)
		if lo.Before(reached) {
			lo = reached
		}
		if t.After(lo) {
			covered += t.Sub(lo)
			reached = t
		}
	}
	return min(1, float64(covered)/float64(window)), nil
}
