package queue

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestConsumerConfigWithDefaults(t *testing.T) {
	tests := []struct {
		name string
		in   ConsumerConfig
		want ConsumerConfig
	}{
		{"zero values get the defaults", ConsumerConfig{Name: "n"},
			ConsumerConfig{Name: "n", AckWait: DefaultAckWait, MaxDeliveries: DefaultMaxDeliveries, Concurrency: 1}},
		{"set values are kept", ConsumerConfig{AckWait: time.Second, MaxDeliveries: 2, Concurrency: 8},
			ConsumerConfig{AckWait: time.Second, MaxDeliveries: 2, Concurrency: 8}},
		{"negative max deliveries stays unlimited", ConsumerConfig{MaxDeliveries: -1, Concurrency: -3, AckWait: -time.Second},
			ConsumerConfig{MaxDeliveries: -1, Concurrency: 1, AckWait: DefaultAckWait}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, tt.in.WithDefaults())
		})
	}
}

type stopFunc func(context.Context) error

func (f stopFunc) Stop(ctx context.Context) error { return f(ctx) }

func TestStopAll(t *testing.T) {
	boom := errors.New("boom")
	var stopped []int
	cs := []Consumer{
		stopFunc(func(context.Context) error { stopped = append(stopped, 1); return nil }),
		stopFunc(func(context.Context) error { stopped = append(stopped, 2); return boom }),
		stopFunc(func(context.Context) error { stopped = append(stopped, 3); return nil }),
	}
	require.ErrorIs(t, StopAll(context.Background(), cs...), boom)
	require.Equal(t, []int{1, 2, 3}, stopped, "a failed stop does not skip the others")
	require.NoError(t, StopAll(context.Background()))
}
