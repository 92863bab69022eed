package server

// webRoutes are the routes outside the JSON API (the dashboard, metrics,
// event streams); they are not in api/openapi.json's path list unless they
// say otherwise. The dashboard's routes check its session cookie
// themselves (see dashboard.go); /metrics needs the admin token like the
// API, so a Prometheus scrape config names it (docs/dashboard.md).
var webRoutes = []route{
	{"GET /metrics", admin, (*Server).serveMetrics},
	{"GET /ui", public, (*Server).uiRoot},
	{"GET /ui/{$}", public, (*Server).uiShell},
	{"GET /ui/static/{file}", public, (*Server).uiStatic},
	{"GET /ui/signin", public, (*Server).uiSignInPage},
	{"POST /ui/signin", public, (*Server).uiSignIn},
	{"POST /ui/signout", public, (*Server).uiSignOut},
	{"GET /ui/v1/{rest...}", public, (*Server).uiAPI},
	{"GET /ui/data/nodes/{id}/tasks", public, (*Server).uiNodeTasks},
}
