package main

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	"herald/services/internal/herald"
	"herald/services/mailaddr"
)

const (
	serviceName = "notification-api"
	defaultAddr = ":8080"

	// enqueueTimeout bounds one enqueue (coalescing linger, SDK retries and
	// all), so a hung queue yields a prompt 503 and never a hung request.
	enqueueTimeout = 5 * time.Second
	// maxBatchItems is the most notifications one batch request may carry.
	maxBatchItems = 100
)

// config is everything the API reads from its environment, parsed once.
type config struct {
	herald.Common

	DefaultFrom  string
	AllowedFrom  []string // bare addresses and "@domain" entries, lower-cased domains
	KeyHashes    []keyEntry
	KeysSecretID string
	KeysRefresh  time.Duration

	MaxMessageBytes int
	RateLimit       float64 // notifications per second per key; 0 turns limiting off
	RateBurst       int
	BatchLinger     time.Duration
	ReadyCache      time.Duration
	MaxConnections  int // open connections per process

	// EnqueueTimeout is not read from the environment; tests shorten it.
	EnqueueTimeout time.Duration
}

// readConfig parses the environment, reporting every bad variable by name.
func readConfig(getenv func(string) string) (config, error) {
	e := herald.NewEnv(getenv)
	c := config{
		Common:          herald.ReadCommon(e, defaultAddr),
		DefaultFrom:     e.Required("HERALD_DEFAULT_FROM"),
		KeysSecretID:    e.String("HERALD_API_KEYS_SECRET_ID", ""),
		KeysRefresh:     e.Duration("HERALD_API_KEYS_REFRESH", 5*time.Minute, 10*time.Second, 24*time.Hour),
		MaxMessageBytes: e.Int("HERALD_MAX_MESSAGE_BYTES", 262144, 1024, 1048576),
		RateLimit:       e.Float("HERALD_RATE_LIMIT", 100, 0, 1e6),
		RateBurst:       e.Int("HERALD_RATE_BURST", 200, 1, 1000000),
		BatchLinger:     e.Duration("HERALD_BATCH_LINGER", 2*time.Millisecond, 0, 100*time.Millisecond),
		ReadyCache:      e.Duration("HERALD_READY_CACHE", 5*time.Second, 0, 5*time.Minute),
		MaxConnections:  e.Int("HERALD_MAX_CONNECTIONS", 1024, 1, 65536),
		EnqueueTimeout:  enqueueTimeout,
	}
	if c.DefaultFrom != "" {
		if err := mailaddr.Check(c.DefaultFrom); err != nil {
			e.Failf("HERALD_DEFAULT_FROM", "%v", err)
		}
	}
	// The default sender is always allowed; the list adds to it.
	c.AllowedFrom = []string{strings.ToLower(mailaddr.Bare(c.DefaultFrom))}
	for _, item := range e.List("HERALD_ALLOWED_FROM", nil) {
		entry, err := parseAllowed(item)
		if err != nil {
			e.Failf("HERALD_ALLOWED_FROM", "%q: %v", item, err)
			continue
		}
		c.AllowedFrom = append(c.AllowedFrom, entry)
	}
	// Either key source, or both: the environment's keys are fixed, the
	// secret's are refreshed.
	if raw := e.String("HERALD_API_KEY_HASHES", ""); raw != "" {
		keys, err := parseKeyList(raw)
		if err != nil {
			e.Failf("HERALD_API_KEY_HASHES", "%v", err)
		}
		c.KeyHashes = keys
	} else if c.KeysSecretID == "" {
		e.Failf("HERALD_API_KEY_HASHES", "no API keys: set it or HERALD_API_KEYS_SECRET_ID")
	}
	if err := e.Err(); err != nil {
		return config{}, fmt.Errorf("configuration: %w", err)
	}
	return c, nil
}

// parseAllowed turns one HERALD_ALLOWED_FROM item into "@domain" or a bare
// address, both compared case-insensitively.
func parseAllowed(item string) (string, error) {
	if strings.HasPrefix(item, "@") {
		domain := strings.ToLower(item[1:])
		if domain == "" || strings.ContainsAny(domain, "@ \t\r\n<>,;") {
			return "", fmt.Errorf("not a domain")
		}
		return "@" + domain, nil
	}
	if err := mailaddr.Check(item); err != nil {
		return "", err
	}
	return strings.ToLower(mailaddr.Bare(item)), nil
}

// fromAllowed reports whether a (possibly named) sender address is on the
// allow-list.
func (c *config) fromAllowed(from string) bool {
	bare := strings.ToLower(mailaddr.Bare(from))
	if bare == "" {
		return false
	}
	domain := bare[strings.LastIndexByte(bare, '@')+1:]
	for _, a := range c.AllowedFrom {
		if a == bare || (strings.HasPrefix(a, "@") && a[1:] == domain) {
			return true
		}
	}
	return false
}

// logValue is the configuration as logged at start: no keys, no full addresses.
func (c *config) logValue() slog.Value {
	allowed := make([]string, len(c.AllowedFrom))
	for i, a := range c.AllowedFrom {
		if strings.HasPrefix(a, "@") {
			allowed[i] = a
		} else {
			allowed[i] = mailaddr.Mask(a)
		}
	}
	keyIDs := make([]string, len(c.KeyHashes))
	for i, k := range c.KeyHashes {
		keyIDs[i] = k.ID
	}
	return slog.GroupValue(append(c.Common.LogAttrs(),
		slog.String("defaultFrom", mailaddr.Mask(c.DefaultFrom)),
		slog.Any("allowedFrom", allowed),
		slog.Any("apiKeyHashes", keyIDs),
		slog.String("apiKeysSecretId", c.KeysSecretID),
		slog.String("apiKeysRefresh", c.KeysRefresh.String()),
		slog.Int("maxMessageBytes", c.MaxMessageBytes),
		slog.Float64("rateLimit", c.RateLimit),
		slog.Int("rateBurst", c.RateBurst),
		slog.String("batchLinger", c.BatchLinger.String()),
		slog.String("readyCache", c.ReadyCache.String()),
		slog.Int("maxConnections", c.MaxConnections),
	)...)
}
