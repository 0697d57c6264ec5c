package main

import (
	"context"
	"encoding/json"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"herald/services/internal/herald"
	"herald/services/notification-api/apitest"
)

// Every answer of the handler tests (helpers_test.go's harness.do) is
// checked against openapi.json; these tests check the document itself: it
// is served, its numbers are the code's, its examples get the status they
// say, and a document that lacks a status or field fails the check.

// docValue walks the raw document by object keys.
func docValue(t *testing.T, doc map[string]any, path ...string) any {
	t.Helper()
	var v any = doc
	for i, k := range path {
		m, ok := v.(map[string]any)
		if !ok || m[k] == nil {
			t.Fatalf("openapi.json has no %s", strings.Join(path[:i+1], "."))
		}
		v = m[k]
	}
	return v
}

func rawDoc(t *testing.T) map[string]any {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(openAPIDocument, &doc); err != nil {
		t.Fatal(err)
	}
	return doc
}

func TestOpenAPIServed(t *testing.T) {
	apiContract(t) // loads and validates the document, examples included
	h := newHarness(t, testConfig(), nil, deps{})
	rec := h.do(http.MethodGet, "/api/openapi.json", map[string]string{"Authorization": "-"}, "")
	if rec.Code != 200 || rec.Header().Get("Content-Type") != "application/json" || rec.Body.String() != string(openAPIDocument) {
		t.Fatalf("status %d, Content-Type %q, %d bytes (the document has %d)", rec.Code, rec.Header().Get("Content-Type"), rec.Body.Len(), len(openAPIDocument))
	}
	if rec := h.do(http.MethodHead, "/api/openapi.json", nil, ""); rec.Code != 200 || rec.Body.Len() != 0 {
		t.Errorf("HEAD: status %d, %d bytes", rec.Code, rec.Body.Len())
	}
	if rec := h.do(http.MethodPost, "/api/openapi.json", nil, "{}"); rec.Code != 405 {
		t.Errorf("POST: status %d", rec.Code)
	}
}

// TestOpenAPILimitsAreTheCode's: one fact, one place: the document's limits
// and problem types are compared with the constants the code enforces.
func TestOpenAPILimitsAreTheCode(t *testing.T) {
	doc := rawDoc(t)
	schemas := []string{"components", "schemas"}
	num := func(path ...string) int {
		t.Helper()
		f, ok := docValue(t, doc, append(schemas, path...)...).(float64)
		if !ok {
			t.Fatalf("%s is not a number", strings.Join(path, "."))
		}
		return int(f)
	}
	for _, c := range []struct {
		path []string
		code int
	}{
		{[]string{"Recipients", "maxItems"}, herald.MaxRecipients},
		{[]string{"Notification", "properties", "subject", "maxLength"}, herald.MaxSubjectBytes},
		{[]string{"Notification", "properties", "delaySeconds", "maximum"}, int(herald.MaxDelay / time.Second)},
		{[]string{"Notification", "properties", "metadata", "maxProperties"}, herald.MaxMetadataEntries},
		{[]string{"Notification", "properties", "metadata", "propertyNames", "maxLength"}, herald.MaxMetadataKeyLen},
		{[]string{"Notification", "properties", "metadata", "additionalProperties", "maxLength"}, herald.MaxMetadataValueLen},
		{[]string{"BatchRequest", "properties", "notifications", "maxItems"}, maxBatchItems},
		{[]string{"BatchReply", "properties", "results", "maxItems"}, maxBatchItems},
	} {
		if got := num(c.path...); got != c.code {
			t.Errorf("%s is %d in openapi.json, %d in the code", strings.Join(c.path, "."), got, c.code)
		}
	}
	// Every problem type the code sends is in the document, and only those.
	var inDoc []string
	for _, s := range strings.Split(string(openAPIDocument), `"`+problemTypeBase)[1:] {
		kind, _, _ := strings.Cut(s, `"`)
		if !slices.Contains(inDoc, kind) {
			inDoc = append(inDoc, kind)
		}
	}
	slices.Sort(inDoc)
	if inCode := slices.Sorted(maps.Keys(problemTitles)); !slices.Equal(inDoc, inCode) {
		t.Errorf("problem types in openapi.json %v, in the code %v", inDoc, inCode)
	}
}

// TestOpenAPIPostsShareParameters: both POST operations list the same
// request parameters (today X-Request-Id), so a request header added to
// both endpoints (an Idempotency-Key) is one components.parameters entry
// and its $ref in each list, and this test fails while one lacks it.
func TestOpenAPIPostsShareParameters(t *testing.T) {
	doc := rawDoc(t)
	single := docValue(t, doc, "paths", "/api/notifications", "post", "parameters")
	batch := docValue(t, doc, "paths", "/api/notifications/batch", "post", "parameters")
	a, _ := json.Marshal(single)
	b, _ := json.Marshal(batch)
	if string(a) != string(b) {
		t.Errorf("the POST operations' parameters differ:\n single %s\n batch  %s", a, b)
	}
	for _, p := range single.([]any) {
		ref, _ := p.(map[string]any)["$ref"].(string)
		if !strings.HasPrefix(ref, "#/components/parameters/") {
			t.Errorf("parameter %v is not a $ref to components.parameters", p)
		}
	}
}

