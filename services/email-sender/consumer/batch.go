package consumer

import (
	"context"
	"log/slog"
	"time"

	"herald/services/contract"
	"herald/services/internal/batch"
)

// entry is one message in a batch call: a delete or a release.
type entry struct {
	messageID, receipt string
}

// newEntryBatcher gathers deletes (or releases) into batch calls of at most
// size messages (package batch); a message waits at most linger for the
// others. Short lingers keep the window in which a crash leaves a sent
// message undeleted (and so sent twice) small. Up to forty messages' calls
// run at once (four of ten, forty of one).
func newEntryBatcher(size int, linger time.Duration, flush func([]entry)) (*batch.Batcher[entry], error) {
	return batch.New(batch.Config[entry]{
		Size:     size,
		Linger:   linger,
		MaxCalls: 4 * contract.SQSMaxBatch / size,
		Queue:    1024,
		Flush:    flush,
	})
}

// settle hands a message to the deletes or releases. Only a batcher closed
// before the workers ended would refuse it; the message would then come
// back after its visibility timeout.
func settle(b *batch.Batcher[entry], e entry, log *slog.Logger) {
	if err := b.Add(context.Background(), e); err != nil {
		log.Error("could not settle the message; it returns after the visibility timeout", "err", err)
	}
}
