package sealed

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestSealOpen(t *testing.T) {
	key := make([]byte, KeySize)
	key[0] = 1
	other := make([]byte, KeySize)
	box, err := Seal(key, []byte("apiVersion: v1"))
	require.NoError(t, err)
	require.Len(t, box, 12+len("apiVersion: v1")+16)

	tests := []struct {
		name    string
		key     []byte
		box     []byte
		wantErr error
	}{
		{name: "opens", key: key, box: box},
		{name: "wrong key", key: other, box: box, wantErr: ErrOpen},
		{name: "truncated", key: key, box: box[:10], wantErr: ErrOpen},
		{name: "altered", key: key, box: append(append([]byte{}, box[:len(box)-1]...), box[len(box)-1]^1), wantErr: ErrOpen},
		{name: "no key", key: nil, box: box, wantErr: ErrNoKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plain, err := Open(tt.key, tt.box)
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, "apiVersion: v1", string(plain))
		})
	}
}
