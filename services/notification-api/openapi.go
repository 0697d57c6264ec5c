package main

import (
	_ "embed"
	"net/http"
)

// openAPIDocument is the API's contract as an OpenAPI 3.1 document, the
// same contract as doc.go. apitest.Contract checks the handler's answers against
// it, so a status, field or header the document does not have fails the
// tests.
//
//go:embed openapi.json
var openAPIDocument []byte

// openAPI serves the document, without a key, for other teams' tools.
func (s *server) openAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write(openAPIDocument)
	}
}
