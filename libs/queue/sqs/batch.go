package sqs

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// maxBatch is SQS's limit of entries per batch request.
const maxBatch = 10

// batchTimeout bounds one batch request.
const batchTimeout = 30 * time.Second

// batcher gathers calls of one operation to the same queue into batch
// requests: a batch is sent when it holds maxBatch entries, when the next
// entry would take it over maxBytes, or BatchLinger after its first entry.
// Callers wait for their own entry's result.
type batcher[T any] struct {
	b        *Broker
	op       string
	maxBytes int // 0: no byte limit
	send     func(ctx context.Context, queueURL string, entries []T) []error

	mu   sync.Mutex
	open map[string]*openBatch[T] // by queue URL
}

type openBatch[T any] struct {
	url   string
	items []*batchItem[T]
	bytes int
	timer *time.Timer
}

type batchItem[T any] struct {
	v    T
	done chan error
}

func newBatcher[T any](b *Broker, op string, maxBytes int, send func(context.Context, string, []T) []error) *batcher[T] {
	return &batcher[T]{b: b, op: op, maxBytes: maxBytes, send: send, open: map[string]*openBatch[T]{}}
}

// do adds v (of size bytes) to the open batch of queueURL and waits for its
// result or ctx. An entry whose caller gave up may still be sent.
func (bt *batcher[T]) do(ctx context.Context, queueURL string, v T, size int) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	it := &batchItem[T]{v: v, done: make(chan error, 1)}
	linger := bt.b.cfg.BatchLinger
	bt.mu.Lock()
	ob := bt.open[queueURL]
	if ob != nil && bt.maxBytes > 0 && ob.bytes+size > bt.maxBytes {
		bt.detach(ob)
		go bt.flush(ob)
		ob = nil
	}
	if ob == nil {
		ob = &openBatch[T]{url: queueURL}
		if linger > 0 {
			bt.open[queueURL] = ob
			ob.timer = time.AfterFunc(linger, func() {
				bt.mu.Lock()
				mine := bt.open[queueURL] == ob
				if mine {
					delete(bt.open, queueURL)
				}
				bt.mu.Unlock()
				if mine {
					bt.flush(ob)
				}
			})
		}
	}
	ob.items = append(ob.items, it)
	ob.bytes += size
	if linger <= 0 || len(ob.items) == maxBatch {
		bt.detach(ob)
		go bt.flush(ob)
	}
	bt.mu.Unlock()
	select {
	case err := <-it.done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("sqs: %s: %w", bt.op, ctx.Err())
	}
}

// detach takes ob out of the open batches; bt.mu must be held.
func (bt *batcher[T]) detach(ob *openBatch[T]) {
	if bt.open[ob.url] == ob {
		delete(bt.open, ob.url)
	}
	if ob.timer != nil {
		ob.timer.Stop()
	}
}

func (bt *batcher[T]) flush(ob *openBatch[T]) {
	ctx, cancel := context.WithTimeout(bt.b.base, batchTimeout)
	defer cancel()
	entries := make([]T, len(ob.items))
	for i, it := range ob.items {
		entries[i] = it.v
	}
	errs := bt.send(ctx, ob.url, entries)
	for i, it := range ob.items {
		it.done <- errs[i]
	}
}

// results spreads a whole-request error over every entry, or maps the
// failed entries of a batch response (ids are entry indexes).
func results(n int, err error, failed []types.BatchResultErrorEntry) []error {
	errs := make([]error, n)
	if err != nil {
		for i := range errs {
			errs[i] = err
		}
		return errs
	}
	for _, f := range failed {
		i, perr := strconv.Atoi(aws.ToString(f.Id))
		if perr != nil || i < 0 || i >= n {
			continue
		}
		errs[i] = &EntryError{Code: aws.ToString(f.Code), Message: aws.ToString(f.Message), SenderFault: f.SenderFault}
	}
	return errs
}

// EntryError is the failure of one entry of a batch request.
type EntryError struct {
	// Code is SQS's error code, e.g. "ReceiptHandleIsInvalid".
	Code string
	// Message is SQS's explanation.
	Message string
	// SenderFault is set when the entry itself was wrong (not worth a
	// retry).
	SenderFault bool
}

func (e *EntryError) Error() string {
	return "sqs: batch entry failed: " + e.Code + ": " + e.Message
}

// sendEntry is one message to send.
type sendEntry struct {
	body    string
	attrs   map[string]types.MessageAttributeValue
	groupID string // FIFO only
	dedupe  string // FIFO only
}

func (b *Broker) sendBatch(ctx context.Context, url string, entries []sendEntry) []error {
	in := &sqs.SendMessageBatchInput{QueueUrl: aws.String(url), Entries: make([]types.SendMessageBatchRequestEntry, len(entries))}
	for i, e := range entries {
		in.Entries[i] = types.SendMessageBatchRequestEntry{
			Id:                aws.String(strconv.Itoa(i)),
			MessageBody:       aws.String(e.body),
			MessageAttributes: e.attrs,
		}
		if e.groupID != "" {
			in.Entries[i].MessageGroupId = aws.String(e.groupID)
			in.Entries[i].MessageDeduplicationId = aws.String(e.dedupe)
		}
	}
	out, err := b.client.SendMessageBatch(ctx, in)
	b.metrics.messages("SendMessageBatch", len(entries))
	var failed []types.BatchResultErrorEntry
	if out != nil {
		failed = out.Failed
	}
	return results(len(entries), err, failed)
}

func (b *Broker) deleteBatch(ctx context.Context, url string, handles []string) []error {
	in := &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(url), Entries: make([]types.DeleteMessageBatchRequestEntry, len(handles))}
	for i, h := range handles {
		in.Entries[i] = types.DeleteMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: aws.String(h)}
	}
	out, err := b.client.DeleteMessageBatch(ctx, in)
	b.metrics.messages("DeleteMessageBatch", len(handles))
	var failed []types.BatchResultErrorEntry
	if out != nil {
		failed = out.Failed
	}
	return results(len(handles), err, failed)
}

// visibility is one visibility change.
type visibility struct {
	handle  string
	timeout int32 // seconds
}

func (b *Broker) visibilityBatch(ctx context.Context, url string, vs []visibility) []error {
	in := &sqs.ChangeMessageVisibilityBatchInput{QueueUrl: aws.String(url), Entries: make([]types.ChangeMessageVisibilityBatchRequestEntry, len(vs))}
	for i, v := range vs {
		in.Entries[i] = types.ChangeMessageVisibilityBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: aws.String(v.handle), VisibilityTimeout: v.timeout}
	}
	out, err := b.client.ChangeMessageVisibilityBatch(ctx, in)
	b.metrics.messages("ChangeMessageVisibilityBatch", len(vs))
	var failed []types.BatchResultErrorEntry
	if out != nil {
		failed = out.Failed
	}
	return results(len(vs), err, failed)
}
