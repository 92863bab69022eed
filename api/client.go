package api

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// Client calls a Lote server. Every CLI action goes through it.
type Client struct {
	base  string
	token string
	hc    *http.Client
}

// NewClient returns a client for the server at base (http:// or https://),
// trusting the CA in caFile when it is not empty.
func NewClient(base, token, caFile string) (*Client, error) {
	var tc *tls.Config
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("reading CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s holds no certificate", caFile)
		}
		tc = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return NewClientTLS(base, token, tc), nil
}

// NewClientTLS is NewClient with the caller's TLS configuration (nil for
// the system's defaults): a client certificate for mutual TLS, say.
func NewClientTLS(base, token string, tc *tls.Config) *Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 16
	tr.TLSClientConfig = tc
	return &Client{base: strings.TrimRight(base, "/"), token: token, hc: &http.Client{Transport: tr}}
}

// StatusError is a non-2xx answer from the server.
type StatusError struct {
	Status int
	Body   ErrorBody
}

func (e *StatusError) Error() string {
	msg := e.Body.Message
	if e.Body.Field != "" && !strings.HasPrefix(msg, e.Body.Field+":") {
		msg = e.Body.Field + ": " + msg
	}
	return fmt.Sprintf("%s (HTTP %d)", msg, e.Status)
}

// IsStatus reports whether err is a StatusError with the given status.
func IsStatus(err error, status int) bool {
	var se *StatusError
	return errors.As(err, &se) && se.Status == status
}

// Option adjusts one request.
type Option func(h http.Header)

// IdempotencyKey makes a create safe to retry: the server answers a repeat
// with the original result instead of creating again.
func IdempotencyKey(key string) Option {
	return func(h http.Header) {
		if key != "" {
			h.Set("Idempotency-Key", key)
		}
	}
}

func (c *Client) do(ctx context.Context, method, path string, in, out any, opts ...Option) error {
	_, err := c.doHeader(ctx, method, path, in, out, opts...)
	return err
}

func (c *Client) doHeader(ctx context.Context, method, path string, in, out any, opts ...Option) (http.Header, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	for _, o := range opts {
		o(req.Header)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return resp.Header, statusError(resp)
	}
	if out == nil {
		io.Copy(io.Discard, resp.Body)
		return resp.Header, nil
	}
	if w, ok := out.(io.Writer); ok {
		_, err = io.Copy(w, resp.Body)
		return resp.Header, err
	}
	return resp.Header, json.NewDecoder(resp.Body).Decode(out)
}

// statusError reads a non-2xx answer's error body.
func statusError(resp *http.Response) error {
	se := &StatusError{Status: resp.StatusCode}
	var e Error
	if b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20)); json.Unmarshal(b, &e) == nil && e.Err.Message != "" {
		se.Body = e.Err
	} else {
		se.Body = ErrorBody{Code: "http", Message: strings.TrimSpace(string(b))}
		if se.Body.Message == "" {
			se.Body.Message = http.StatusText(resp.StatusCode)
		}
	}
	return se
}

func decodeJSON(r io.Reader, out any) error { return json.NewDecoder(r).Decode(out) }

// Pools lists pools.
func (c *Client) Pools(ctx context.Context) ([]Pool, error) {
	var out PoolList
	return out.Pools, c.do(ctx, http.MethodGet, "/v1/pools", nil, &out)
}

// CreatePool creates a pool; the answer carries its join token.
func (c *Client) CreatePool(ctx context.Context, in PoolCreate) (Pool, error) {
	var out Pool
	return out, c.do(ctx, http.MethodPost, "/v1/pools", in, &out)
}

// Pool shows a pool.
func (c *Client) Pool(ctx context.Context, id string, revealToken bool) (Pool, error) {
	var out Pool
	q := ""
	if revealToken {
		q = "?reveal_token=true"
	}
	return out, c.do(ctx, http.MethodGet, "/v1/pools/"+url.PathEscape(id)+q, nil, &out)
}

// PoolNodes lists a pool's nodes.
func (c *Client) PoolNodes(ctx context.Context, id string) ([]Node, error) {
	var out NodeList
	return out.Nodes, c.do(ctx, http.MethodGet, "/v1/pools/"+url.PathEscape(id)+"/nodes", nil, &out)
}

// Node shows a node.
func (c *Client) Node(ctx context.Context, id string) (Node, error) {
	var out Node
	return out, c.do(ctx, http.MethodGet, "/v1/nodes/"+url.PathEscape(id), nil, &out)
}

// DrainNode stops (drain=true) or resumes dispatch to a node.
func (c *Client) DrainNode(ctx context.Context, id string, drain bool) (Node, error) {
	var out Node
	verb := "/undrain"
	if drain {
		verb = "/drain"
	}
	return out, c.do(ctx, http.MethodPost, "/v1/nodes/"+url.PathEscape(id)+verb, nil, &out)
}

