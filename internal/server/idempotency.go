package server

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"time"

	"github.com/lotehq/lote/api"
	"github.com/lotehq/lote/internal/core"
	"github.com/lotehq/lote/internal/store"
)

// idempotencyTTL is how long a remembered answer is kept (from server start
// to server start; older keys are forgotten when the server loads).
const idempotencyTTL = 24 * time.Hour

const maxIdempotencyKey = 255

// changeOnce is change for creates: with an Idempotency-Key header, the
// answer is committed in the same batch as the change, and a request retried
// with the same key (also after a server crash) gets that answer again
// instead of a second job. in is the decoded request, hashed to refuse a key
// reused for a different request.
func (s *Server) changeOnce(w http.ResponseWriter, r *http.Request, in any, status int,
	fn func(c *core.Core, now time.Time) (any, error)) error {
	key := r.Header.Get("Idempotency-Key")
	if key == "" {
		var out any
		err := s.change(r.Context(), func(c *core.Core, now time.Time) error {
			var err error
			out, err = fn(c, now)
			return err
		})
		if err != nil {
			return err
		}
		s.crashPoint(r)
		return writeJSON(w, status, out)
	}
	if len(key) > maxIdempotencyKey {
		return invalid("Idempotency-Key", "longer than %d characters", maxIdempotencyKey)
	}
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(append([]byte(r.Method+" "+r.URL.Path+"\n"), b...))
	fp := hex.EncodeToString(sum[:])
	// Keys are per caller: another user's same key is another request.
	key = callerOf(r.Context()).name + "/" + key
	var prev *store.Idempotent
	var fnErr error
	var rec store.Idempotent
	seq := s.eng.do(func(c *core.Core, now time.Time) {
		if p, ok := s.eng.idem[key]; ok {
			prev = &p
			return
		}
		var out any
		if out, fnErr = fn(c, now); fnErr != nil {
			return
		}
		body, err := json.Marshal(out)
		if err != nil {
			fnErr = err
			return
		}
		rec = store.Idempotent{Key: key, Fingerprint: fp, Status: status, Body: body, CreatedAt: now.UnixNano()}
		s.eng.idem[key] = rec
		s.eng.open.idem = append(s.eng.open.idem, rec)
	})
	if fnErr != nil {
		return fnErr
	}
	if err := s.eng.wait(r.Context(), seq); err != nil {
		return err
	}
	if prev != nil {
		if prev.Fingerprint != fp {
			return &httpError{http.StatusConflict, api.CodeConflict,
				"Idempotency-Key was already used for a different request", "Idempotency-Key"}
		}
		rec = *prev
		w.Header().Set("Idempotent-Replayed", "true")
	} else {
		s.crashPoint(r)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(rec.Status)
	_, err = w.Write(append(rec.Body, '\n'))
	return err
}
