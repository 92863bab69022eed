package spawner

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"slices"
	"sync"
	"syscall"
	"time"
)

// Client is the agent's connection to its spawner. It is safe for concurrent
// use. Requests are queued and written in batches by a background goroutine,
// so Spawn, Kill and Ack never wait for the spawner.
type Client struct {
	nc        net.Conn
	out       *outbox
	exits     chan Exit
	attached  chan struct{} // closed when the spawner has made this its client
	gone      chan struct{} // closed when the connection has ended
	closing   chan struct{} // closed by Close
	closeOnce sync.Once
	chains    bool // the spawner supports SpawnRequest.After; set before attached closes
	bases     bool // the spawner supports SpawnRequest.Base; set before attached closes

	mu     sync.Mutex
	err    error         // why the connection ended
	base   *baseEnv      // the last SetBase, for a spawner without bases
	queue  []Exit        // received, not yet sent on exits
	queued chan struct{} // capacity 1: queue grew
	lists  map[uint64]chan *runningReply
	seq    uint64
}

// Dial connects to a running spawner and becomes its client, replacing any
// previous one.
func Dial(ctx context.Context, socketPath string) (*Client, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "unix", socketPath)
	if err != nil {
		return nil, fmt.Errorf("dialing spawner: %w", err)
	}
	c := &Client{
		nc:       nc,
		out:      newOutbox(),
		exits:    make(chan Exit, 256),
		attached: make(chan struct{}),
		gone:     make(chan struct{}),
		closing:  make(chan struct{}),
		queued:   make(chan struct{}, 1),
		lists:    make(map[uint64]chan *runningReply),
	}
	go c.out.run(nc)
	go c.read()
	go c.deliver()
	c.out.put(&frame{Hello: protocolVersion})
	select {
	case <-c.attached:
		return c, nil
	case <-c.gone:
		err = c.failure()
	case <-ctx.Done():
		err = ctx.Err()
	}
	c.Close()
	return nil, fmt.Errorf("dialing spawner: %w", err)
}

const ensureTimeout = 5 * time.Second

// Ensure connects to the spawner on socketPath, first starting `exe args...`
// if none answers, as a detached process in its own session with its output
// appended to socketPath+".log". It gives up after about five seconds. The
// agent passes its own executable and the arguments that make it run Serve.
func Ensure(ctx context.Context, socketPath string, exe string, args ...string) (*Client, error) {
	ctx, cancel := context.WithTimeout(ctx, ensureTimeout)
	defer cancel()
	var exited <-chan struct{} // of the spawner we started, if any
	backoff := 5 * time.Millisecond
	for {
		c, err := Dial(ctx, socketPath)
		if err == nil {
			return c, nil
		}
		if (errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, fs.ErrNotExist)) && !running(exited) {
			// A spawner that exits at once (another won the race) is
			// started again if there is still nobody to answer.
			if exited, err = startDetached(socketPath, exe, args); err != nil {
				return nil, err
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("ensuring spawner on %s (log in %s.log): %w", socketPath, socketPath, err)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 200*time.Millisecond)
	}
}

func running(exited <-chan struct{}) bool {
	if exited == nil {
		return false
	}
	select {
	case <-exited:
		return false
	default:
		return true
	}
}

// startDetached starts the spawner; the returned channel closes when it exits.
// The spawner stays our child, so a goroutine waits to reap it.
func startDetached(socketPath, exe string, args []string) (<-chan struct{}, error) {
	logf, err := os.OpenFile(socketPath+".log", os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("starting spawner: %w", err)
	}
	defer logf.Close()
	devNull, err := os.Open(os.DevNull)
	if err != nil {
		return nil, fmt.Errorf("starting spawner: %w", err)
	}
	defer devNull.Close()
	p, err := os.StartProcess(exe, append([]string{exe}, args...), &os.ProcAttr{
		Files: []*os.File{devNull, logf, logf},
		Sys:   &syscall.SysProcAttr{Setsid: true},
	})
	if err != nil {
		return nil, fmt.Errorf("starting spawner: %w", err)
	}
	exited := make(chan struct{})
	go func() {
		p.Wait()
		close(exited)
	}()
	return exited, nil
}

// Spawn queues the start of a task. Its outcome, including a failure to
// start, comes back as an Exit; the error only says that the request is
// malformed or the connection is gone.
func (c *Client) Spawn(req SpawnRequest) error {
	if err := checkID(req.ID); err != nil {
		return fmt.Errorf("spawn: %w", err)
	}
	if req.Base && !c.bases {
		c.mu.Lock()
		req.Env, req.Base = c.base.with(req.Env), false
		c.mu.Unlock()
	}
	return c.send(&frame{Spawn: &req})
}

