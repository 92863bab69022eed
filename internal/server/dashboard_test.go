package server_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/lotehq/lote/api"
	"github.com/lotehq/lote/internal/testenv"
)

// browser is an HTTP client that keeps cookies and does not follow
// redirects, so a test sees each answer.
func browser(t *testing.T) *http.Client {
	t.Helper()
	return &http.Client{
		Jar:           newJar(),
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// jar is a minimal cookie jar keeping cookies by name (one host).
type jar struct{ cookies map[string]*http.Cookie }

func newJar() *jar { return &jar{cookies: map[string]*http.Cookie{}} }

func (j *jar) SetCookies(_ *url.URL, cs []*http.Cookie) {
	for _, c := range cs {
		if c.MaxAge < 0 {
			delete(j.cookies, c.Name)
		} else {
			j.cookies[c.Name] = c
		}
	}
}

func (j *jar) Cookies(u *url.URL) []*http.Cookie {
	var out []*http.Cookie
	for _, c := range j.cookies {
		if strings.HasPrefix(u.Path, c.Path) {
			out = append(out, c)
		}
	}
	return out
}

func do(t *testing.T, c *http.Client, method, u string, form url.Values, hdr ...string) (*http.Response, string) {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

// signIn signs c in with token and returns the session cookie.
func signIn(t *testing.T, c *http.Client, base, token string) *http.Cookie {
	t.Helper()
	resp, _ := do(t, c, http.MethodPost, base+"/ui/signin", url.Values{"token": {token}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/" {
		t.Fatalf("sign-in: %d to %q, want 303 to /ui/", resp.StatusCode, resp.Header.Get("Location"))
	}
	for _, ck := range resp.Cookies() {
		if ck.Name == "lote_session" {
			return ck
		}
	}
	t.Fatal("sign-in set no lote_session cookie")
	return nil
}

// TestDashboardSignIn covers the dashboard's session: the sign-in page,
// refused tokens and cross-origin posts, the cookie's attributes, the API
// read through /ui/v1/ with the session's rights, the static files, and
// sign-out.
func TestDashboardSignIn(t *testing.T) {
	env := testenv.Start(t)
	base, tok := env.Server.URL(), env.Server.AdminToken()
	c := browser(t)

	resp, _ := do(t, c, http.MethodGet, base+"/ui/", nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/signin" {
		t.Errorf("/ui/ signed out: %d to %q, want 303 to /ui/signin", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, body := do(t, c, http.MethodGet, base+"/ui/signin", nil)
	if resp.StatusCode != 200 || !strings.Contains(body, `<label for="token">`) {
		t.Errorf("sign-in page: %d\n%s", resp.StatusCode, body)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("sign-in page CSP %q", csp)
	}
	for path, want := range map[string]int{"/ui/v1/pools": 401, "/ui/data/nodes/x/tasks": 401} {
		if resp, _ := do(t, c, http.MethodGet, base+path, nil); resp.StatusCode != want {
			t.Errorf("%s signed out: %d, want %d", path, resp.StatusCode, want)
		}
	}

	// Refused: a wrong token, a cross-origin post.
	resp, body = do(t, c, http.MethodPost, base+"/ui/signin", url.Values{"token": {"lote_nope"}})
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, `role="alert"`) || len(resp.Cookies()) != 0 {
		t.Errorf("wrong token: %d, cookies %v\n%s", resp.StatusCode, resp.Cookies(), body)
	}
	resp, _ = do(t, c, http.MethodPost, base+"/ui/signin", url.Values{"token": {tok}}, "Sec-Fetch-Site", "cross-site")
	if resp.StatusCode != http.StatusForbidden || len(resp.Cookies()) != 0 {
		t.Errorf("cross-site sign-in: %d, cookies %v; want 403 and none", resp.StatusCode, resp.Cookies())
	}

	ck := signIn(t, c, base, tok)
	if !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Path != "/ui/" || strings.Contains(ck.Value, tok) || len(ck.Value) < 40 {
		t.Errorf("session cookie %+v: want HttpOnly, SameSite=Strict, Path=/ui/, a random ID", ck)
	}
	resp, body = do(t, c, http.MethodGet, base+"/ui/", nil)
	if resp.StatusCode != 200 || !strings.Contains(body, `src="/ui/static/app.js"`) || resp.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("/ui/ signed in: %d\n%s", resp.StatusCode, body)
	}
	if _, err := env.Client.CreatePool(context.Background(), api.PoolCreate{ID: "web"}); err != nil {
		t.Fatal(err)
	}
	resp, body = do(t, c, http.MethodGet, base+"/ui/v1/pools", nil)
	var pools api.PoolList
	if resp.StatusCode != 200 || json.Unmarshal([]byte(body), &pools) != nil || len(pools.Pools) != 1 {
		t.Errorf("/ui/v1/pools: %d\n%s", resp.StatusCode, body)
	}
	if resp, _ := do(t, c, http.MethodPost, base+"/ui/v1/pools", url.Values{}); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /ui/v1/pools: %d, want 405 (the dashboard only reads)", resp.StatusCode)
	}
	resp, body = do(t, c, http.MethodGet, base+"/ui/v1/events?follow=false&after=0", nil)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" || !strings.Contains(body, "event: open") {
		t.Errorf("/ui/v1/events: %d %q\n%s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	if resp, body := do(t, c, http.MethodGet, base+"/ui/data/nodes/nope/tasks", nil); resp.StatusCode != 404 {
		t.Errorf("/ui/data/nodes/nope/tasks: %d\n%s", resp.StatusCode, body)
	}

	// Static files: typed, with an ETag that answers 304.
	resp, body = do(t, c, http.MethodGet, base+"/ui/static/app.js", nil)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/javascript") || !strings.Contains(body, "EventSource") {
		t.Errorf("app.js: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if resp, _ := do(t, c, http.MethodGet, base+"/ui/static/app.js", nil, "If-None-Match", resp.Header.Get("ETag")); resp.StatusCode != http.StatusNotModified {
		t.Errorf("app.js with its ETag: %d, want 304", resp.StatusCode)
	}
	for _, p := range []string{"/ui/static/index.html", "/ui/static/nope.js", "/ui/static/..%2fweb.go"} {
		if resp, _ := do(t, c, http.MethodGet, base+p, nil); resp.StatusCode != 404 {
			t.Errorf("%s: %d, want 404", p, resp.StatusCode)
		}
	}

	// Sign out: the cookie is cleared and the session is gone for good.
	resp, _ = do(t, c, http.MethodPost, base+"/ui/signout", url.Values{})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/signin" {
		t.Errorf("sign-out: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	stale := browser(t)
	stale.Jar.SetCookies(nil, []*http.Cookie{ck})
	if resp, _ := do(t, stale, http.MethodGet, base+"/ui/v1/pools", nil); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("the signed-out session still reads the API: %d", resp.StatusCode)
	}
}

// TestDashboardUserSession signs in with a user token: the dashboard then
// shows that user's jobs only, node details stay admin-only, and the
// session ends when the token is revoked.
func TestDashboardUserSession(t *testing.T) {
	env := testenv.Start(t)
	ctx := context.Background()
	base, cl := env.Server.URL(), env.Client
	if _, err := cl.CreatePool(ctx, api.PoolCreate{ID: "p"}); err != nil {
		t.Fatal(err)
	}
	alice, err := cl.CreateToken(ctx, api.TokenCreate{Name: "alice", Role: "user"})
	if err != nil {
		t.Fatal(err)
	}
	ac, err := api.NewClient(base, alice.Token, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, job := range []struct {
		c  *api.Client
		id string
	}{{cl, "admins"}, {ac, "alices"}} {
		if _, err := job.c.Submit(ctx, api.Submit{Job: api.JobCreate{ID: job.id, PoolID: "p"},
			Tasks: api.TaskAdd{Array: "1-2", Template: &api.TaskSpec{Command: []string{"true"}}}}); err != nil {
			t.Fatal(err)
		}
	}
	c := browser(t)
	signIn(t, c, base, alice.Token)
	resp, body := do(t, c, http.MethodGet, base+"/ui/v1/jobs", nil)
	var jobs api.JobList
	if resp.StatusCode != 200 || json.Unmarshal([]byte(body), &jobs) != nil || len(jobs.Jobs) != 1 || jobs.Jobs[0].ID != "alices" {
		t.Errorf("alice's /ui/v1/jobs: %d\n%s", resp.StatusCode, body)
	}
	if resp, _ := do(t, c, http.MethodGet, base+"/ui/data/nodes/x/tasks", nil); resp.StatusCode != http.StatusForbidden {
		t.Errorf("alice's node tasks: %d, want 403", resp.StatusCode)
	}
	// Events: alice sees her job's events, not the admin's.
	_, body = do(t, c, http.MethodGet, base+"/ui/v1/events?follow=false&after=0&kind=job,task", nil)
	if !strings.Contains(body, `"job_id":"alices"`) || strings.Contains(body, `"job_id":"admins"`) {
		t.Errorf("alice's events:\n%s", body)
	}
	var seen []string
	err = ac.Events(ctx, api.EventFilter{FromStart: true, Kinds: []string{"job"}}, func(ev api.Event, gap error) error {
		seen = append(seen, ev.JobID)
		return gap
	})
	if err != nil || strings.Join(seen, ",") != "alices" {
		t.Errorf("alice's job events over the API: %v, %v", seen, err)
	}

	if err := cl.RevokeToken(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if resp, _ := do(t, c, http.MethodGet, base+"/ui/v1/jobs", nil); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("after revoking alice's token her session reads: %d", resp.StatusCode)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, _ := do(t, c, http.MethodGet, base+"/ui/", nil)
		if resp.StatusCode == http.StatusSeeOther {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/ui/ after revoking: %d, want a redirect to sign in", resp.StatusCode)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestEventsEndWhenTokenRevoked checks that a followed stream ends once
// its token is revoked, and that the client then reports the 401.
func TestEventsEndWhenTokenRevoked(t *testing.T) {
	env := testenv.Start(t)
	ctx := context.Background()
	cl := env.Client
	if _, err := cl.CreatePool(ctx, api.PoolCreate{ID: "p"}); err != nil {
		t.Fatal(err)
	}
	bob, err := cl.CreateToken(ctx, api.TokenCreate{Name: "bob", Role: "user"})
	if err != nil {
		t.Fatal(err)
	}
	bc, err := api.NewClient(env.Server.URL(), bob.Token, "")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		done <- bc.Events(ctx, api.EventFilter{Follow: true}, func(api.Event, error) error { return nil })
	}()
	time.Sleep(1100 * time.Millisecond) // the stream checks its token at most once a second
	if err := cl.RevokeToken(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	// Events wake the stream, which then finds its token revoked.
	if _, err := cl.Submit(ctx, api.Submit{Job: api.JobCreate{ID: "wake", PoolID: "p"},
		Tasks: api.TaskAdd{Array: "1-2", Template: &api.TaskSpec{Command: []string{"true"}}}}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !api.IsStatus(err, http.StatusUnauthorized) {
			t.Errorf("the revoked stream ended with %v, want a 401", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the stream of a revoked token is still open")
	}
}
