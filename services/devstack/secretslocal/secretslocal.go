// Package secretslocal is a minimal AWS Secrets Manager for the local
// pipeline: the calls Herald makes (the API's GetSecretValue, herald-ops'
// DescribeSecret and PutSecretValue) and CreateSecret, over Secrets
// Manager's JSON protocol (awsJson1_1, X-Amz-Target secretsmanager.<Action>),
// answered as the Secrets Manager API reference describes them:
//
//   - a secret is found by its name or its ARN (with or without the
//     six-character suffix SecretsManager adds);
//   - every value is a version with a VersionId (the request's
//     ClientRequestToken, or a new UUID) and staging labels; a new version
//     takes AWSCURRENT unless VersionStages say otherwise, and the version
//     that had AWSCURRENT gets AWSPREVIOUS;
//   - a ClientRequestToken used again with the same value is the same
//     version (idempotent), with another value ResourceExistsException;
//   - GetSecretValue reads AWSCURRENT unless VersionId or VersionStage says
//     otherwise; a secret without a value answers ResourceNotFoundException,
//     as a secret created without one does on AWS.
//
// Values stay in memory and are never logged. It listens on loopback only.
package secretslocal

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"herald/services/devstack/loopback"
	"herald/services/internal/herald"
)

// AccountID is the account in local secret ARNs.
const AccountID = "000000000000"

// Staging labels Secrets Manager maintains itself.
const (
	StageCurrent  = "AWSCURRENT"
	StagePrevious = "AWSPREVIOUS"
)

// Config is what to serve.
type Config struct {
	// Region goes into the ARNs; "" means us-east-1.
	Region string
	// Secrets are created at start: name -> SecretString.
	Secrets map[string]string
	// Logger gets one line per call (action, secret, outcome; never a
	// value); nil discards them.
	Logger *slog.Logger
}

// Server is a running emulator.
type Server struct {
	// URL is the endpoint for AWS_ENDPOINT_URL_SECRETSMANAGER.
	URL   string
	store *store
	http  *loopback.Server
}

// Start serves the emulator on addr, a loopback host:port ("127.0.0.1:0"
// picks a free port), with cfg.Secrets created.
func Start(addr string, cfg Config) (*Server, error) {
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	st := &store{region: cfg.Region, log: cfg.Logger, secrets: map[string]*secret{}, now: time.Now}
	for name, value := range cfg.Secrets {
		if _, apiErr := st.create(createInput{Name: name, SecretString: &value}); apiErr != nil {
			return nil, fmt.Errorf("secretslocal: create %s: %s", name, apiErr.message)
		}
	}
	srv, err := loopback.Serve(addr, st)
	if err != nil {
		return nil, fmt.Errorf("secretslocal: %w", err)
	}
	return &Server{URL: srv.URL, store: st, http: srv}, nil
}

// ARN is the ARN of a secret, "" if there is none of that name.
func (s *Server) ARN(name string) string {
	s.store.mu.Lock()
	defer s.store.mu.Unlock()
	if sec := s.store.secrets[name]; sec != nil {
		return sec.arn
	}
	return ""
}

// Close stops serving, waiting briefly for calls in flight.
func (s *Server) Close() error { return s.http.Close() }

// secret is one secret and its versions.
type secret struct {
	name, arn, description string
	created, changed       time.Time
	versions               map[string]*version
}

type version struct {
	id      string
	str     *string
	bin     []byte
	stages  []string
	created time.Time
}

// byStage is the version holding a staging label, or nil.
func (s *secret) byStage(stage string) *version {
	for _, v := range s.versions {
		if slices.Contains(v.stages, stage) {
			return v
		}
	}
	return nil
}

// store holds the secrets and serves the API.
type store struct {
	region  string
	log     *slog.Logger
	now     func() time.Time
	mu      sync.Mutex
	secrets map[string]*secret // by name
}

// apiError is a Secrets Manager error: its __type and Message.
type apiError struct {
	typ, message string
}

func notFound(format string, args ...any) *apiError {
	return &apiError{typ: "ResourceNotFoundException", message: fmt.Sprintf(format, args...)}
}

func invalidParameter(format string, args ...any) *apiError {
	return &apiError{typ: "InvalidParameterException", message: fmt.Sprintf(format, args...)}
}

