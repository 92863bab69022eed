package server

// webRoutes are the routes outside the JSON API (the dashboard, metrics,
// event streams); they are not in api/openapi.json's path list unless they
// say otherwise.
var webRoutes = []route{}
