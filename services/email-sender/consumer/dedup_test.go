package consumer

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	sestypes "github.com/aws/aws-sdk-go-v2/service/sesv2/types"

	"herald/services/contract"
	"herald/services/devstack/dynamolocal"
	"herald/services/internal/herald"
	"herald/services/internal/store"
)

// keyedBody is a queue message body as the API writes it: a notification
// id and the API key id it was queued for.
func keyedBody(t *testing.T, id, keyID, subject string) string {
	t.Helper()
	e := herald.Envelope{ID: id, KeyID: keyID, CreatedAt: time.Now(), From: "sender@example.com",
		To: []string{"alice@example.com"}, Subject: subject, Text: "hello"}
	b, err := e.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// fakeStore answers claims and marks with its functions; a nil function
// answers as an empty store would (claimed, recorded).
type fakeStore struct {
	claim    func(id string) (store.Claim, error)
	markSent func(id string) (store.MarkSentResult, error)
	markFail func(id, state string) error

	mu     sync.Mutex
	claims []string
	sent   []string
	failed []string // "id state class"
}

func (f *fakeStore) Claim(ctx context.Context, id, scope string, lease time.Duration) (store.Claim, error) {
	f.mu.Lock()
	f.claims = append(f.claims, id)
	f.mu.Unlock()
	if f.claim != nil {
		return f.claim(id)
	}
	return store.Claim{Outcome: store.Claimed, Lease: store.NotificationLease{ID: id, Scope: scope, Token: "t"}, Attempt: 1}, nil
}

func (f *fakeStore) MarkSent(ctx context.Context, l store.NotificationLease, providerID string, at time.Time) (store.MarkSentResult, error) {
	if f.markSent != nil {
		if r, err := f.markSent(l.ID); err != nil {
			return r, err
		}
	}
	f.mu.Lock()
	f.sent = append(f.sent, l.ID)
	f.mu.Unlock()
	return store.MarkSentResult{}, nil
}

func (f *fakeStore) mark(l store.NotificationLease, state, class string) error {
	if f.markFail != nil {
		if err := f.markFail(l.ID, state); err != nil {
			return err
		}
	}
	f.mu.Lock()
	f.failed = append(f.failed, l.ID+" "+state+" "+class)
	f.mu.Unlock()
	return nil
}

func (f *fakeStore) MarkFailed(ctx context.Context, l store.NotificationLease, class, reason string, at time.Time) error {
	return f.mark(l, "failed", class)
}

func (f *fakeStore) MarkDeadLettered(ctx context.Context, l store.NotificationLease, class, reason string, at time.Time) error {
	return f.mark(l, "dead-lettered", class)
}

func (f *fakeStore) read(fn func(f *fakeStore)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

const (
	idA = "019a0000-0000-7000-8000-000000000001"
	idB = "019a0000-0000-7000-8000-000000000002"
)

func TestClaimOutcomes(t *testing.T) {
	ownerErr := fmt.Errorf("claim: %w", store.ErrOwnerMismatch)
	cases := map[string]struct {
		body  string
		claim func(string) (store.Claim, error)
		// want: what became of the message
		sent, deleted, deadLettered bool
		visibility                  int32 // a visibility change to this many seconds (0: none)
		class                       string
		metric                      string
	}{
		"claimed: sent, then recorded": {
			body: keyedBody(t, idA, "dev", "s"), sent: true, deleted: true,
		},
		"already sent: deleted unsent": {
			body: keyedBody(t, idA, "dev", "s"), deleted: true, metric: contract.AlreadySent.Name,
			claim: func(string) (store.Claim, error) {
				return store.Claim{Outcome: store.AlreadySent, Sent: store.Sent{ProviderMessageID: "ses-1"}}, nil
			},
		},
		"busy: left until the other sender's lease ends": {
			body: keyedBody(t, idA, "dev", "s"), visibility: 7,
			claim: func(string) (store.Claim, error) {
				return store.Claim{Outcome: store.Busy, LeaseUntil: time.Now().Add(6500 * time.Millisecond)}, nil
			},
		},
		"another key's id: dead-lettered unsent": {
			body: keyedBody(t, idA, "dev", "s"), deadLettered: true, deleted: true, class: "permanent",
			claim: func(string) (store.Claim, error) { return store.Claim{}, ownerErr },
		},
		"an id the API does not write: dead-lettered unsent": {
			body: keyedBody(t, "e1", "dev", "s"), deadLettered: true, deleted: true, class: "permanent",
		},
		"no keyId: claimed in the unkeyed scope": {
			body: envelopeBody(t, idA), sent: true, deleted: true,
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			fq := newFakeSQS()
			fs := &fakeStore{claim: tc.claim}
			metrics := herald.NewMetrics(&strings.Builder{}, "test", contract.Sender)
			var sends atomic.Int32
			c := newConsumer(t, testConfig(), Deps{SQS: fq, Store: fs, Metrics: metrics,
				Sender: senderFunc(func(ctx context.Context, e *herald.Envelope) (string, error) { sends.Add(1); return "ses-" + e.ID, nil })})
			fq.put(sqsMessage("m1", tc.body, 1, 1))
			stop := start(t, c)
			waitFor(t, "the message settled", func() bool {
				return len(fq.deletedReceipts()) > 0 || fq.visibilityChanges() > 0
			})
			if err := stop(); err != nil {
				t.Fatal(err)
			}
			if got := sends.Load() == 1; got != tc.sent {
				t.Errorf("sends %d, want sent %v", sends.Load(), tc.sent)
			}
			if got := len(fq.deletedReceipts()) == 1; got != tc.deleted {
				t.Errorf("deleted %v, want %v", fq.deletedReceipts(), tc.deleted)
			}
			fq.read(func(f *fakeSQS) {
				if (len(f.dlq) == 1) != tc.deadLettered {
					t.Errorf("dead letters %d, want %v", len(f.dlq), tc.deadLettered)
				}
				if tc.class != "" && len(f.dlq) == 1 {
					if got := attr(f.dlq[0].MessageAttributes, herald.AttrFailureClass); got != tc.class {
						t.Errorf("class %q, want %q (%s)", got, tc.class, attr(f.dlq[0].MessageAttributes, herald.AttrFailureReason))
					}
				}
				if tc.visibility != 0 && (len(f.visibility) != 1 || f.visibility[0].seconds != tc.visibility) {
					t.Errorf("visibility changes %v, want one to %ds", f.visibility, tc.visibility)
				}
			})
			fs.read(func(f *fakeStore) {
				if tc.sent && (len(f.sent) != 1 || f.sent[0] != idA) {
					t.Errorf("recorded sent %v, want %s", f.sent, idA)
				}
				if !tc.sent && len(f.sent) != 0 {
					t.Errorf("recorded sent %v without a send", f.sent)
				}
			})
			if tc.metric != "" && metrics.Totals()[tc.metric] != 1 {
				t.Errorf("%s = %g, want 1", tc.metric, metrics.Totals()[tc.metric])
			}
		})
	}
}

func TestFailuresAreRecordedBeforeTheQueueActs(t *testing.T) {
	fq := newFakeSQS()
	fs := &fakeStore{}
	c := newConsumer(t, testConfig(), Deps{SQS: fq, Store: fs,
		Sender: senderFunc(func(ctx context.Context, e *herald.Envelope) (string, error) {
			if e.ID == idA {
				return "", &sestypes.MessageRejected{Message: aws.String("Email address is not verified.")}
			}
			return "", fmt.Errorf("send: %w", context.DeadlineExceeded)
		})})
	c.rnd = func(int64) int64 { return 0 }
	fq.put(sqsMessage("m1", keyedBody(t, idA, "dev", "a"), 1, 1), sqsMessage("m2", keyedBody(t, idB, "dev", "b"), 1, 1))
	stop := start(t, c)
	waitFor(t, "both settled", func() bool { return len(fq.deletedReceipts()) == 2 })
	stop()
	fs.read(func(f *fakeStore) {
		got := strings.Join(f.failed, ",")
		if !strings.Contains(got, idA+" dead-lettered permanent") || !strings.Contains(got, idB+" failed transient") || len(f.failed) != 2 {
			t.Errorf("recorded %q, want %s dead-lettered permanent and %s failed transient", got, idA, idB)
		}
	})
	if fq.deadLetters() != 1 || fq.copyCount() != 1 {
		t.Errorf("dead letters %d, copies %d, want 1 and 1", fq.deadLetters(), fq.copyCount())
	}
}

func TestFailureMarkFindingItSentDeletesTheMessage(t *testing.T) {
	fq := newFakeSQS()
	fs := &fakeStore{markFail: func(string, string) error { return store.ErrAlreadySent }}
	metrics := herald.NewMetrics(&strings.Builder{}, "test", contract.Sender)
	c := newConsumer(t, testConfig(), Deps{SQS: fq, Store: fs, Metrics: metrics,
		Sender: senderFunc(func(context.Context, *herald.Envelope) (string, error) {
			return "", &sestypes.MessageRejected{Message: aws.String("Email address is not verified.")}
		})})
	fq.put(sqsMessage("m1", keyedBody(t, idA, "dev", "a"), 1, 1))
	stop := start(t, c)
	waitFor(t, "the delete", func() bool { return len(fq.deletedReceipts()) == 1 })
	stop()
	if fq.deadLetters() != 0 || metrics.Totals()[contract.AlreadySent.Name] != 1 {
		t.Errorf("dead letters %d, AlreadySent %g: another sender sent it, so this message goes unsent",
			fq.deadLetters(), metrics.Totals()[contract.AlreadySent.Name])
	}
}

func TestSentButNotRecordedIsDeletedAndCounted(t *testing.T) {
	fq := newFakeSQS()
	var tries atomic.Int32
	fs := &fakeStore{markSent: func(string) (store.MarkSentResult, error) {
		tries.Add(1)
		return store.MarkSentResult{}, &types.InternalServerError{Message: aws.String("down")}
	}}
	metrics := herald.NewMetrics(&strings.Builder{}, "test", contract.Sender)
	cfg := testConfig()
	cfg.Visibility = 2 * time.Second // MarkSent is tried for 1 s
	c := newConsumer(t, cfg, Deps{SQS: fq, Store: fs, Metrics: metrics, Sender: okSender()})
	fq.put(sqsMessage("m1", keyedBody(t, idA, "dev", "a"), 1, 1))
	stop := start(t, c)
	waitFor(t, "the delete", func() bool { return len(fq.deletedReceipts()) == 1 })
	stop()
	if tries.Load() < 2 || metrics.Totals()[contract.StatusNotRecorded.Name] != 1 {
		t.Errorf("MarkSent tried %d times, StatusNotRecorded %g: want retries, then one miss counted",
			tries.Load(), metrics.Totals()[contract.StatusNotRecorded.Name])
	}
}

func TestStoreFailurePausesSendingWithoutLosingTheMessages(t *testing.T) {
	fq := newFakeSQS()
	var down atomic.Bool
	down.Store(true)
	var failedClaims atomic.Int32
	fs := &fakeStore{}
	fs.claim = func(id string) (store.Claim, error) {
		if down.Load() {
			failedClaims.Add(1)
			return store.Claim{}, fmt.Errorf("store: claim: %w", context.DeadlineExceeded)
		}
		return store.Claim{Outcome: store.Claimed, Lease: store.NotificationLease{ID: id, Scope: "dev", Token: "t"}, Attempt: 1}, nil
	}
	cfg := testConfig()
	cfg.Workers = 8
	var sends atomic.Int32
	c := newConsumer(t, cfg, Deps{SQS: fq, Store: fs,
		Sender: senderFunc(func(ctx context.Context, e *herald.Envelope) (string, error) { sends.Add(1); return "ses-" + e.ID, nil })})
	c.breaker.probeMin, c.breaker.probeMax = 20*time.Millisecond, 50*time.Millisecond
	for i := range 5 {
		fq.put(sqsMessage(fmt.Sprint("m", i), keyedBody(t, fmt.Sprintf("019a0000-0000-7000-8000-%012d", i), "dev", "s"), 1, 1))
	}
	stop := start(t, c)
	// Given the store down: sending pauses, the health check sees why.
	waitFor(t, "the pause", c.breaker.isOpen)
	waitFor(t, "probing claims", func() bool { return failedClaims.Load() >= 8 })
	if paused, why := c.Paused(); !paused || !strings.Contains(why, "state store") {
		t.Errorf("Paused() = %v, %q", paused, why)
	}
	// Then: nothing sent, dead-lettered, re-queued or released.
	if sends.Load() != 0 || fq.deadLetters() != 0 || fq.copyCount() != 0 || len(fq.deletedReceipts()) != 0 {
		t.Fatalf("while the store is down: sends %d, dead letters %d, copies %d, deletes %d",
			sends.Load(), fq.deadLetters(), fq.copyCount(), len(fq.deletedReceipts()))
	}
	// When it is back, each is sent once.
	down.Store(false)
	waitFor(t, "all sent", func() bool { return len(fq.deletedReceipts()) == 5 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if sends.Load() != 5 || fq.deadLetters() != 0 || fq.copyCount() != 0 || c.breaker.isOpen() {
		t.Errorf("sends %d, dead letters %d, copies %d, open %v", sends.Load(), fq.deadLetters(), fq.copyCount(), c.breaker.isOpen())
	}
}

// TestDedupOnDynalite: the consumer with the state store on the local
// DynamoDB emulator: a message delivered twice is sent once, each outcome
// is recorded, and an outage of the table pauses sending until it is back.
func TestDedupOnDynalite(t *testing.T) {
	root, err := filepath.Abs("../../..")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	emu, err := dynamolocal.Start(ctx, dynamolocal.Config{Root: root})
	if errors.Is(err, dynamolocal.ErrNotInstalled) {
		t.Skipf("skipped: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer emu.Close()
	if err := emu.CreateTable(ctx, dynamolocal.Table{Name: "herald", PartitionKey: store.KeyAttribute, TTLAttribute: store.TTLAttribute}); err != nil {
		t.Fatal(err)
	}
	ids, err := store.NewIDs([]byte(strings.Repeat("k", store.MinSecretBytes)))
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.New(emu.Client(), store.Config{Table: "herald", IdempotencyTTL: time.Hour, StatusTTL: 24 * time.Hour, IDs: ids, Clock: time.Now})
	if err != nil {
		t.Fatal(err)
	}
	id := func() string {
		v, err := ids.New("dev")
		if err != nil {
			t.Fatal(err)
		}
		return v
	}

	fq := newFakeSQS()
	metrics := herald.NewMetrics(&strings.Builder{}, "test", contract.Sender)
	var mu sync.Mutex
	sent := map[string]int{}
	cfg := testConfig()
	cfg.Workers = 8
	c := newConsumer(t, cfg, Deps{SQS: fq, Store: st, Metrics: metrics,
		Sender: senderFunc(func(ctx context.Context, e *herald.Envelope) (string, error) {
			if e.Subject == "rejected" {
				return "", &sestypes.MessageRejected{Message: aws.String("Email address is not verified.")}
			}
			mu.Lock()
			defer mu.Unlock()
			sent[e.ID]++
			return fmt.Sprintf("ses-%s-%d", e.ID, sent[e.ID]), nil
		})})
	c.breaker.probeMin, c.breaker.probeMax = 50*time.Millisecond, 200*time.Millisecond
	stop := start(t, c)

	// A notification delivered twice (SQS's at-least-once, or a delete
	// lost after the send), one after the other: sent once.
	twice, rejected := id(), id()
	fq.put(sqsMessage("m1", keyedBody(t, twice, "dev", "s"), 1, 1))
	waitFor(t, "the first delivery deleted", func() bool { return len(fq.deletedReceipts()) == 1 })
	fq.put(sqsMessage("m1", keyedBody(t, twice, "dev", "s"), 2, 2), sqsMessage("m2", keyedBody(t, rejected, "dev", "rejected"), 1, 1))
	waitFor(t, "the redelivery and the rejection settled", func() bool { return len(fq.deletedReceipts()) == 3 })
	if metrics.Totals()[contract.AlreadySent.Name] != 1 {
		t.Errorf("AlreadySent %g, want 1", metrics.Totals()[contract.AlreadySent.Name])
	}
	for id, want := range map[string]store.State{twice: store.StateSent, rejected: store.StateDeadLettered} {
		got, err := st.Get(ctx, id, "dev")
		if err != nil || got.State != want {
			t.Errorf("status of %s: %+v, %v; want %s", id, got, err, want)
		}
	}

	// The table fails every call for 3 s while ten notifications arrive:
	// none is sent or dead-lettered meanwhile; all are sent once after.
	if err := emu.SetFault(dynamolocal.FaultUnavailable, 3*time.Second); err != nil {
		t.Fatal(err)
	}
	var during []string
	for i := range 10 {
		during = append(during, id())
		fq.put(sqsMessage(fmt.Sprint("o", i), keyedBody(t, during[i], "dev", "s"), 1, 1))
	}
	waitFor(t, "the pause", c.breaker.isOpen)
	mu.Lock()
	sentDuring := len(sent)
	mu.Unlock()
	if sentDuring != 1 || fq.deadLetters() != 1 {
		t.Errorf("during the outage: %d notifications sent (want the 1 before), %d dead letters (want the 1 rejection)", sentDuring, fq.deadLetters())
	}
	deadline := time.Now().Add(30 * time.Second)
	for len(fq.deletedReceipts()) < 13 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, id := range append(during, twice) {
		if sent[id] != 1 {
			t.Errorf("%s sent %d times, want once", id, sent[id])
		}
	}
	if fq.deadLetters() != 1 || fq.copyCount() != 0 {
		t.Errorf("dead letters %d (want the rejection only), copies %d", fq.deadLetters(), fq.copyCount())
	}
	if metrics.Totals()[contract.StoreErrors.Name] == 0 {
		t.Error("no StoreErrors counted during the outage")
	}
}