func (st *store) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	action, ok := strings.CutPrefix(r.Header.Get("X-Amz-Target"), "secretsmanager.")
	if r.Method != http.MethodPost || !ok {
		writeError(w, &apiError{typ: "UnknownOperationException", message: "expected POST with X-Amz-Target: secretsmanager.<Action>"})
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		writeError(w, &apiError{typ: "SerializationException", message: "read request: " + err.Error()})
		return
	}
	decode := func(v any) *apiError {
		if err := json.Unmarshal(body, v); err != nil {
			return &apiError{typ: "SerializationException", message: "malformed request: " + err.Error()}
		}
		return nil
	}
	var (
		out    any
		apiErr *apiError
		target string
	)
	switch action {
	case "CreateSecret":
		var in createInput
		if apiErr = decode(&in); apiErr == nil {
			target = in.Name
			out, apiErr = st.create(in)
		}
	case "GetSecretValue":
		var in getInput
		if apiErr = decode(&in); apiErr == nil {
			target = in.SecretID
			out, apiErr = st.get(in)
		}
	case "PutSecretValue":
		var in putInput
		if apiErr = decode(&in); apiErr == nil {
			target = in.SecretID
			out, apiErr = st.put(in)
		}
	case "DescribeSecret":
		var in describeInput
		if apiErr = decode(&in); apiErr == nil {
			target = in.SecretID
			out, apiErr = st.describe(in)
		}
	default:
		apiErr = &apiError{typ: "UnknownOperationException", message: "secretslocal does not serve " + action}
	}
	if apiErr != nil {
		st.log.Info("call", "action", action, "secret", target, "error", apiErr.typ)
		writeError(w, apiErr)
		return
	}
	st.log.Info("call", "action", action, "secret", target)
	b, err := json.Marshal(out)
	if err != nil {
		writeError(w, &apiError{typ: "InternalServiceError", message: err.Error()})
		return
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("x-amzn-RequestId", newID())
	w.Write(b)
}

func writeError(w http.ResponseWriter, e *apiError) {
	status := http.StatusBadRequest
	if e.typ == "InternalServiceError" {
		status = http.StatusInternalServerError
	}
	b, _ := json.Marshal(map[string]string{"__type": e.typ, "Message": e.message})
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("x-amzn-RequestId", newID())
	w.WriteHeader(status)
	w.Write(b)
}

// newID is a new VersionId or request id: a UUID, as Secrets Manager's.
func newID() string { return herald.NewID() }

// epoch is a timestamp as the JSON protocol writes it: seconds since 1970.
func epoch(t time.Time) float64 { return float64(t.UnixMilli()) / 1000 }

// find looks a secret up by name, ARN or partial ARN. Callers hold st.mu.
func (st *store) find(id string) (*secret, *apiError) {
	if id == "" {
		return nil, invalidParameter("You must provide a SecretId.")
	}
	if s := st.secrets[id]; s != nil {
		return s, nil
	}
	for _, s := range st.secrets {
		if id == s.arn || id == s.arn[:len(s.arn)-7] {
			return s, nil
		}
	}
	return nil, notFound("Secrets Manager can't find the specified secret.")
}

type createInput struct {
	Name               string
	ClientRequestToken string
	Description        string
	SecretString       *string
	SecretBinary       []byte
}

