package store

// writebody.go's, for the external tests (which use dynamotest's canned
// client, and dynamotest imports this package).
var (
	WriteBody   = writeBody
	WriteBodies = writeBodies
)