// Jobs lists jobs, optionally in one state and carrying all of tags.
func (c *Client) Jobs(ctx context.Context, state string, tags map[string]string) ([]Job, error) {
	var out JobList
	q := tagQuery(tags)
	if state != "" {
		q.Set("state", state)
	}
	return out.Jobs, c.do(ctx, http.MethodGet, "/v1/jobs?"+q.Encode(), nil, &out)
}

func tagQuery(tags map[string]string) url.Values {
	q := url.Values{}
	for k, v := range tags {
		q.Add("tag", k+"="+v)
	}
	return q
}

// TerminateJob ends a job: tasks not completed are cancelled.
func (c *Client) TerminateJob(ctx context.Context, id string) (Job, error) {
	var out Job
	return out, c.do(ctx, http.MethodPost, "/v1/jobs/"+url.PathEscape(id)+"/terminate", nil, &out)
}

// TerminateJobsByTag ends every active job carrying all of tags, in one call.
func (c *Client) TerminateJobsByTag(ctx context.Context, tags map[string]string) ([]Job, error) {
	var out JobList
	return out.Jobs, c.do(ctx, http.MethodPost, "/v1/jobs/terminate?"+tagQuery(tags).Encode(), nil, &out)
}

// DeleteJob terminates a job and deletes its records and logs.
func (c *Client) DeleteJob(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/v1/jobs/"+url.PathEscape(id), nil, nil)
}

// UpdateJob changes a job's priority.
func (c *Client) UpdateJob(ctx context.Context, id string, in JobUpdate) (Job, error) {
	var out Job
	return out, c.do(ctx, http.MethodPatch, "/v1/jobs/"+url.PathEscape(id), in, &out)
}

// RetryFailed reactivates a job's failed tasks.
func (c *Client) RetryFailed(ctx context.Context, id string) (RetryResult, error) {
	var out RetryResult
	return out, c.do(ctx, http.MethodPost, "/v1/jobs/"+url.PathEscape(id)+"/retry?failed=true", nil, &out)
}

// CancelTask cancels a task that has not completed.
func (c *Client) CancelTask(ctx context.Context, jobID, taskID string) (Task, error) {
	var out Task
	return out, c.do(ctx, http.MethodPost, "/v1/jobs/"+url.PathEscape(jobID)+"/tasks/"+url.PathEscape(taskID)+"/cancel", nil, &out)
}

// RetryTask reactivates a completed task.
func (c *Client) RetryTask(ctx context.Context, jobID, taskID string) (Task, error) {
	var out Task
	return out, c.do(ctx, http.MethodPost, "/v1/jobs/"+url.PathEscape(jobID)+"/tasks/"+url.PathEscape(taskID)+"/retry", nil, &out)
}

// ResizePool sets a pool's target node count.
func (c *Client) ResizePool(ctx context.Context, id string, in PoolResize) (Pool, error) {
	var out Pool
	return out, c.do(ctx, http.MethodPost, "/v1/pools/"+url.PathEscape(id)+"/resize", in, &out)
}

// EnableAutoscale turns a pool's formula on, replacing the formula or the
// interval where in names them.
func (c *Client) EnableAutoscale(ctx context.Context, id string, in AutoscaleChange) (Pool, error) {
	var out Pool
	return out, c.do(ctx, http.MethodPost, "/v1/pools/"+url.PathEscape(id)+"/autoscale/enable", in, &out)
}

// DisableAutoscale turns a pool's formula off; its size stays as it is.
func (c *Client) DisableAutoscale(ctx context.Context, id string) (Pool, error) {
	var out Pool
	return out, c.do(ctx, http.MethodPost, "/v1/pools/"+url.PathEscape(id)+"/autoscale/disable", nil, &out)
}

// EvalAutoscale evaluates a formula (the pool's when in has none) on the
// pool's metrics without applying it.
func (c *Client) EvalAutoscale(ctx context.Context, id string, in AutoscaleChange) (AutoscaleRun, error) {
	var out AutoscaleRun
	return out, c.do(ctx, http.MethodPost, "/v1/pools/"+url.PathEscape(id)+"/autoscale/eval", in, &out)
}

// PreemptNode takes a spot node back as its provider would.
func (c *Client) PreemptNode(ctx context.Context, id string) (Node, error) {
	var out Node
	return out, c.do(ctx, http.MethodPost, "/v1/nodes/"+url.PathEscape(id)+"/preempt", nil, &out)
}

// RotateJoinToken gives a pool a new join token and returns it.
func (c *Client) RotateJoinToken(ctx context.Context, id string) (Pool, error) {
	var out Pool
	return out, c.do(ctx, http.MethodPost, "/v1/pools/"+url.PathEscape(id)+"/rotate-token", nil, &out)
}

