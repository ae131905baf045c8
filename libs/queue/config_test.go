package queue

import (
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
