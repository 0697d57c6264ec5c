// Package apitest is the Notification API's test kit, used by its own tests
// and by the end-to-end tests (the service does not import it):
//
//   - Contract checks requests and answers against the API's OpenAPI 3.1
//     document (services/notification-api/openapi.json, served at
//     GET /api/openapi.json) with kin-openapi. kin-openapi (v0.153.0) reads
//     OpenAPI 3.1 and validates its schemas as JSON Schema 2020-12 (through
//     santhosh-tekuri/jsonschema/v6), which the document's if/then, const
//     and type arrays need.
//   - Conn is one raw HTTP/1.1 connection, for what a client library hides:
//     a body that never ends, a connection held idle, a server closing it.
package apitest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
)

// Contract is a loaded and valid OpenAPI 3.1 document.
type Contract struct {
	Doc    *openapi3.T
	router routers.Router
}

// Load reads an OpenAPI document, refuses one that is not OpenAPI 3.1 or
// not valid (its examples included), and prepares its routes.
func Load(ctx context.Context, data []byte) (*Contract, error) {
	loader := openapi3.NewLoader()
	loader.Context = ctx
	doc, err := loader.LoadFromData(data)
	if err != nil {
		return nil, fmt.Errorf("load the OpenAPI document: %w", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.1.") {
		return nil, fmt.Errorf("openapi %q: want 3.1.x", doc.OpenAPI)
	}
	if err := doc.Validate(ctx, openapi3.EnableExamplesValidation()); err != nil {
		return nil, fmt.Errorf("the OpenAPI document is not valid: %w", err)
	}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("routes of the OpenAPI document: %w", err)
	}
	return &Contract{Doc: doc, router: router}, nil
}

// options: every status must be documented, authentication is the API's
// business (the document only says which scheme), and errors are full.
func options() *openapi3filter.Options {
	return &openapi3filter.Options{
		IncludeResponseStatus: true,
		MultiError:            true,
		AuthenticationFunc:    openapi3filter.NoopAuthenticationFunc,
	}
}

// route finds the operation of r. A HEAD request is checked as its GET
// without a body.
func (c *Contract) route(r *http.Request) (*routers.Route, map[string]string, error) {
	if r.Method == http.MethodHead {
		r = r.Clone(r.Context())
		r.Method = http.MethodGet
	}
	return c.router.FindRoute(r)
}

// CheckRequest validates a request and its body against the operation it
// is for: parameters, security scheme named, media type and body schema.
// A body of an application/*+json type is checked as application/json,
// which the document lists for both.
func (c *Contract) CheckRequest(ctx context.Context, r *http.Request, body []byte) error {
	route, params, err := c.route(r)
	if err != nil {
		return fmt.Errorf("%s %s: no operation in the document: %w", r.Method, r.URL.Path, err)
	}
	r = r.Clone(ctx)
	if ct := r.Header.Get("Content-Type"); strings.HasPrefix(ct, "application/") && strings.Contains(ct, "+json") {
		r.Header.Set("Content-Type", "application/json")
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	return openapi3filter.ValidateRequest(ctx, &openapi3filter.RequestValidationInput{
		Request: r, PathParams: params, Route: route, Options: options(),
	})
}

// CheckAnswer validates an answer to r: its status must be documented for
// r's operation, and its documented headers and its body must match. For a
// path the document does not have the answer must be 404, and for a method a
// path does not take 405, as components.responses NotFound and
// MethodNotAllowed say.
func (c *Contract) CheckAnswer(ctx context.Context, r *http.Request, status int, header http.Header, body []byte) error {
	route, params, err := c.route(r)
	var unrouted error
	switch {
	case errors.Is(err, routers.ErrPathNotFound):
		route, unrouted = c.fixedRoute("NotFound", http.StatusNotFound), err
	case errors.Is(err, routers.ErrMethodNotAllowed):
		route, unrouted = c.fixedRoute("MethodNotAllowed", http.StatusMethodNotAllowed), err
	case err != nil:
		return fmt.Errorf("%s %s: %w", r.Method, r.URL.Path, err)
	}
	if route == nil {
		return fmt.Errorf("%s %s: %v, and the document has no component response for it", r.Method, r.URL.Path, unrouted)
	}
	opts := options()
	req := r
	if r.Method == http.MethodHead {
		req = r.Clone(ctx)
		req.Method = http.MethodGet
		opts.ExcludeResponseBody = true
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: opts},
		Status:                 status,
		Header:                 header,
		Options:                opts,
	}
	in.SetBodyBytes(body)
	if err := openapi3filter.ValidateResponse(ctx, in); err != nil {
		return fmt.Errorf("%s %s answered %d: %w", r.Method, r.URL.Path, status, err)
	}
	return nil
}

// fixedRoute is an operation that answers only status with the named
// component response, for requests no operation takes.
func (c *Contract) fixedRoute(name string, status int) *routers.Route {
	ref := c.Doc.Components.Responses[name]
	if ref == nil {
		return nil
	}
	return &routers.Route{Spec: c.Doc, Operation: &openapi3.Operation{
		Responses: openapi3.NewResponses(openapi3.WithStatus(status, ref)),
	}}
}