// DeletePool deletes a pool that has no jobs.
func (c *Client) DeletePool(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/v1/pools/"+url.PathEscape(id), nil, nil)
}

// DeleteNode forgets a node that has no tasks.
func (c *Client) DeleteNode(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/v1/nodes/"+url.PathEscape(id), nil, nil)
}

// CreateJob creates a job.
func (c *Client) CreateJob(ctx context.Context, in JobCreate, opts ...Option) (Job, error) {
	var out Job
	return out, c.do(ctx, http.MethodPost, "/v1/jobs", in, &out, opts...)
}

// Job shows a job with its task counts.
func (c *Client) Job(ctx context.Context, id string) (Job, error) {
	var out Job
	return out, c.do(ctx, http.MethodGet, "/v1/jobs/"+url.PathEscape(id), nil, &out)
}

// WaitJob long-polls until the job's first `groups` task groups completed
// or timeout passed; Job.Done says which.
func (c *Client) WaitJob(ctx context.Context, id string, groups int, timeout time.Duration) (Job, error) {
	var out Job
	q := "?groups=" + strconv.Itoa(groups) + "&timeout=" + timeout.String()
	return out, c.do(ctx, http.MethodGet, "/v1/jobs/"+url.PathEscape(id)+"/wait"+q, nil, &out)
}

// AddTasks adds tasks to a job.
func (c *Client) AddTasks(ctx context.Context, jobID string, in TaskAdd, opts ...Option) (TaskAddResult, error) {
	var out TaskAddResult
	return out, c.do(ctx, http.MethodPost, "/v1/jobs/"+url.PathEscape(jobID)+"/tasks", in, &out, opts...)
}

// Submit creates a job (or uses an existing one) and adds tasks atomically.
func (c *Client) Submit(ctx context.Context, in Submit, opts ...Option) (TaskAddResult, error) {
	var out TaskAddResult
	return out, c.do(ctx, http.MethodPost, "/v1/submit", in, &out, opts...)
}

// Tasks lists one page of a job's tasks; next is the cursor from the
// previous page ("" for the first).
func (c *Client) Tasks(ctx context.Context, jobID, state string, limit int, next string) (TaskList, error) {
	var out TaskList
	q := url.Values{}
	if state != "" {
		q.Set("state", state)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	if next != "" {
		q.Set("next", next)
	}
	return out, c.do(ctx, http.MethodGet, "/v1/jobs/"+url.PathEscape(jobID)+"/tasks?"+q.Encode(), nil, &out)
}

// Task shows a task with its attempts.
func (c *Client) Task(ctx context.Context, jobID, taskID string) (Task, error) {
	var out Task
	return out, c.do(ctx, http.MethodGet, "/v1/jobs/"+url.PathEscape(jobID)+"/tasks/"+url.PathEscape(taskID), nil, &out)
}

// LogChunk is a piece of a task's output.
type LogChunk struct {
	Data    []byte
	Attempt int
	State   string
	Final   bool // nothing more will be written to this attempt's stream
}

// TaskLog reads a task's stdout ("stdout") or stderr from offset; attempt 0
// means the latest.
func (c *Client) TaskLog(ctx context.Context, jobID, taskID, stream string, attempt int, offset int64) (LogChunk, error) {
	var buf bytes.Buffer
	q := url.Values{"offset": {strconv.FormatInt(offset, 10)}}
	if attempt > 0 {
		q.Set("attempt", strconv.Itoa(attempt))
	}
	p := "/v1/jobs/" + url.PathEscape(jobID) + "/tasks/" + url.PathEscape(taskID) + "/files/" + stream + ".txt?" + q.Encode()
	h, err := c.doHeader(ctx, http.MethodGet, p, nil, &buf)
	if err != nil {
		return LogChunk{}, err
	}
	n, _ := strconv.Atoi(h.Get("Lote-Attempt"))
	return LogChunk{Data: buf.Bytes(), Attempt: n, State: h.Get("Lote-Task-State"), Final: h.Get("Lote-Log-Final") == "true"}, nil
}

// Health checks /healthz.
func (c *Client) Health(ctx context.Context) error {
	return c.do(ctx, http.MethodGet, "/healthz", nil, nil)
}

// CreateToken creates an API token; the answer holds the token, which the
// server does not keep.
func (c *Client) CreateToken(ctx context.Context, in TokenCreate) (Token, error) {
	var out Token
	return out, c.do(ctx, http.MethodPost, "/v1/tokens", in, &out)
}

// Tokens lists API tokens (never the tokens themselves).
func (c *Client) Tokens(ctx context.Context) ([]Token, error) {
	var out TokenList
	return out.Tokens, c.do(ctx, http.MethodGet, "/v1/tokens", nil, &out)
}

// RevokeToken revokes the live token named name.
func (c *Client) RevokeToken(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/v1/tokens/"+url.PathEscape(name), nil, nil)
}
