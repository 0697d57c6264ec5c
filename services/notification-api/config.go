package main

import (
	"time"

	"herald/services/contract"
)

const (
	// enqueueTimeout bounds one enqueue (coalescing linger, SDK retries and
	// all), so a hung queue yields a prompt 503 and never a hung request.
	enqueueTimeout = 5 * time.Second
	// maxBatchItems is the most notifications one batch request may carry.
	maxBatchItems = 100
)

// config is everything the API reads from its environment (the contract's
// APIConfig), parsed once, and what it fixes itself.
type config struct {
	contract.APIConfig

	// EnqueueTimeout is not read from the environment; tests shorten it.
	EnqueueTimeout time.Duration
}

// readConfig reads the environment through the contract, reporting every
// bad variable by name.
func readConfig(getenv func(string) string) (config, error) {
	c, err := contract.ReadAPI(getenv)
	if err != nil {
		return config{}, err
	}
	return config{APIConfig: c, EnqueueTimeout: enqueueTimeout}, nil
}
