// Command notification-api is Herald's Notification API: it authenticates
// and validates notification requests and queues them on SQS as versioned
// envelopes (herald.Envelope) for the email sender. Its configuration is in
// services/README.md.
//
// # Endpoints
//
//	POST /api/notifications        one notification
//	POST /api/notifications/batch  {"notifications": [ ... ]}, 1 to 100
//	GET  /api, /healthz            liveness (no key, no queue call)
//	GET  /readyz                   the queue answers GetQueueAttributes (cached HERALD_READY_CACHE)
//
// /readyz answers 200 {"status": "ready", "apiKeysVersion": "<VersionId>"},
// apiKeysVersion being the version of the HERALD_API_KEYS_SECRET_ID secret
// whose keys this task uses (absent without a secret): after changing the
// secret, every task answers the new version once it has read it
// (herald-ops keys waits for that).
//
// Both POST endpoints need `Authorization: Bearer <API key>` and a JSON body
// (application/json or application/*+json, UTF-8). A notification is
//
//	{"to": [], "cc": [], "bcc": [], "from": "", "replyTo": "", "subject": "",
//	 "text": "", "html": "", "delaySeconds": 0, "metadata": {"k": "v"}}
//
// with 1 to 50 recipients in to, cc and bcc, addresses as net/mail parses
// them, from (default HERALD_DEFAULT_FROM) on HERALD_ALLOWED_FROM, a subject,
// text or html, delaySeconds 0 to 900, no CR or LF in any header value or
// metadata, no unknown field, and an encoded envelope of at most
// HERALD_MAX_MESSAGE_BYTES.
//
// # Status codes
//
//	202  queued: SQS confirmed the message. {"id": "<envelope id>", "status": "queued"}
//	207  batch: some notifications queued, some not (see results)
//	400  not valid: malformed JSON, unknown field, wrong type, or a rule above
//	401  no or unknown API key (WWW-Authenticate: Bearer realm="herald")
//	404  no such endpoint
//	405  wrong method (Allow names the right one)
//	413  body over the limit (2x HERALD_MAX_MESSAGE_BYTES for one, 10x for a
//	     batch), or the encoded envelope over HERALD_MAX_MESSAGE_BYTES
//	415  not JSON, or not UTF-8
//	429  over HERALD_RATE_LIMIT notifications a second for this key (a batch
//	     costs one per item, at most HERALD_RATE_BURST); Retry-After
//	500  SQS refused the message for a reason a retry will not fix (access,
//	     missing queue, KMS); nothing was queued
//	503  SQS cannot be reached (connection, timeout, 5xx, throttling) within
//	     the 5 s enqueue deadline, or the service is shutting down; Retry-After.
//	     Nothing was reported queued; in rare cases (a reply lost after SQS
//	     stored the message) a retry can queue the notification twice: delivery
//	     is at least once.
//
// Every error is an RFC 9457 problem document (application/problem+json):
// {"type": "urn:herald:problem:<kind>", "title", "status", "detail"}, and for
// a 400 an "errors" array of {"field", "detail"} naming each bad field
// ("to[0]", "subject", "metadata.<key>", ...; "" for the body as a whole).
//
// # Batch replies
//
// A batch is answered per notification, in request order:
//
//	{"status": 207, "accepted": 1, "rejected": 2, "results": [
//	  {"index": 0, "status": 202, "id": "0190..."},
//	  {"index": 1, "status": 400, "detail": "...", "errors": [{"field": "subject", "detail": "..."}]},
//	  {"index": 2, "status": 503, "detail": "the queue cannot be reached now; ..."}]}
//
// An item's status is 202, 400, 413, 500 or 503 with the meanings above. The
// reply's status is 202 when every item was queued and 207 when some were.
// When none was, it is 503 if any item can be retried later, else 500 if SQS
// refused any, else 400; that reply is also a problem document (type, title,
// detail) and keeps accepted, rejected and results. Retry-After is set
// whenever an item is 503. Request-level failures (401, 413, 415, 429, a
// malformed body, 0 or over 100 items) are plain problem documents.
//
// # Queueing
//
// Single sends arriving together are coalesced into SendMessageBatch calls of
// up to ten entries and at most HERALD_MAX_MESSAGE_BYTES of bodies; a batch
// leaves when full or HERALD_BATCH_LINGER after its first message, so a lone
// request waits at most the linger. Each caller is answered with its own
// entry's result; entries SQS failed on its side are sent once more.
// HERALD_BATCH_LINGER=0 sends each notification with its own SendMessage.
// Batch requests go out as SendMessageBatch calls of ten, concurrently.
package main
