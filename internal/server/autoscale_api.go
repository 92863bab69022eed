package server

// The API of pool sizing: autoscale enable, disable and eval, node preempt,
// and what pool show adds from the scaler.

import (
	"cmp"
	"errors"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/lotehq/lote/api"
	"github.com/lotehq/lote/internal/core"
)

// advertiseURL is the server address machines made by providers dial.
func (s *Server) advertiseURL() string { return cmp.Or(s.cfg.AdvertiseURL, s.url) }

// caPEM is the CA new machines trust, when the server made one.
func (s *Server) caPEM() string {
	if s.caFile == "" {
		return ""
	}
	b, err := os.ReadFile(s.caFile)
	if err != nil {
		s.log.Warn("reading the CA for new machines", "err", err)
		return ""
	}
	return string(b)
}

// poolOut is a pool as the API shows it, with the scaler's latest
// evaluations and resize errors.
func (s *Server) poolOut(p *core.Pool, withToken bool, now time.Time) api.Pool {
	out := poolOut(p, withToken, now)
	out.AutoscaleRuns, out.ResizeErrors = s.scaler.view(p)
	return out
}

func (s *Server) enableAutoscale(w http.ResponseWriter, r *http.Request) error {
	var in api.AutoscaleChange
	if err := decode(r, &in); err != nil {
		return err
	}
	if len(in.Formula) > maxFormula {
		return invalid("formula", "longer than %d bytes", maxFormula)
	}
	return s.setAutoscale(w, r, func(p *core.Pool) (*core.Autoscale, error) {
		a := core.Autoscale{Enabled: true, Formula: in.Formula, Interval: time.Duration(in.Interval)}
		if old := p.Scaling.Autoscale; old != nil {
			a.Formula = cmp.Or(a.Formula, old.Formula)
			a.Interval = cmp.Or(a.Interval, old.Interval)
		}
		if a.Formula == "" {
			return nil, invalid("formula", "required: the pool has none")
		}
		return &a, nil
	})
}

func (s *Server) disableAutoscale(w http.ResponseWriter, r *http.Request) error {
	return s.setAutoscale(w, r, func(p *core.Pool) (*core.Autoscale, error) {
		if p.Scaling.Autoscale == nil {
			return nil, nil
		}
		a := *p.Scaling.Autoscale
		a.Enabled = false
		return &a, nil
	})
}

func (s *Server) setAutoscale(w http.ResponseWriter, r *http.Request, change func(*core.Pool) (*core.Autoscale, error)) error {
	return s.changePool(w, r, false, func(c *core.Core, p *core.Pool) error {
		a, err := change(p)
		if err != nil {
			return err
		}
		err = c.SetAutoscale(p, a)
		// The body's formula and interval are top-level fields.
		var fe *core.FieldError
		if errors.As(err, &fe) {
			fe.Field = strings.TrimPrefix(fe.Field, "autoscale.")
		}
		return err
	})
}

// evalAutoscale is a dry run: the formula (the pool's when none is given)
// evaluated on the pool's current metrics and history, nothing applied.
func (s *Server) evalAutoscale(w http.ResponseWriter, r *http.Request) error {
	var in api.AutoscaleChange
	if err := decode(r, &in); err != nil {
		return err
	}
	if len(in.Formula) > maxFormula {
		return invalid("formula", "longer than %d bytes", maxFormula)
	}
	var out api.AutoscaleRun
	var err error
	s.read(func(c *core.Core) {
		p := c.Pool(r.PathValue("id"))
		switch {
		case p == nil:
			err = notFound("no pool %q", r.PathValue("id"))
		case in.Formula == "" && p.Scaling.Autoscale == nil:
			err = invalid("formula", "required: the pool has none")
		default:
			out = s.scaler.dryRun(c, p, in.Formula, s.cfg.Now())
		}
	})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, out)
}

// preemptNode takes a spot node back as its provider would (for tests and
// drills): its tasks are stopped, checkpointed and requeued without using
// a retry.
func (s *Server) preemptNode(w http.ResponseWriter, r *http.Request) error {
	var out api.Node
	err := s.change(r.Context(), func(c *core.Core, now time.Time) error {
		n := c.Node(r.PathValue("id"))
		if n == nil {
			return notFound("no node %q", r.PathValue("id"))
		}
		if err := c.PreemptNode(n, now); err != nil {
			return err
		}
		out = nodeOut(n)
		return nil
	})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, out)
}
