package server

import (
	"context"
	"crypto/subtle"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/lotehq/lote/api"
	"github.com/lotehq/lote/internal/core"
	"github.com/lotehq/lote/internal/store"
)

// Roles of API tokens (DESIGN §6): admin manages pools, nodes, tokens and
// every job; user sees and acts on its own jobs only — others' answer 404.
const (
	RoleAdmin = "admin"
	RoleUser  = "user"
)

// identity is who a request comes from.
type identity struct {
	name string
	role string
}

func (id identity) admin() bool { return id.role == RoleAdmin }

type identityKey struct{}

func callerOf(ctx context.Context) identity {
	id, _ := ctx.Value(identityKey{}).(identity)
	return id
}

// tokens holds API tokens by hash (never the tokens themselves) and a rate
// limiter per identity. The admin token of client.json is checked apart.
type tokens struct {
	mu       sync.RWMutex
	byHash   map[string]store.Token
	limiters map[string]*rate.Limiter
	limit    rate.Limit
	burst    int
}

func newTokens(list []store.Token, perSecond float64) *tokens {
	t := &tokens{byHash: map[string]store.Token{}, limiters: map[string]*rate.Limiter{}}
	for _, tok := range list {
		t.byHash[tok.Hash] = tok
	}
	t.limit, t.burst = rate.Inf, 0
	if perSecond > 0 {
		t.limit, t.burst = rate.Limit(perSecond), max(int(2*perSecond), 1)
	}
	return t
}

// who authenticates a request's bearer token.
func (s *Server) who(r *http.Request) (identity, bool) {
	tok, ok := bearer(r)
	if !ok || tok == "" {
		return identity{}, false
	}
	if subtle.ConstantTimeCompare([]byte(tok), []byte(s.adminTok)) == 1 {
		return identity{name: RoleAdmin, role: RoleAdmin}, true
	}
	s.tokens.mu.RLock()
	t, ok := s.tokens.byHash[hashToken(tok)]
	s.tokens.mu.RUnlock()
	if !ok || t.RevokedAt != 0 {
		return identity{}, false
	}
	return identity{name: t.Name, role: t.Role}, true
}

// valid reports whether the token a long-lived stream was opened with is
// still good, so streams end when it is revoked.
func (s *Server) valid(r *http.Request) bool {
	_, ok := s.who(r)
	return ok
}

// allow applies the caller's rate limit; a refused request is answered 429
// with Retry-After.
func (s *Server) allow(w http.ResponseWriter, id identity) bool {
	t := s.tokens
	if t.limit == rate.Inf {
		return true
	}
	t.mu.Lock()
	lim := t.limiters[id.name]
	if lim == nil {
		lim = rate.NewLimiter(t.limit, t.burst)
		t.limiters[id.name] = lim
	}
	t.mu.Unlock()
	res := lim.Reserve()
	if d := res.Delay(); d > 0 {
		res.Cancel()
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(d.Seconds()))))
		writeErr(w, http.StatusTooManyRequests, api.CodeRateLimited, "rate limit exceeded; retry later", "")
		return false
	}
	return true
}

// visible reports whether the caller may see a job: admins see all, users
// their own.
func visible(id identity, j *core.Job) bool { return id.admin() || j.Owner == id.name }

func (s *Server) createToken(w http.ResponseWriter, r *http.Request) error {
	var in api.TokenCreate
	if err := decode(r, &in); err != nil {
		return err
	}
	if !core.ValidID(in.Name) || in.Name == RoleAdmin {
		return invalid("name", "must be 1-64 characters of letters, digits, '_' and '-', and not %q", RoleAdmin)
	}
	if in.Role != RoleAdmin && in.Role != RoleUser {
		return invalid("role", "must be admin or user")
	}
	secret := "lote_" + newSecret()
	rec := store.Token{Hash: hashToken(secret), Name: in.Name, Role: in.Role, CreatedAt: time.Now().UnixNano()}
	s.tokens.mu.Lock()
	for _, t := range s.tokens.byHash {
		if t.Name == in.Name && t.RevokedAt == 0 {
			s.tokens.mu.Unlock()
			return &httpError{http.StatusConflict, api.CodeConflict, fmt.Sprintf("a token named %q exists (revoke it first)", in.Name), "name"}
		}
	}
	s.tokens.byHash[rec.Hash] = rec
	s.tokens.mu.Unlock()
	if err := s.saveToken(r.Context(), rec); err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, api.Token{Version: api.Version, Name: rec.Name, Role: rec.Role,
		CreatedAt: ts(rec.CreatedAt), Token: secret})
}

func (s *Server) saveToken(ctx context.Context, rec store.Token) error {
	s.eng.mu.Lock()
	s.eng.open.tokens = append(s.eng.open.tokens, rec)
	seq := s.eng.seq
	s.eng.mu.Unlock()
	s.eng.kick()
	return s.eng.wait(ctx, seq)
}

func (s *Server) listTokens(w http.ResponseWriter, r *http.Request) error {
	out := api.TokenList{Version: api.Version, Tokens: []api.Token{}}
	s.tokens.mu.RLock()
	for _, t := range s.tokens.byHash {
		at := api.Token{Name: t.Name, Role: t.Role, CreatedAt: ts(t.CreatedAt)}
		if t.RevokedAt != 0 {
			rv := ts(t.RevokedAt)
			at.RevokedAt = &rv
		}
		out.Tokens = append(out.Tokens, at)
	}
	s.tokens.mu.RUnlock()
	sortTokens(out.Tokens)
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) revokeToken(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	var rec store.Token
	found := false
	s.tokens.mu.Lock()
	for h, t := range s.tokens.byHash {
		if t.Name == name && t.RevokedAt == 0 {
			t.RevokedAt = time.Now().UnixNano()
			s.tokens.byHash[h] = t
			rec, found = t, true
		}
	}
	s.tokens.mu.Unlock()
	if !found {
		return notFound("no live token named %q", name)
	}
	if err := s.saveToken(r.Context(), rec); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func sortTokens(ts []api.Token) {
	slices.SortFunc(ts, func(a, b api.Token) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return a.CreatedAt.Compare(b.CreatedAt)
	})
}
