package server

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/lotehq/lote/internal/core"
	"github.com/lotehq/lote/internal/store"
)

// metrics is the server's Prometheus instrumentation, served at /metrics
// (with the admin token, like the API). It is the engine's observer: the
// committer reports each scheduling pass and each committed batch, and the
// histograms of task queue wait and run time are computed from the
// attempts that ended in committed task records. Gauges (tasks by state,
// nodes by state, jobs) are read from the core under the engine lock when
// Prometheus scrapes. Labels stay low-cardinality: pool, state, result,
// category, reason, never job or task IDs.
type metrics struct {
	eng *engine
	reg *prometheus.Registry

	schedPass   prometheus.Histogram
	commitTime  prometheus.Histogram
	commitTasks prometheus.Histogram
	queueWait   *prometheus.HistogramVec
	runTime     *prometheus.HistogramVec
	staging     *prometheus.HistogramVec
	attempts    *prometheus.CounterVec
	completed   *prometheus.CounterVec

	// Used only by the committer goroutine (scheduled and committed).
	seeded bool
	live   map[int64]liveAttempt   // task Num → the attempt last seen live
	jobs   map[string]*jobFacts    // lower-cased job ID → what attempts need
	pools  map[string]*poolMetrics // pool ID → its series, resolved once
	// last memoizes facts: a batch's tasks mostly share a job.
	lastJob   string
	lastFacts *jobFacts
}

// poolMetrics are the series of one pool, each resolved at its first use.
// WithLabelValues hashes its labels and takes its vector's lock, and the
// committer, the server's bottleneck under a stream of short tasks, called
// it four times for every task that finished.
type poolMetrics struct {
	m                  *metrics
	pool               string
	queueWait, staging prometheus.Observer
	results            map[string]*resultMetrics
}

// resultMetrics are a pool's series of one result.
type resultMetrics struct {
	runTime   prometheus.Observer
	completed prometheus.Counter
	attempts  map[string]prometheus.Counter // by category
}

// liveAttempt is an attempt seen assigned, preparing or running.
type liveAttempt struct {
	number int
	job    string // lower-cased job ID, to forget it with its job
}

// jobFacts is what a task's attempts need from its job for their labels and
// queue wait.
type jobFacts struct {
	submitted map[int]int64 // group Seq → SubmittedAt
	series    *poolMetrics  // its pool's
}

// newFacts returns the facts of a job of pool, with the pool's series.
func (m *metrics) newFacts(pool string, groups int) *jobFacts {
	pm := m.pools[pool]
	if pm == nil {
		pm = &poolMetrics{m: m, pool: pool, results: map[string]*resultMetrics{}}
		m.pools[pool] = pm
	}
	return &jobFacts{submitted: make(map[int]int64, groups), series: pm}
}

// facts returns the facts of the job with the given ID, nil if unknown.
func (m *metrics) facts(jobID string) *jobFacts {
	if m.lastFacts != nil && jobID == m.lastJob {
		return m.lastFacts
	}
	f := m.jobs[lower(jobID)]
	m.lastJob, m.lastFacts = jobID, f
	return f
}

func (p *poolMetrics) queueWaitSeries() prometheus.Observer {
	if p.queueWait == nil {
		p.queueWait = p.m.queueWait.WithLabelValues(p.pool)
	}
	return p.queueWait
}

func (p *poolMetrics) stagingSeries() prometheus.Observer {
	if p.staging == nil {
		p.staging = p.m.staging.WithLabelValues(p.pool)
	}
	return p.staging
}

func (p *poolMetrics) result(result string) *resultMetrics {
	rm := p.results[result]
	if rm == nil {
		rm = &resultMetrics{attempts: map[string]prometheus.Counter{}}
		p.results[result] = rm
	}
	return rm
}

func (p *poolMetrics) completed(result string) prometheus.Counter {
	rm := p.result(result)
	if rm.completed == nil {
		rm.completed = p.m.completed.WithLabelValues(p.pool, result)
	}
	return rm.completed
}

func (p *poolMetrics) runTime(result string) prometheus.Observer {
	rm := p.result(result)
	if rm.runTime == nil {
		rm.runTime = p.m.runTime.WithLabelValues(p.pool, result)
	}
	return rm.runTime
}

