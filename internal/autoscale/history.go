package autoscale

import (
	"sort"
	"time"
)

// Metrics is one observation of a pool. CurrentNodes counts dedicated nodes
// and CurrentSpotNodes spot nodes (preempted ones included), matching the
// two targets a formula sets.
type Metrics struct {
	PendingTasks, ActiveTasks, RunningTasks, SucceededTasks, FailedTasks, PendingSlots int
	CurrentNodes, CurrentSpotNodes, IdleNodes, PreemptedNodes, SlotsPerNode            int
}

// variable is one sampled formula variable and where Metrics holds it.
type variable struct {
	name string
	get  func(Metrics) int
}

// variables lists the sampled formula variables in the order Result.Vars
// documents them; `now` is the only variable outside this table.
var variables = []variable{
	{"pending_tasks", func(m Metrics) int { return m.PendingTasks }},
	{"active_tasks", func(m Metrics) int { return m.ActiveTasks }},
	{"running_tasks", func(m Metrics) int { return m.RunningTasks }},
	{"succeeded_tasks", func(m Metrics) int { return m.SucceededTasks }},
	{"failed_tasks", func(m Metrics) int { return m.FailedTasks }},
	{"pending_slots", func(m Metrics) int { return m.PendingSlots }},
	{"current_nodes", func(m Metrics) int { return m.CurrentNodes }},
	{"current_spot_nodes", func(m Metrics) int { return m.CurrentSpotNodes }},
	{"idle_nodes", func(m Metrics) int { return m.IdleNodes }},
	{"preempted_nodes", func(m Metrics) int { return m.PreemptedNodes }},
	{"slots_per_node", func(m Metrics) int { return m.SlotsPerNode }},
}

// variableIndex maps a variable name to its position in variables.
var variableIndex = func() map[string]int {
	idx := make(map[string]int, len(variables))
	for i, v := range variables {
		idx[v.name] = i
	}
	return idx
}()

const (
	// MaxSamples caps a History's length whatever its MaxAge, so a long
	// window on a fast sampler cannot grow memory or evaluation time unbounded.
	MaxSamples = 10_000
	// DefaultMaxAge is the MaxAge of a History created with a non-positive one.
	DefaultMaxAge = time.Hour
	// DefaultSampleInterval is the sampling period a History assumes unless
	// told otherwise; it is Azure Batch's.
	DefaultSampleInterval = 30 * time.Second
)

// sample is one timestamped observation.
type sample struct {
	at time.Time
	m  Metrics
}

// History keeps timestamped samples of a pool's Metrics for the window
// functions, oldest first, bounded by MaxAge (measured back from the newest
// sample, not from a clock) and by MaxSamples. It is not safe for concurrent
// mutation: the shell that samples the pool owns it.
type History struct {
	maxAge   time.Duration
	interval time.Duration
	samples  []sample
}

// NewHistory returns an empty History keeping samples up to maxAge old
// (DefaultMaxAge when maxAge <= 0), assuming DefaultSampleInterval.
func NewHistory(maxAge time.Duration) *History {
	if maxAge <= 0 {
		maxAge = DefaultMaxAge
	}
	return &History{maxAge: maxAge, interval: DefaultSampleInterval}
}

// SetSampleInterval records how often the shell samples the pool; coverage
// counts each sample as standing for one interval. Non-positive values are
// ignored.
func (h *History) SetSampleInterval(d time.Duration) {
	if d > 0 {
		h.interval = d
	}
}

// SampleInterval reports the sampling period coverage assumes.
func (h *History) SampleInterval() time.Duration { return h.interval }

// Len reports how many samples the History holds.
func (h *History) Len() int { return len(h.samples) }

// Add records m as observed at `at`. Samples may arrive out of order; one at
// the same instant as an existing sample replaces it. Samples older than
// MaxAge before the newest are dropped, then the oldest beyond MaxSamples.
func (h *History) Add(at time.Time, m Metrics) {
	i := sort.Search(len(h.samples), func(i int) bool { return !h.samples[i].at.Before(at) })
	switch {
	case i < len(h.samples) && h.samples[i].at.Equal(at):
		h.samples[i].m = m
	default:
		h.samples = append(h.samples, sample{})
		copy(h.samples[i+1:], h.samples[i:])
		h.samples[i] = sample{at: at, m: m}
	}
	h.trim()
}

// trim drops samples older than maxAge before the newest, then the oldest
// beyond MaxSamples.
func (h *History) trim() {
	if len(h.samples) == 0 {
		return
	}
	cutoff := h.samples[len(h.samples)-1].at.Add(-h.maxAge)
	drop := sort.Search(len(h.samples), func(i int) bool { return !h.samples[i].at.Before(cutoff) })
	drop = max(drop, len(h.samples)-MaxSamples)
	if drop > 0 {
		h.samples = append(h.samples[:0], h.samples[drop:]...)
	}
}

// between returns the samples strictly after from and strictly before to,
// oldest first, sharing the History's storage.
func (h *History) between(from, to time.Time) []sample {
	if h == nil {
		return nil
	}
	lo := sort.Search(len(h.samples), func(i int) bool { return h.samples[i].at.After(from) })
	hi := sort.Search(len(h.samples), func(i int) bool { return !h.samples[i].at.Before(to) })
	if lo >= hi {
		return nil
	}
	return h.samples[lo:hi]
}
