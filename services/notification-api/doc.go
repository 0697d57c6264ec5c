// Command notification-api is Herald's Notification API: it authenticates
// and validates notification requests and queues them on SQS as versioned
// envelopes (herald.Envelope) for the email sender. Its configuration is in
// services/README.md.
//
// # Endpoints
//
//	POST /api/notifications        one notification
//	POST /api/notifications/batch  {"notifications": [ ... ]}, 1 to 100
//	GET  /api/notifications/{id}   a notification's status, for the key that queued it
//	GET  /api/openapi.json         this contract as an OpenAPI 3.1 document (no key)
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
// (application/json or application/*+json) that is I-JSON (RFC 7493): UTF-8
// text (invalid bytes, overlong forms and \u escapes of lone surrogates are
// refused with 415, never replaced), names matched exactly (a name in another
// case, such as "TO" or "Subject", is an unknown field: 400) and each name at
// most once in an object (a duplicate is refused with 400). A notification is
//
//	{"to": [], "cc": [], "bcc": [], "from": "", "replyTo": "", "subject": "",
//	 "text": "", "html": "", "delaySeconds": 0, "metadata": {"k": "v"}}
//
// with 1 to 50 recipients in to, cc and bcc together, from (default
// HERALD_DEFAULT_FROM) on HERALD_ALLOWED_FROM, a subject of at most 998
// bytes, text or html, delaySeconds 0 to 900, at most 20 metadata entries
// (keys 1 to 64 bytes, values at most 256), no unknown field, and an encoded
// envelope of at most HERALD_MAX_MESSAGE_BYTES. null, and "" for from and
// replyTo, is the same as an absent field.
//
// # Addresses
//
// Every address (to, cc, bcc, from, replyTo) is one that SES accepts:
// `local@domain` or `Display Name <local@domain>`, where
//
//   - the local part is 1 to 64 ASCII characters of a dot-atom (letters,
//     digits, !#$%&'*+-/=?^_`{|}~ and dots between them): no quoted local
//     part, no space, no comment such as `alice@example.com (Alice)`;
//   - the domain is a host name of two or more labels of letters, digits and
//     hyphens (1 to 63 each, no hyphen first or last), at most 253 octets,
//     the last label not all digits: no IP address, no [IP literal]; a
//     non-ASCII domain only in Punycode (xn--...);
//   - local@domain is at most 254 octets;
//   - the display name, quoted or not, may use RFC 2047 encoded words, holds
//     no comment (parentheses outside quotes) and, decoded, no control
//     character.
//
// The display name of from and replyTo must not contain an address or an @
// (nor ＠ or ﹫), plain or encoded: `"security@bank.test" <noreply@example.com>`
// is refused with 400, not sent with the name dropped, so the caller learns
// the mail would not read as it meant. The allow-list checks the address:
// a listed address or an @domain entry, compared ignoring case.
//
// from is queued, and sent, with its domain in lower case
// (`Shop <Shop@Mail.Herald.TEST>` becomes `Shop <Shop@mail.herald.test>`;
// the display name and the local part stay as written): SES compares the
// sending policy's `*@domain` conditions case-sensitively, so a domain in
// another case would be refused there after the API accepted it.
//
// # Text
//
// The subject, display names, and metadata keys and values hold no control
// character: U+0000 to U+001F (tab included), U+007F to U+009F, and no line
// or paragraph separator (U+2028, U+2029); CR and LF would inject headers.
// text and html may hold any character.
//
// # Status codes
//
//	202  queued: SQS confirmed the message. {"id": "<envelope id>", "status": "queued"}
//	     (or, for an Idempotency-Key already used with this body, the first answer again)
//	207  batch: some notifications queued, some not (see results)
//	400  not valid: malformed JSON, a duplicate name, an unknown field (a
//	     name in another case included), a wrong type, or a rule above
//	401  no or unknown API key (WWW-Authenticate: Bearer realm="herald")
//	404  no such endpoint
//	405  wrong method (Allow names the right one)
//	413  body over the limit (2x HERALD_MAX_MESSAGE_BYTES for one, 10x for a
//	     batch), or the encoded envelope over HERALD_MAX_MESSAGE_BYTES
//	409  a request with this Idempotency-Key is still in progress; Retry-After
//	415  not JSON, or not UTF-8 (invalid bytes or a lone surrogate escape)
//	422  this Idempotency-Key was used with another body; nothing was queued
//	429  over HERALD_RATE_LIMIT notifications a second for this key (a batch
//	     costs one per item, at most HERALD_RATE_BURST); Retry-After
//	500  SQS refused the message for a reason a retry will not fix (access,
//	     missing queue, KMS), or the state store refused the API (access,
//	     missing table); nothing was queued
//	501  an Idempotency-Key or a status lookup on an API without a state
//	     store (HERALD_STORE_TABLE unset: local use only)
//	503  Retry-After. unavailable: SQS cannot be reached (connection, 5xx,
//	     throttling) within the 5 s enqueue deadline, or the service is
//	     shutting down; nothing was queued. When SQS gave no clear answer (a
//	     timeout after the request left, a SendMessageBatch answer that does
//	     not mention the entry), the detail says the notification may or may
//	     not be queued; it is not sent again. A retry with the same
//	     Idempotency-Key is then safe; one without may queue it twice.
//	     store-unavailable: the Idempotency-Key could not be recorded (the
//	     state store is down or throttled); nothing was queued.
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
// An item's status is 202, 400, 409, 413, 422, 500, 501 or 503 with the
// meanings above. The reply's status is 202 when every item was queued (or
// replayed) and 207 when some were. When none was, it is 503 if any item
// can be retried later, else 500 if SQS refused any, else 409 if a key is in
// flight, else 422 if every key was reused with another body, else 400;
// that reply is also a problem document (type, title, detail) and keeps
// accepted, rejected and results. Retry-After is set whenever an item is
// 503 or 409. Request-level failures (401, 413, 415, 429, a
// malformed body, 0 or over 100 items) are plain problem documents: the body
// is checked as JSON text as a whole, so a duplicate name or text that is
// not UTF-8 inside one item refuses the whole batch.
//
// # Connections
//
// An answer sent before the request body was read (401, 404, 405, 415, 429,
// or 413 for a declared length over the limit) closes the connection
// (Connection: close): the server reads at most one more second of the
// body, so a slow client without a key holds nothing for long. Each process
// keeps at most HERALD_MAX_CONNECTIONS connections open (default 1024): at
// the cap a new connection waits until one closes, and idle keep-alive
// connections are closed to make room. Requests refused without a valid key
// (401, and 404 or 405) are logged at most 10 at once and one a second after,
// the next line logged carrying "suppressed": <count left out>; the Rejected
// metric counts every one.
//
// # Headers
//
// Every answer carries X-Request-Id: the caller's, when it is 1 to 128
// printable ASCII characters, else a new id; it is in the request's log
// line. Retry-After (whole seconds) comes with 409, 429 and 503.
//
// # Idempotency-Key
//
// A POST may carry `Idempotency-Key` (the IETF httpapi idempotency-key
// draft): a structured-field string ("...") or a bare token, 1 to 255
// printable ASCII characters (a UUID is a good key). Keys are scoped to the
// API key and bound for HERALD_IDEMPOTENCY_TTL (24 h) to the SHA-256 of the
// request body, byte for byte.
//
//   - The first request with a key is processed as usual; a 202 is stored
//     with the key.
//   - The same key with the same body answers the stored 202 again (same
//     id, same body) and queues nothing.
//   - The same key with another body: 422 (urn:herald:problem:idempotency-key-reused).
//   - The same key while the first request is in progress: 409
//     (idempotency-key-in-flight), with Retry-After (at most the 30 s lease).
//   - A request that queued nothing for sure (400s are never recorded; a
//     500, a 503 "nothing was queued") frees the key: the retry starts afresh.
//   - With a key, the notification id is derived from the API key, the key
//     and the body (a UUIDv8), so a retry after an unclear answer (a lost
//     connection, a 503 saying the outcome is unknown) carries the same id:
//     the email sender sends one id once. The key's record is kept for the
//     retry, which takes it over at once.
//   - The state store down or throttled: 503 (store-unavailable), nothing
//     queued: a key the API could not record is never queued. Requests
//     without a key do not touch the store and keep working.
//
// In a batch, the header's key covers the whole batch (each item is
// recorded under the key and its index, bound to the whole body: a retry of
// the same batch answers each item as the first time, queued items with
// their first id); without the header, each item may carry its own
// "idempotencyKey", bound to that item's JSON text. An item carrying one in
// a batch with the header is a 400. A single notification carries its key
// in the header only ("idempotencyKey" in its body is a 400).
//
// # Status
//
// GET /api/notifications/{id} (with the API key) answers 200
//
//	{"id": "...", "status": "sent", "attempts": 1,
//	 "providerMessageId": "<SES MessageId>", "sentAt": "2026-03-01T12:00:01.234Z",
//	 "updatedAt": "...", "recipients": [
//	   {"address": "a@example.com", "outcome": "bounced", "at": "2026-03-01T12:00:03.456Z",
//	    "type": "Permanent", "subType": "General", "status": "5.1.1",
//	    "diagnostic": "smtp; 550 5.1.1 user unknown", "permanent": true}]}
//
// status is queued (accepted; no sender holds it now), sending, sent
// (providerMessageId, sentAt), failed (failureClass, failureReason,
// failedAt: a retry follows) or dead-lettered (the same, for good). recipients
// are SES's outcomes per recipient (delayed < delivered < bounced = rejected
// < complained, the highest kept), sorted by address, absent before SES's
// first event; permanent says the mail will not reach that address. Fields
// without a value are left out. An id queued with another API key answers
// 404, as an unknown id does (urn:herald:problem:notification-not-found).
// The status is kept HERALD_STATUS_TTL (30 days). 503 with Retry-After when
// the store cannot be read; 501 without a store.
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