func (p *poolMetrics) attempts(result, category string) prometheus.Counter {
	rm := p.result(result)
	c := rm.attempts[category]
	if c == nil {
		c = p.m.attempts.WithLabelValues(p.pool, result, category)
		rm.attempts[category] = c
	}
	return c
}

const ns = "lote"

func newMetrics(e *engine) *metrics {
	m := &metrics{
		eng:   e,
		reg:   prometheus.NewRegistry(),
		live:  map[int64]liveAttempt{},
		jobs:  map[string]*jobFacts{},
		pools: map[string]*poolMetrics{},
		schedPass: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Name: "scheduler_pass_seconds", Help: "Duration of one scheduling pass over every pool.",
			Buckets: []float64{1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, .01, .025, .05, .1, .25, 1},
		}),
		commitTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Name: "store_commit_seconds", Help: "Duration of one group commit to the store.",
			Buckets: []float64{1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}),
		commitTasks: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Name: "store_commit_tasks", Help: "Task records written by one group commit.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 10),
		}),
		queueWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns, Name: "task_queue_wait_seconds",
			Help:    "Time from a task becoming ready (submitted, or its previous attempt ended) to its attempt starting.",
			Buckets: []float64{.001, .005, .01, .05, .1, .5, 1, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600},
		}, []string{"pool"}),
		runTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns, Name: "task_run_seconds", Help: "Run time of task attempts that ended, by result.",
			Buckets: []float64{.01, .05, .1, .5, 1, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 12 * 3600},
		}, []string{"pool", "result"}),
		staging: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns, Name: "task_staging_seconds",
			Help:    "Time attempts spent staging inputs before their process started (only attempts with inputs).",
			Buckets: []float64{.001, .005, .01, .05, .1, .5, 1, 5, 10, 30, 60, 300, 900},
		}, []string{"pool"}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "task_attempts_ended_total",
			Help: "Task attempts that ended, by result and failure category (user, timeout, staging, infra, cancelled).",
		}, []string{"pool", "result", "category"}),
		completed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "tasks_completed_total", Help: "Tasks that reached completed, by result.",
		}, []string{"pool", "result"}),
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.schedPass, m.commitTime, m.commitTasks, m.queueWait, m.runTime, m.staging, m.attempts, m.completed,
		stateCollector{e},
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: ns, Name: "agent_streams", Help: "Agent streams open now.",
		}, func() float64 {
			n := 0
			e.sessions.Range(func(any, any) bool { n++; return true })
			return float64(n)
		}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: ns, Name: "events_published_total", Help: "Events published to /v1/events since the server started.",
		}, func() float64 {
			h := e.events
			h.mu.Lock()
			defer h.mu.Unlock()
			return float64(h.next - h.first)
		}),
	)
	return m
}

// scheduled runs on the committer with the engine lock held.
func (m *metrics) scheduled(d time.Duration) {
	m.schedPass.Observe(d.Seconds())
	if !m.seeded {
		// Attempts already live when the server started end without having
		// been seen starting: remember them.
		m.seeded = true
		for _, p := range m.eng.core.Pools() {
			for _, n := range p.SortedNodes() {
				for _, t := range n.Tasks() {
					m.live[t.Num] = liveAttempt{t.Attempt, lower(t.Job.ID)}
				}
			}
		}
	}
}

// committed runs on the committer after batch b is durable.
func (m *metrics) committed(d time.Duration, b *store.Batch) {
	m.commitTime.Observe(d.Seconds())
	m.commitTasks.Observe(float64(len(b.Tasks)))
	m.lastFacts = nil
	if len(b.DeletedJobs) > 0 {
		// A deleted job's tasks are saved no more: forget their attempts.
		gone := map[string]bool{}
		for _, j := range b.DeletedJobs {
			delete(m.jobs, lower(j.ID))
			gone[lower(j.ID)] = true
		}
		for num, a := range m.live {
			if gone[a.job] {
				delete(m.live, num)
			}
		}
	}
	for i := range b.Jobs {
		if m.jobs[lower(b.Jobs[i].ID)] == nil {
			m.jobs[lower(b.Jobs[i].ID)] = m.newFacts(b.Jobs[i].PoolID, 0)
		}
	}
	for i := range b.Groups {
		if f := m.jobs[lower(b.Groups[i].JobID)]; f != nil {
			f.submitted[b.Groups[i].Seq] = b.Groups[i].SubmittedAt
		}
	}
	m.learnJobs(b.Tasks)
	for i := range b.Tasks {
		m.task(&b.Tasks[i])
	}
}

