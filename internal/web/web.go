// Package web is Lote's dashboard: a small hand-written front end (HTML, CSS
// and JavaScript, no build step) embedded in the binary, the sign-in page,
// and the table of signed-in sessions. The server serves it at /ui/; the
// front end reads the REST API through /ui/v1/ with its session cookie and
// follows /v1/events for live updates. See docs/dashboard.md.
package web

import (
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"html/template"
	"io"
	"io/fs"
	"mime"
	"path"
)

//go:embed static
var static embed.FS

// Asset is one embedded file, ready to serve.
type Asset struct {
	Name        string
	ContentType string
	Body        []byte
	ETag        string // strong, from the content
}

var assets = func() map[string]*Asset {
	m := map[string]*Asset{}
	err := fs.WalkDir(static, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := static.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		name := p[len("static/"):]
		ct := mime.TypeByExtension(path.Ext(name))
		if ct == "" {
			ct = "application/octet-stream"
		}
		m[name] = &Asset{Name: name, ContentType: ct, Body: b, ETag: `"` + base64.RawURLEncoding.EncodeToString(sum[:12]) + `"`}
		return nil
	})
	if err != nil {
		panic(err)
	}
	return m
}()

// Lookup finds an embedded file by name ("app.js").
func Lookup(name string) (*Asset, bool) {
	a, ok := assets[name]
	return a, ok
}

// Shell is the page every dashboard view starts from; the views are drawn
// by app.js.
func Shell() *Asset { return assets["index.html"] }

var signIn = template.Must(template.New("signin").Parse(signInHTML))

// SignInPage is what the sign-in form shows.
type SignInPage struct {
	Error string // why the last attempt failed, if it did
}

// RenderSignIn writes the sign-in page.
func RenderSignIn(w io.Writer, p SignInPage) error { return signIn.Execute(w, p) }

const signInHTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in · Lote</title>
<link rel="stylesheet" href="/ui/static/app.css">
</head>
<body class="signin">
<main class="signin-card">
<h1><span class="brand-mark" aria-hidden="true"></span>Lote</h1>
<p>Sign in with an API token. <code>lote up</code> and <code>lote server</code> write the admin token to
<code>client.json</code> in their directory (<code>~/.lote</code> by default).</p>
<form method="post" action="/ui/signin">
<label for="token">API token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required autofocus
{{- if .Error}} aria-invalid="true" aria-describedby="signin-error"{{end}}>
{{if .Error}}<p id="signin-error" class="error" role="alert">{{.Error}}</p>{{end}}
<button type="submit">Sign in</button>
</form>
</main>
</body>
</html>
`
