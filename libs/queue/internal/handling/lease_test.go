package handling

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/queue"
)

func TestFenceMargin(t *testing.T) {
	tests := []struct {
		ackWait, want time.Duration
	}{
		{3 * time.Second, time.Second},
		{15 * time.Second, 1500 * time.Millisecond},
		{time.Minute, 6 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.ackWait.String(), func(t *testing.T) {
			require.Equal(t, tt.want, queue.FenceMargin(tt.ackWait))
		})
	}
}

func TestLease(t *testing.T) {
	t0 := time.Now()
	fenced := queue.ConsumerConfig{AckWait: 3 * time.Second, Fenced: true}
	tests := []struct {
		name  string
		cfg   queue.ConsumerConfig
		renew []time.Duration // renewals sent at these offsets from t0
		check time.Duration   // offset of the check
		lost  bool
	}{
		{name: "unfenced never lapses", cfg: queue.ConsumerConfig{AckWait: 3 * time.Second}, check: time.Hour},
		{name: "fresh", cfg: fenced, check: 1999 * time.Millisecond},
		{name: "lapsed at the ack wait less the margin", cfg: fenced, check: 2 * time.Second, lost: true},
		{name: "renewed", cfg: fenced, renew: []time.Duration{1500 * time.Millisecond}, check: 3400 * time.Millisecond},
		{name: "renewed too late", cfg: fenced, renew: []time.Duration{1500 * time.Millisecond}, check: 3500 * time.Millisecond, lost: true},
		{name: "an older renewal does not move it back", cfg: fenced, renew: []time.Duration{1500 * time.Millisecond, time.Second}, check: 3400 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := NewLease(tt.cfg, t0)
			for _, r := range tt.renew {
				l.Renew(t0.Add(r))
			}
			err := l.Check(t0.Add(tt.check))
			if !tt.lost {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, queue.ErrSuperseded)
			// Once lost, a lease stays lost, renewal or not.
			l.Renew(t0.Add(tt.check))
			require.ErrorIs(t, l.Check(t0), queue.ErrSuperseded)
		})
	}
}

func TestReceiveWait(t *testing.T) {
	require.Equal(t, 15*time.Second, ReceiveWait(queue.ConsumerConfig{AckWait: time.Second}, 15*time.Second), "unfenced: unchanged")
	require.Equal(t, 750*time.Millisecond, ReceiveWait(queue.ConsumerConfig{AckWait: 15 * time.Second, Fenced: true}, 15*time.Second))
	require.Equal(t, 100*time.Millisecond, ReceiveWait(queue.ConsumerConfig{AckWait: 15 * time.Second, Fenced: true}, 100*time.Millisecond))
}

func TestValidateFenced(t *testing.T) {
	require.ErrorIs(t, queue.ConsumerConfig{AckWait: 2 * time.Second, Fenced: true}.Validate(), queue.ErrInvalidConsumer)
	require.NoError(t, queue.ConsumerConfig{AckWait: 2 * time.Second}.Validate())
	require.NoError(t, queue.ConsumerConfig{AckWait: queue.MinFencedAckWait, Fenced: true}.Validate())
}

// TestLeaseFresh: within a tenth of the ack wait of the receive, or of the
// last renewal, an InProgress need not be sent; fenced or not.
func TestLeaseFresh(t *testing.T) {
	t0 := time.Now()
	tests := []struct {
		name  string
		renew time.Duration // a renewal sent at this offset from t0, if not 0
		at    time.Duration
		fresh bool
	}{
		{name: "just received", at: 299 * time.Millisecond, fresh: true},
		{name: "a tenth of the ack wait after the receive", at: 300 * time.Millisecond},
		{name: "just renewed", renew: time.Second, at: 1299 * time.Millisecond, fresh: true},
		{name: "a tenth after the renewal", renew: time.Second, at: 1300 * time.Millisecond},
	}
	for _, fenced := range []bool{false, true} {
		for _, tt := range tests {
			t.Run(fmt.Sprintf("fenced=%v/%s", fenced, tt.name), func(t *testing.T) {
				l := NewLease(queue.ConsumerConfig{AckWait: 3 * time.Second, Fenced: fenced}, t0)
				if tt.renew != 0 {
					l.Renew(t0.Add(tt.renew))
				}
				require.Equal(t, tt.fresh, l.Fresh(t0.Add(tt.at)))
			})
		}
	}
}
