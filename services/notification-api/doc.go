// Command notification-api is Herald's Notification API: it authenticates
// and validates notification requests and queues them on SQS as versioned
// envelopes (herald.Envelope) for the email sender. Its configuration is in
// services/README.md.
//
// # Endpoints
//
//	POST /api/notifications        one notification
//	POST /api/notifications/batch  {"notifications": [ ... ]}, 1 to 100
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
//	207  batch: some notifications queued, some not (see results)
//	400  not valid: malformed JSON, a duplicate name, an unknown field (a
//	     name in another case included), a wrong type, or a rule above
//	401  no or unknown API key (WWW-Authenticate: Bearer realm="herald")
//	404  no such endpoint
//	405  wrong method (Allow names the right one)
//	413  body over the limit (2x HERALD_MAX_MESSAGE_BYTES for one, 10x for a
//	     batch), or the encoded envelope over HERALD_MAX_MESSAGE_BYTES
//	415  not JSON, or not UTF-8 (invalid bytes or a lone surrogate escape)
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
// line. Retry-After (whole seconds) comes with 429 and 503.
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
