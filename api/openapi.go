package api

import (
	"bytes"
	"context"
	_ "embed"
	"net/http"
)

// OpenAPI is the OpenAPI 3.0 description of the REST API, served at
// GET /v1/openapi.json. A test in internal/server keeps it and the served
// routes in step; a test here keeps its schemas and the wire types in step.
//
//go:embed openapi.json
var OpenAPI []byte

// OpenAPIDocument fetches the server's OpenAPI document.
func (c *Client) OpenAPIDocument(ctx context.Context) ([]byte, error) {
	var buf bytes.Buffer
	err := c.do(ctx, http.MethodGet, "/v1/openapi.json", nil, &buf)
	return buf.Bytes(), err
}