// TestOpenAPIExamples posts every request example of the document to the
// handler: it gets the status its x-herald-status says, and (as every
// answer here) an answer the document has.
func TestOpenAPIExamples(t *testing.T) {
	doc := rawDoc(t)
	n := 0
	for path, item := range docValue(t, doc, "paths").(map[string]any) {
		post, ok := item.(map[string]any)["post"].(map[string]any)
		if !ok {
			continue
		}
		examples := docValue(t, post, "requestBody", "content", "application/json", "examples").(map[string]any)
		for name, ex := range examples {
			n++
			t.Run(path+"#"+name, func(t *testing.T) {
				e := ex.(map[string]any)
				want, ok := e["x-herald-status"].(float64)
				if !ok {
					t.Fatal("no x-herald-status")
				}
				body, err := json.Marshal(e["value"])
				if err != nil {
					t.Fatal(err)
				}
				h := newHarness(t, testConfig(), nil, deps{})
				rec := h.do(http.MethodPost, path, nil, string(body))
				if rec.Code != int(want) {
					t.Errorf("status %d, the document says %v: %s", rec.Code, want, rec.Body)
				}
			})
		}
	}
	if n < 4 {
		t.Errorf("%d request examples; want the single and the batch endpoint's", n)
	}
}

// TestOpenAPIUndocumentedFails shows the check has teeth: the same real
// answers pass against openapi.json and fail against a copy that lacks
// their status, one of their fields, or the answer to unknown paths.
func TestOpenAPIUndocumentedFails(t *testing.T) {
	h := newHarness(t, testConfig(), nil, deps{})
	type answer struct {
		req  *http.Request
		body []byte
		rec  *httptest.ResponseRecorder
	}
	serve := func(method, path, auth, body string) answer {
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		rec := httptest.NewRecorder()
		h.h.ServeHTTP(rec, req)
		return answer{req, []byte(body), rec}
	}
	queued := serve(http.MethodPost, "/api/notifications", "Bearer "+testKey, valid(nil))
	unauthorized := serve(http.MethodPost, "/api/notifications", "", valid(nil))
	notFound := serve(http.MethodGet, "/api/notification", "", "")
	if queued.rec.Code != 202 || unauthorized.rec.Code != 401 || notFound.rec.Code != 404 {
		t.Fatalf("statuses %d, %d, %d", queued.rec.Code, unauthorized.rec.Code, notFound.rec.Code)
	}
	cases := []struct {
		name   string
		mutate func(doc map[string]any)
		answer answer
		want   string // in the error
	}{
		{"a status the operation does not list", func(doc map[string]any) {
			delete(docValue(t, doc, "paths", "/api/notifications", "post", "responses").(map[string]any), "401")
		}, unauthorized, "status is not supported"},
		{"a field the schema does not have", func(doc map[string]any) {
			q := docValue(t, doc, "components", "schemas", "Queued").(map[string]any)
			delete(q["properties"].(map[string]any), "status")
			q["required"] = []any{"id"}
			// (the 202's example, which has status, would fail the load)
			delete(docValue(t, doc, "paths", "/api/notifications", "post", "responses", "202", "content", "application/json").(map[string]any), "examples")
		}, queued, "status"},
		{"a header the answer lacks", func(doc map[string]any) {
			hs := docValue(t, doc, "paths", "/api/notifications", "post", "responses", "202", "headers").(map[string]any)
			hs["X-Herald-Missing"] = map[string]any{"required": true, "schema": map[string]any{"type": "string"}}
		}, queued, "X-Herald-Missing"},
		{"no answer for unknown paths", func(doc map[string]any) {
			delete(docValue(t, doc, "components", "responses").(map[string]any), "NotFound")
		}, notFound, "no component response"},
	}
	ctx := context.Background()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := c.answer
			if err := apiContract(t).CheckAnswer(ctx, a.req, a.rec.Code, a.rec.Header(), a.rec.Body.Bytes()); err != nil {
				t.Fatalf("the answer fails openapi.json itself: %v", err)
			}
			doc := rawDoc(t)
			c.mutate(doc)
			data, err := json.Marshal(doc)
			if err != nil {
				t.Fatal(err)
			}
			mutated, err := apitest.Load(ctx, data)
			if err != nil {
				t.Fatalf("mutated document: %v", err)
			}
			err = mutated.CheckAnswer(ctx, a.req, a.rec.Code, a.rec.Header(), a.rec.Body.Bytes())
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("check against the mutated document: %v, want an error naming %q", err, c.want)
			}
		})
	}
	t.Run("a request the schema refuses", func(t *testing.T) {
		body := valid(func(m map[string]any) { m["priority"] = "high" })
		req := httptest.NewRequest(http.MethodPost, "/api/notifications", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+testKey)
		if err := apiContract(t).CheckRequest(ctx, req, []byte(body)); err == nil || !strings.Contains(err.Error(), "priority") {
			t.Errorf("CheckRequest of an unknown field: %v", err)
		}
	})
}
