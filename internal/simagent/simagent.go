// Package simagent runs many simulated agents in one process for
// benchmarks: each opens a real agent stream to a real server, joins a pool,
// and answers every assignment at once with a successful Finished report,
// without spawning anything (HyperQueue's "zero worker"). What it measures is
// the server's scheduler, protocol and store, end to end.
package simagent

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/lotehq/lote/internal/proto"
)

// Config says what to simulate.
type Config struct {
	Server    string // base URL (http:// on loopback)
	Pool      string
	JoinToken string
	Nodes     int
	Slots     int
	Name      string // node name prefix
}

// Stats counts what the simulated agents did.
type Stats struct {
	Connected atomic.Int64
	Finished  atomic.Int64
}

// Run connects cfg.Nodes simulated agents and serves until ctx ends.
func Run(ctx context.Context, cfg Config, st *Stats) error {
	var wg sync.WaitGroup
	errc := make(chan error, cfg.Nodes)
	for i := 0; i < cfg.Nodes; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if err := node(ctx, cfg, fmt.Sprintf("%s-%d", cfg.Name, i), st); err != nil && ctx.Err() == nil {
				errc <- err
			}
		}(i)
	}
	wg.Wait()
	close(errc)
	return <-errc
}

func node(ctx context.Context, cfg Config, name string, st *Stats) error {
	url := "ws" + strings.TrimPrefix(cfg.Server, "http") + proto.Path
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	conn, _, err := websocket.Dial(dctx, url, &websocket.DialOptions{
		HTTPHeader: http.Header{"Authorization": {"Bearer " + cfg.JoinToken}}, CompressionMode: websocket.CompressionDisabled,
	})
	cancel()
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	defer conn.CloseNow()
	conn.SetReadLimit(64 << 20)
	hello := &proto.ToServer{Hello: &proto.Hello{
		Version: proto.Version, Name: name, Pool: cfg.Pool, Hostname: name, Slots: cfg.Slots, Cores: cfg.Slots, Memory: 1 << 30,
	}}
	if err := write(ctx, conn, hello); err != nil {
		return err
	}
	var w proto.ToAgent
	if err := read(ctx, conn, &w); err != nil {
		return err
	}
	if w.Error != "" || w.Welcome == nil {
		return fmt.Errorf("%s: refused: %s", name, w.Error)
	}
	st.Connected.Add(1)

	var mu sync.Mutex
	var pending []proto.Finished
	notify := make(chan struct{}, 1)
	go func() {
		var seq uint64
		tick := time.NewTicker(time.Duration(w.Welcome.HeartbeatInterval))
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-notify:
			case <-tick.C:
			}
			mu.Lock()
			f := &proto.ToServer{Finished: pending}
			pending = nil
			mu.Unlock()
			if len(f.Finished) > 0 {
				seq++
				f.Seq = seq
			}
			if err := write(ctx, conn, f); err != nil {
				return
			}
			st.Finished.Add(int64(len(f.Finished)))
		}
	}()
	// The welcome frame may already carry the first assignments.
	f := w
	for {
		if len(f.Assign) > 0 {
			now := time.Now().UnixNano()
			mu.Lock()
			for _, a := range f.Assign {
				pending = append(pending, proto.Finished{Ref: a.Ref, StartedAt: now, EndedAt: now})
			}
			mu.Unlock()
			select {
			case notify <- struct{}{}:
			default:
			}
		}
		f = proto.ToAgent{}
		if err := read(ctx, conn, &f); err != nil {
			return err
		}
	}
}

func read(ctx context.Context, c *websocket.Conn, v any) error {
	_, b, err := c.Read(ctx)
	if err != nil {
		return err
	}
	return proto.Unmarshal(b, v)
}

func write(ctx context.Context, c *websocket.Conn, v any) error {
	b, err := proto.Marshal(v)
	if err != nil {
		return err
	}
	return c.Write(ctx, websocket.MessageBinary, b)
}
