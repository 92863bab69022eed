package server

import (
	"net/http"
	"strings"
	"time"

	"github.com/lotehq/lote/api"
	"github.com/lotehq/lote/internal/core"
	"github.com/lotehq/lote/internal/web"
)

// The dashboard (internal/web) at /ui/. Signing in trades an API token for
// a session cookie (HttpOnly, SameSite=Strict, Path=/ui/) holding a random
// session ID; the session remembers the token. The front end then reads
// the API through /ui/v1/..., which checks the session and hands the
// request to the API's own handler with the session's token, so the
// dashboard can do exactly what that token can, and nothing is
// authorized twice in two ways. Only GET passes: the dashboard changes
// nothing yet.

const sessionCookie = "lote_session"

// uiSessions are the dashboard's sign-ins. A session also checks, on every
// use, that its token still opens this server.
var uiSessions web.Sessions

// uiCSRF refuses cross-origin form posts (sign-in and sign-out).
var uiCSRF = http.NewCrossOriginProtection()

// uiToken returns the token of the request's session, if it has a live one
// whose token this server accepts.
func (s *Server) uiToken(r *http.Request) (string, bool) {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return "", false
	}
	tok, ok := uiSessions.Token(c.Value, time.Now())
	if !ok || !s.tokenValid(tok) {
		return "", false
	}
	return tok, true
}

// tokenValid says whether the API accepts tok (an admin or a user token).
func (s *Server) tokenValid(tok string) bool {
	_, ok := s.tokenIdentity(tok)
	return ok
}

func (s *Server) tokenIdentity(tok string) (identity, bool) {
	return s.who(&http.Request{Header: http.Header{"Authorization": {"Bearer " + tok}}})
}

// uiHeaders are sent with every dashboard page and file: scripts and styles
// only from the server itself, no framing, no referrer.
func uiHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
}

// uiRoot redirects /ui to /ui/.
func (s *Server) uiRoot(w http.ResponseWriter, r *http.Request) error {
	http.Redirect(w, r, "/ui/", http.StatusMovedPermanently)
	return nil
}

// uiShell serves the page the front end draws every view in; without a
// session it sends the browser to sign in.
func (s *Server) uiShell(w http.ResponseWriter, r *http.Request) error {
	if _, ok := s.uiToken(r); !ok {
		http.Redirect(w, r, "/ui/signin", http.StatusSeeOther)
		return nil
	}
	uiHeaders(w)
	w.Header().Set("Cache-Control", "no-store")
	serveAsset(w, r, web.Shell())
	return nil
}

// uiStatic serves the front end's files; they hold nothing secret.
func (s *Server) uiStatic(w http.ResponseWriter, r *http.Request) error {
	a, ok := web.Lookup(r.PathValue("file"))
	if !ok || a == web.Shell() {
		http.NotFound(w, r)
		return nil
	}
	uiHeaders(w)
	w.Header().Set("Cache-Control", "no-cache")
	serveAsset(w, r, a)
	return nil
}

func serveAsset(w http.ResponseWriter, r *http.Request, a *web.Asset) {
	w.Header().Set("Content-Type", a.ContentType)
	w.Header().Set("ETag", a.ETag)
	http.ServeContent(w, r, "", time.Time{}, strings.NewReader(string(a.Body)))
}

func (s *Server) uiSignInPage(w http.ResponseWriter, r *http.Request) error {
	if _, ok := s.uiToken(r); ok {
		http.Redirect(w, r, "/ui/", http.StatusSeeOther)
		return nil
	}
	return renderSignIn(w, http.StatusOK, "")
}

func renderSignIn(w http.ResponseWriter, status int, msg string) error {
	uiHeaders(w)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	return web.RenderSignIn(w, web.SignInPage{Error: msg})
}

// uiSignIn checks the token from the form and starts a session.
func (s *Server) uiSignIn(w http.ResponseWriter, r *http.Request) error {
	if err := uiCSRF.Check(r); err != nil {
		return &httpError{http.StatusForbidden, api.CodeUnauthorized, "cross-origin sign-in refused", ""}
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	tok := strings.TrimSpace(r.PostFormValue("token"))
	if tok == "" || !s.tokenValid(tok) {
		return renderSignIn(w, http.StatusUnauthorized, "That token was not accepted.")
	}
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: uiSessions.New(tok, time.Now()), Path: "/ui/",
		MaxAge: int(web.SessionTTL / time.Second), HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode,
	})
	http.Redirect(w, r, "/ui/", http.StatusSeeOther)
	return nil
}

// uiSignOut ends the session.
func (s *Server) uiSignOut(w http.ResponseWriter, r *http.Request) error {
	if err := uiCSRF.Check(r); err != nil {
		return &httpError{http.StatusForbidden, api.CodeUnauthorized, "cross-origin sign-out refused", ""}
	}
	if c, err := r.Cookie(sessionCookie); err == nil {
		uiSessions.End(c.Value)
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/ui/", MaxAge: -1, HttpOnly: true,
		Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, "/ui/signin", http.StatusSeeOther)
	return nil
}

// uiAPI hands a GET under /ui/v1/ to the API handler for /v1/ with the
// session's token.
func (s *Server) uiAPI(w http.ResponseWriter, r *http.Request) error {
	tok, ok := s.uiToken(r)
	if !ok {
		writeErr(w, http.StatusUnauthorized, api.CodeUnauthorized, "not signed in", "")
		return nil
	}
	r2 := r.Clone(r.Context())
	r2.URL.Path, r2.URL.RawPath = "/v1/"+r.PathValue("rest"), ""
	r2.RequestURI = r2.URL.RequestURI()
	r2.Header.Set("Authorization", "Bearer "+tok)
	r2.Header.Del("Cookie")
	w.Header().Set("Cache-Control", "no-store")
	s.http.Handler.ServeHTTP(w, r2)
	return nil
}

// uiNodeTasks lists the tasks a node holds now (assigned, preparing or
// running), for the node view: the REST API has no such list yet. Like the
// node itself it is for admins.
func (s *Server) uiNodeTasks(w http.ResponseWriter, r *http.Request) error {
	tok, ok := s.uiToken(r)
	if !ok {
		writeErr(w, http.StatusUnauthorized, api.CodeUnauthorized, "not signed in", "")
		return nil
	}
	if id, _ := s.tokenIdentity(tok); !id.admin() {
		writeErr(w, http.StatusForbidden, "forbidden", "needs an admin token", "")
		return nil
	}
	out := api.TaskList{Version: api.Version, Tasks: []api.Task{}}
	var found bool
	s.read(func(c *core.Core) {
		n := c.Node(r.PathValue("id"))
		if n == nil {
			return
		}
		found = true
		for _, t := range n.Tasks() {
			out.Tasks = append(out.Tasks, taskOut(t, false))
		}
	})
	if !found {
		return notFound("no node %q", r.PathValue("id"))
	}
	w.Header().Set("Cache-Control", "no-store")
	return writeJSON(w, http.StatusOK, out)
}