// learnJobs reads from the core what the cache lacks (jobs from before a
// restart), under the engine lock, once per batch at most.
func (m *metrics) learnJobs(tasks []core.TaskRecord) {
	var missing []string
	for i := range tasks {
		f := m.facts(tasks[i].JobID)
		if f == nil {
			missing = append(missing, tasks[i].JobID)
		} else if _, ok := f.submitted[tasks[i].GroupSeq]; !ok {
			missing = append(missing, tasks[i].JobID)
		}
	}
	if len(missing) == 0 {
		return
	}
	m.lastFacts = nil
	m.eng.mu.Lock()
	defer m.eng.mu.Unlock()
	for _, id := range missing {
		j := m.eng.core.Job(id)
		if j == nil {
			continue
		}
		f := m.newFacts(j.Pool.ID, len(j.Groups))
		for _, g := range j.Groups {
			f.submitted[g.Seq] = g.SubmittedAt
		}
		m.jobs[lower(id)] = f
	}
}

// task observes the attempts of r that ended since r was last seen live.
// Every attempt is first committed as assigned (assignments happen in the
// scheduling pass just before a batch is sealed), so an ended attempt is
// observed once: when its number is at least the one last seen live.
func (m *metrics) task(r *core.TaskRecord) {
	la, known := m.live[r.Num]
	seen := la.number
	f := m.facts(r.JobID)
	if known && f != nil {
		prevEnd := int64(-1) // -1: no earlier attempt, the task was ready at submission
		for i := range r.History {
			if r.History[i].Number >= seen {
				m.attemptEnded(f, r, &r.History[i], prevEnd)
			}
			prevEnd = r.History[i].EndedAt
		}
		if r.Cur.Number >= seen && r.Cur.EndedAt != 0 {
			m.attemptEnded(f, r, &r.Cur, prevEnd)
		}
	}
	switch r.State {
	case core.TaskAssigned, core.TaskPreparing, core.TaskRunning:
		m.live[r.Num] = liveAttempt{r.Cur.Number, lower(r.JobID)}
	case core.TaskCompleted:
		delete(m.live, r.Num)
		// A task cancelled before it ever ran completes without an attempt.
		if f != nil && (known || r.Cur.Number == 0) {
			f.series.completed(r.Cur.Result.String()).Inc()
		}
	default:
		delete(m.live, r.Num)
	}
}

func (m *metrics) attemptEnded(f *jobFacts, r *core.TaskRecord, a *core.AttemptRecord, prevEnd int64) {
	result := a.Result.String()
	if result == "" {
		result = core.ResultFailure.String()
	}
	category := a.Category.String()
	if category == "" {
		category = "none"
	}
	f.series.attempts(result, category).Inc()
	if a.StartedAt == 0 {
		return
	}
	ready := prevEnd
	if ready < 0 {
		ready = f.submitted[r.GroupSeq]
	}
	if ready > 0 {
		f.series.queueWaitSeries().Observe(seconds(a.StartedAt - ready))
	}
	if a.EndedAt >= a.StartedAt {
		f.series.runTime(result).Observe(seconds(a.EndedAt - a.StartedAt))
	}
	if a.PreparingAt != 0 {
		f.series.stagingSeries().Observe(seconds(a.StartedAt - a.PreparingAt))
	}
}

// seconds converts nanoseconds, clamping clock skew between server and
// agent to zero.
func seconds(ns int64) float64 { return max(time.Duration(ns), 0).Seconds() }

// stateCollector reads gauges from the core at scrape time.
type stateCollector struct{ e *engine }

var (
	descTasks = prometheus.NewDesc(ns+"_tasks", "Tasks by state (completed counts both results).",
		[]string{"pool", "state"}, nil)
	descTaskResults = prometheus.NewDesc(ns+"_tasks_completed", "Completed tasks of existing jobs, by result.",
		[]string{"pool", "result"}, nil)
	descWaiting = prometheus.NewDesc(ns+"_tasks_waiting", "Active tasks by why they wait: ready, no_capacity, priority, concurrency_cap, no_matching_node.",
		[]string{"pool", "reason"}, nil)
	descNodes  = prometheus.NewDesc(ns+"_nodes", "Nodes by state.", []string{"pool", "state"}, nil)
	descSlots  = prometheus.NewDesc(ns+"_node_slots", "Task slots of the pool's reachable nodes.", []string{"pool"}, nil)
	descTarget = prometheus.NewDesc(ns+"_pool_target_nodes", "The pool's target node count.", []string{"pool"}, nil)
	descJobs   = prometheus.NewDesc(ns+"_jobs", "Jobs by state.", []string{"pool", "state"}, nil)
)