// SetBase sets the environment that spawns with Base add to, from now on;
// until it is called that is empty. It is sent to the spawner once, not
// with every spawn.
func (c *Client) SetBase(env []string) error {
	if c.bases {
		return c.send(&frame{Base: append(make([]string, 0, len(env)), env...)})
	}
	b := newBaseEnv(env)
	c.mu.Lock()
	c.base = b
	c.mu.Unlock()
	return nil
}

// Chains reports whether the spawner supports SpawnRequest.After.
func (c *Client) Chains() bool { return c.chains }

// Kill stops a running task: SIGTERM to its process group, then SIGKILL after
// grace, or at once if grace is not positive. Its Exit has Killed set. A
// spawn still waiting on its After is dropped, with an Exit that has Killed
// set and no PID. An unknown or finished task is left alone.
func (c *Client) Kill(id string, grace time.Duration) error {
	return c.send(&frame{Kill: &killRequest{ID: id, Grace: grace}})
}

// Exits delivers every exit: those that happen while connected, and those the
// spawner holds unacknowledged from earlier connections. It is closed when
// the connection ends. It must be drained.
func (c *Client) Exits() <-chan Exit { return c.exits }

// Ack tells the spawner that the agent has durably handed these exits on, so
// it forgets them and never delivers them again.
func (c *Client) Ack(ids ...string) error {
	if len(ids) == 0 {
		return nil
	}
	return c.send(&frame{Ack: ids})
}

// List returns the tasks alive now, for a restarted agent to adopt. As the
// spawner handles requests in order, it also confirms that every request sent
// before it has been handled.
func (c *Client) List(ctx context.Context) ([]Running, error) {
	running, _, err := c.State(ctx)
	return running, err
}

// State is List with the IDs whose exits the spawner holds unacknowledged
// (and delivers to this client). A spawn in neither was never recorded: the
// spawner died between its fork and its journal, and its process died with
// it or runs unsupervised. exited is nil from a spawner that does not say.
func (c *Client) State(ctx context.Context) (running []Running, exited []string, err error) {
	reply := make(chan *runningReply, 1)
	c.mu.Lock()
	c.seq++
	seq := c.seq
	c.lists[seq] = reply
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.lists, seq)
		c.mu.Unlock()
	}()
	if err := c.send(&frame{List: seq}); err != nil {
		return nil, nil, err
	}
	select {
	case r := <-reply:
		return r.Tasks, r.Exited, nil
	case <-c.gone:
		return nil, nil, c.failure()
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
}

// Close closes the connection; the tasks keep running and their exits wait
// for the next client.
func (c *Client) Close() error {
	c.closeOnce.Do(func() { close(c.closing) })
	if err := c.nc.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		return err
	}
	return nil
}

func (c *Client) send(f *frame) error {
	select {
	case <-c.gone:
		return c.failure()
	default:
	}
	if err := c.out.put(f); err != nil {
		return fmt.Errorf("%w: %w", ErrClosed, err)
	}
	return nil
}

func (c *Client) failure() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func (c *Client) read() {
	sc := newFrameScanner(c.nc)
	err, attached := ErrClosed, false
	for sc.Scan() {
		var f frame
		if e := decodeFrame(sc.Bytes(), &f); e != nil {
			err = fmt.Errorf("%w: decoding frame: %w", ErrClosed, e)
			break
		}
		switch {
		case f.Hello != 0:
			if !attached {
				c.chains = slices.Contains(f.Features, featureAfter)
				c.bases = slices.Contains(f.Features, featureBase)
				close(c.attached)
				attached = true
			}
		case f.Exit != nil:
			c.mu.Lock()
			c.queue = append(c.queue, *f.Exit)
			c.mu.Unlock()
			select {
			case c.queued <- struct{}{}:
			default:
			}
		case f.Running != nil:
			c.mu.Lock()
			reply := c.lists[f.Running.Seq]
			c.mu.Unlock()
			if reply != nil {
				select {
				case reply <- f.Running:
				default: // a duplicate reply
				}
			}
		}
	}
	if e := sc.Err(); e != nil && !errors.Is(e, net.ErrClosed) {
		err = fmt.Errorf("%w: %w", ErrClosed, e)
	}
	c.mu.Lock()
	c.err = err
	c.mu.Unlock()
	close(c.gone)
	c.out.close()
	c.nc.Close()
}

// deliver moves received exits to the exits channel, so that a caller slow to
// drain it never holds up list replies. It closes exits after the last one.
func (c *Client) deliver() {
	defer close(c.exits)
	for {
		c.mu.Lock()
		batch := c.queue
		c.queue = nil
		c.mu.Unlock()
		for _, e := range batch {
			select {
			case c.exits <- e:
			case <-c.closing:
				return
			}
		}
		if len(batch) > 0 {
			continue
		}
		select {
		case <-c.queued:
		case <-c.gone:
			c.mu.Lock()
			empty := len(c.queue) == 0
			c.mu.Unlock()
			if empty {
				return
			}
		case <-c.closing:
			return
		}
	}
}
