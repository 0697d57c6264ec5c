package main

import (
	"time"

	"herald/services/contract"
)

// deleteLinger is how long a sent message's delete may wait for nine others
// to share a DeleteMessageBatch (and a release at shutdown for nine others
// to share a ChangeMessageVisibilityBatch). Short: a crash in the window
// sends the message again.
const deleteLinger = 50 * time.Millisecond

// config is the sender's environment (the contract's SenderConfig), read
// once.
type config = contract.SenderConfig

// readConfig reads the environment through the contract, reporting every
// problem at once, each naming its variable.
func readConfig(getenv func(string) string) (config, error) { return contract.ReadSender(getenv) }
