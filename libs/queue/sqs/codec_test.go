package sqs

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/queue"
)

func TestBody(t *testing.T) {
	cases := []struct {
		name string
		data []byte
		body string
	}{
		{"empty", []byte{}, emptyBody},
		{"text", []byte("hello"), "aGVsbG8="},
		{"binary", []byte{0, 0xff, 0x10, '\n'}, "AP8QCg=="},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			body := encodeBody(tc.data)
			require.Equal(t, tc.body, body)
			got, err := decodeBody(body)
			require.NoError(t, err)
			require.Equal(t, tc.data, got)
		})
	}
	_, err := decodeBody("not base64!")
	require.Error(t, err)
}

func TestAttributes(t *testing.T) {
	many := map[string]string{}
	for i := range 9 {
		many["X-H"+strconv.Itoa(i)] = "v"
	}
	cases := []struct {
		name   string
		dedupe string
		header map[string]string
		packed bool
	}{
		{"no headers", "", nil, false},
		{"one attribute each", "", map[string]string{queue.HeaderType: "outpost.jobs.v1.JobStatus", "X-Trace-Id": "abc"}, false},
		{"dedupe id on standard queues", "job-1", map[string]string{queue.HeaderType: "t"}, false},
		{"nine headers fit beside the subject", "", many, false},
		{"nine headers and a dedupe id do not", "d", many, true},
		{"empty value", "", map[string]string{"X-Empty": ""}, true},
		{"name SQS refuses", "", map[string]string{"X Space": "v"}, true},
		{"reserved by SQS", "", map[string]string{"AWS.Thing": "v"}, true},
		{"reserved by outpost", "", map[string]string{"outpost.subject": "spoof"}, true},
		{"double period", "", map[string]string{"a..b": "v"}, true},
		{"control character", "", map[string]string{"X-Bad": "a\x01b"}, true},
		{"unicode is fine", "", map[string]string{"X-Name": "café ✓"}, false},
	}
	const subject = "outpost.acme.jobs.remote"
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			attrs := encodeAttributes(subject, tc.dedupe, tc.header)
			require.LessOrEqual(t, len(attrs), maxAttributes)
			_, packed := attrs[attrHeaders]
			require.Equal(t, tc.packed, packed)
			for k, v := range attrs {
				require.True(t, validAttrName(k), "attribute name %q", k)
				if aws.ToString(v.DataType) == typeString {
					require.True(t, validAttrValue(aws.ToString(v.StringValue)), "attribute %q value", k)
				}
			}
			gotSubject, gotDedupe, header, err := decodeAttributes(attrs)
			require.NoError(t, err)
			require.Equal(t, subject, gotSubject)
			require.Equal(t, tc.dedupe, gotDedupe)
			want := tc.header
			if want == nil {
				want = map[string]string{}
			}
			require.Equal(t, want, header)
		})
	}
}

func TestDecodeForeign(t *testing.T) {
	_, _, header, err := decodeAttributes(map[string]types.MessageAttributeValue{"X-Other": stringAttr("1")})
	require.ErrorIs(t, err, errNotOutpost)
	require.Equal(t, map[string]string{"X-Other": "1"}, header)
}

func TestMessageSize(t *testing.T) {
	attrs := map[string]types.MessageAttributeValue{
		"ab": stringAttr("xyz"),
		"c":  {DataType: aws.String(typeBinary), BinaryValue: []byte{1, 2}},
	}
	// body 4 + "ab" 2 + "String" 6 + "xyz" 3 + "c" 1 + "Binary" 6 + 2 bytes
	require.Equal(t, 24, messageSize("abcd", attrs))
}

func TestFifoToken(t *testing.T) {
	require.Equal(t, "job-1", fifoToken("job-1"))
	require.Equal(t, "outpost.acme.job-events.j.status", fifoToken("outpost.acme.job-events.j.status"))
	for _, s := range []string{strings.Repeat("x", 129), "has space", "", "é"} {
		got := fifoToken(s)
		require.Len(t, got, 66, "hashed %q", s)
		require.Equal(t, got, fifoToken(s), "stable")
	}
}

func TestPayloadLimit(t *testing.T) {
	cases := []struct {
		name       string
		cfg        Config
		maxPayload int
	}{
		{"default 1 MiB messages", Config{}, (1<<20 - 8<<10) / 4 * 3},
		{"256 KiB messages", Config{MaxMessageSize: 256 << 10}, (256<<10 - 8<<10) / 4 * 3},
		{"smaller payload limit", Config{MaxPayload: 1000}, 1000},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := offline(t, tc.cfg)
			require.Equal(t, tc.maxPayload, b.MaxPayload())
			subject := b.subjects.Jobs("acme", "remote")

			// The largest payload with a typical header set fits SQS's limit.
			e, size := b.encode(queueID{Tenant: "acme", Role: queue.RoleJobs, Key: "remote"}, subject,
				make([]byte, tc.maxPayload), map[string]string{queue.HeaderType: "outpost.jobs.v1.JobDispatched"}, "job-1")
			require.LessOrEqual(t, size, b.cfg.MaxMessageSize)
			require.Equal(t, size, messageSize(e.body, e.attrs))

			// One byte more is refused before any request, naming the limit.
			err := b.Publish(context.Background(), queue.Message{Subject: subject, Data: make([]byte, tc.maxPayload+1)})
			require.ErrorIs(t, err, queue.ErrPayloadTooLarge)
			require.Contains(t, err.Error(), fmt.Sprintf("limit is %d bytes", tc.maxPayload))
			require.Zero(t, b.Requests().Total())
		})
	}
	t.Run("headers over the message size", func(t *testing.T) {
		b := offline(t, Config{MaxMessageSize: 64 << 10})
		err := b.Publish(context.Background(), queue.Message{
			Subject: b.subjects.Submit("acme"),
			Data:    []byte("x"),
			Header:  map[string]string{"X-Huge": strings.Repeat("h", 64<<10)},
		})
		require.ErrorIs(t, err, queue.ErrPayloadTooLarge)
		require.Contains(t, err.Error(), "SQS limit is 65536 bytes")
	})
}

func TestConfigDefaults(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"zero value", Config{}, true},
		{"standard", Config{QueueType: QueueStandard}, true},
		{"unknown queue type", Config{QueueType: "lifo"}, false},
		{"bad stack", Config{Stack: "a.b"}, false},
		{"bad prefix", Config{QueuePrefix: "a/b"}, false},
		{"wait too long", Config{WaitTime: 21e9}, false},
		{"payload over the message size", Config{MaxMessageSize: 64 << 10, MaxPayload: 64 << 10}, false},
		{"message size over 1 MiB", Config{MaxMessageSize: 2 << 20}, false},
		{"retention over 14 days", Config{EventsRetention: 15 * 24 * 3600e9}, false},
		{"jobs max deliveries too high", Config{JobsMaxDeliveries: 1000}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := tc.cfg.withDefaults()
			if !tc.ok {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			require.NotEmpty(t, cfg.Stack)
			require.Positive(t, cfg.MaxPayload)
			require.Equal(t, cfg.JobsMaxDeliveries+1, (&Broker{cfg: cfg}).maxReceiveCount(queue.RoleJobs))
			require.Equal(t, BackstopMaxReceiveCount, (&Broker{cfg: cfg}).maxReceiveCount(queue.RoleSubmit))
		})
	}
}