func (st *store) create(in createInput) (any, *apiError) {
	if in.Name == "" || len(in.Name) > 512 {
		return nil, invalidParameter("Name must be 1 to 512 characters.")
	}
	if in.SecretString != nil && in.SecretBinary != nil {
		return nil, invalidParameter("You can't specify both a binary secret value and a string secret value in the same secret.")
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.secrets[in.Name] != nil {
		return nil, &apiError{typ: "ResourceExistsException", message: fmt.Sprintf("The operation failed because the secret %s already exists.", in.Name)}
	}
	suffix := make([]byte, 3)
	rand.Read(suffix)
	now := st.now()
	s := &secret{
		name: in.Name, description: in.Description, created: now, changed: now,
		arn:      fmt.Sprintf("arn:aws:secretsmanager:%s:%s:secret:%s-%s", st.region, AccountID, in.Name, hex.EncodeToString(suffix)),
		versions: map[string]*version{},
	}
	st.secrets[in.Name] = s
	out := map[string]any{"ARN": s.arn, "Name": s.name}
	if in.SecretString != nil || in.SecretBinary != nil {
		v := st.addVersion(s, orNewID(in.ClientRequestToken), in.SecretString, in.SecretBinary, []string{StageCurrent})
		out["VersionId"] = v.id
	}
	return out, nil
}

func orNewID(token string) string {
	if token == "" {
		return newID()
	}
	return token
}

// addVersion stores a value as a new version with stages, moving each
// stage from the version that had it; AWSCURRENT's old holder becomes
// AWSPREVIOUS. Callers hold st.mu.
func (st *store) addVersion(s *secret, id string, str *string, bin []byte, stages []string) *version {
	now := st.now()
	v := &version{id: id, str: str, bin: bin, created: now}
	for _, stage := range stages {
		old := s.byStage(stage)
		if old != nil {
			old.stages = slices.DeleteFunc(old.stages, func(x string) bool { return x == stage })
		}
		if stage == StageCurrent && old != nil {
			if prev := s.byStage(StagePrevious); prev != nil {
				prev.stages = slices.DeleteFunc(prev.stages, func(x string) bool { return x == StagePrevious })
			}
			old.stages = append(old.stages, StagePrevious)
		}
		v.stages = append(v.stages, stage)
	}
	s.versions[id] = v
	s.changed = now
	return v
}

type getInput struct {
	SecretID     string `json:"SecretId"`
	VersionID    string `json:"VersionId"`
	VersionStage string
}

func (st *store) get(in getInput) (any, *apiError) {
	st.mu.Lock()
	defer st.mu.Unlock()
	s, apiErr := st.find(in.SecretID)
	if apiErr != nil {
		return nil, apiErr
	}
	var v *version
	switch {
	case in.VersionID != "":
		v = s.versions[in.VersionID]
		if v == nil || (in.VersionStage != "" && !slices.Contains(v.stages, in.VersionStage)) {
			return nil, notFound("Secrets Manager can't find the specified secret value for VersionId: %s", in.VersionID)
		}
	default:
		stage := in.VersionStage
		if stage == "" {
			stage = StageCurrent
		}
		if v = s.byStage(stage); v == nil {
			return nil, notFound("Secrets Manager can't find the specified secret value for staging label: %s", stage)
		}
	}
	out := map[string]any{
		"ARN": s.arn, "Name": s.name, "VersionId": v.id,
		"VersionStages": append([]string{}, v.stages...), "CreatedDate": epoch(v.created),
	}
	if v.str != nil {
		out["SecretString"] = *v.str
	} else {
		out["SecretBinary"] = v.bin
	}
	return out, nil
}

type putInput struct {
	SecretID           string `json:"SecretId"`
	ClientRequestToken string
	SecretString       *string
	SecretBinary       []byte
	VersionStages      []string
}

func (st *store) put(in putInput) (any, *apiError) {
	if (in.SecretString == nil) == (in.SecretBinary == nil) {
		return nil, invalidParameter("You must provide either SecretString or SecretBinary, but not both.")
	}
	if in.VersionStages == nil {
		in.VersionStages = []string{StageCurrent}
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	s, apiErr := st.find(in.SecretID)
	if apiErr != nil {
		return nil, apiErr
	}
	id := orNewID(in.ClientRequestToken)
	v := s.versions[id]
	if v != nil {
		same := (v.str != nil && in.SecretString != nil && *v.str == *in.SecretString) ||
			(v.bin != nil && in.SecretBinary != nil && string(v.bin) == string(in.SecretBinary))
		if !same {
			return nil, &apiError{typ: "ResourceExistsException", message: "You can't modify an existing version, you can only create a new version."}
		}
	} else {
		v = st.addVersion(s, id, in.SecretString, in.SecretBinary, in.VersionStages)
	}
	return map[string]any{"ARN": s.arn, "Name": s.name, "VersionId": v.id, "VersionStages": append([]string{}, v.stages...)}, nil
}

type describeInput struct {
	SecretID string `json:"SecretId"`
}

func (st *store) describe(in describeInput) (any, *apiError) {
	st.mu.Lock()
	defer st.mu.Unlock()
	s, apiErr := st.find(in.SecretID)
	if apiErr != nil {
		return nil, apiErr
	}
	stages := map[string][]string{}
	for id, v := range s.versions {
		stages[id] = append([]string{}, v.stages...)
	}
	out := map[string]any{
		"ARN": s.arn, "Name": s.name, "CreatedDate": epoch(s.created), "LastChangedDate": epoch(s.changed),
		"VersionIdsToStages": stages,
	}
	if s.description != "" {
		out["Description"] = s.description
	}
	return out, nil
}