var (
	taskStates = []core.TaskState{core.TaskActive, core.TaskAssigned, core.TaskPreparing, core.TaskRunning, core.TaskCompleted}
	nodeStates = []core.NodeState{core.NodeStarting, core.NodeIdle, core.NodeRunning, core.NodeOffline, core.NodeUnreachable, core.NodeLeaving}
	jobStates  = []core.JobState{core.JobActive, core.JobTerminating, core.JobCompleted}
)

func (stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descTasks, descTaskResults, descWaiting, descNodes, descSlots, descTarget, descJobs} {
		ch <- d
	}
}

// Collect counts under the engine lock and sends after releasing it.
func (c stateCollector) Collect(ch chan<- prometheus.Metric) {
	type poolCounts struct {
		id                string
		tasks             [5]int
		succeeded, failed int
		waiting           map[string]int
		nodes             [6]int
		slots, target     int
		jobs              [3]int
	}
	var pools []*poolCounts
	byPool := map[*core.Pool]*poolCounts{}
	c.e.mu.Lock()
	for _, p := range c.e.core.Pools() {
		pc := &poolCounts{id: p.ID, target: p.TargetNodes, waiting: map[string]int{"ready": 0}}
		for _, n := range p.SortedNodes() {
			st := n.State()
			pc.nodes[st]++
			if st != core.NodeUnreachable {
				pc.slots += n.Slots
			}
		}
		pools = append(pools, pc)
		byPool[p] = pc
	}
	for _, j := range c.e.core.Jobs() {
		pc := byPool[j.Pool]
		if pc == nil || j.Deleted() {
			continue
		}
		pc.jobs[j.State]++
		for s, n := range j.Counts {
			pc.tasks[s] += n
		}
		pc.succeeded += j.Succeeded
		pc.failed += j.Failed
		if a := j.Counts[core.TaskActive]; a > 0 {
			pc.waiting[orDefault(j.PendingReason, "ready")] += a
		}
	}
	c.e.mu.Unlock()

	for _, pc := range pools {
		for _, s := range taskStates {
			ch <- prometheus.MustNewConstMetric(descTasks, prometheus.GaugeValue, float64(pc.tasks[s]), pc.id, s.String())
		}
		ch <- prometheus.MustNewConstMetric(descTaskResults, prometheus.GaugeValue, float64(pc.succeeded), pc.id, "success")
		ch <- prometheus.MustNewConstMetric(descTaskResults, prometheus.GaugeValue, float64(pc.failed), pc.id, "failure")
		for reason, n := range pc.waiting {
			ch <- prometheus.MustNewConstMetric(descWaiting, prometheus.GaugeValue, float64(n), pc.id, reason)
		}
		for _, s := range nodeStates {
			ch <- prometheus.MustNewConstMetric(descNodes, prometheus.GaugeValue, float64(pc.nodes[s]), pc.id, s.String())
		}
		ch <- prometheus.MustNewConstMetric(descSlots, prometheus.GaugeValue, float64(pc.slots), pc.id)
		ch <- prometheus.MustNewConstMetric(descTarget, prometheus.GaugeValue, float64(pc.target), pc.id)
		for _, s := range jobStates {
			ch <- prometheus.MustNewConstMetric(descJobs, prometheus.GaugeValue, float64(pc.jobs[s]), pc.id, s.String())
		}
	}
}

// serveMetrics answers a Prometheus scrape.
func (s *Server) serveMetrics(w http.ResponseWriter, r *http.Request) error {
	m, ok := s.eng.obs.(*metrics)
	if !ok {
		return notFound("metrics are off")
	}
	promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorLog: slogPrinter{s}}).ServeHTTP(w, r)
	return nil
}

// slogPrinter hands promhttp's errors to the server's log.
type slogPrinter struct{ s *Server }

func (p slogPrinter) Println(v ...any) { p.s.log.Warn("metrics", "err", v) }
