package jobs

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"time"
)

// crockford is Crockford's base32 alphabet in lower case: ids sort by time
// as plain strings.
const crockford = "0123456789abcdefghjkmnpqrstvwxyz"

// NewID returns a new job id: 26 characters, a millisecond timestamp then
// 80 random bits (a lower-case ULID), so ids sort by creation time.
func NewID(now time.Time) string {
	var entropy [10]byte
	_, _ = rand.Read(entropy[:]) // crypto/rand.Read never fails
	return ulid(now, entropy)
}

// NewAttemptToken returns a fresh random attempt token: 128 bits, in
// base64url. The scheduler issues one with a job's dispatch; the runner
// echoes it on every event of the job.
func NewAttemptToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// DeriveID returns the id of a job submitted on the queue without one. It
// depends only on its arguments, so a redelivered SubmitJob gets the same id
// and creates the job once: at is when the submit happened and key tells
// submits apart (the envelope's event id, or the payload).
func DeriveID(at time.Time, key []byte) string {
	sum := sha256.Sum256(key)
	var entropy [10]byte
	copy(entropy[:], sum[:])
	return ulid(at, entropy)
}

func ulid(t time.Time, entropy [10]byte) string {
	var b [16]byte
	ms := uint64(max(t.UnixMilli(), 0))
	binary.BigEndian.PutUint16(b[0:2], uint16(ms>>32))
	binary.BigEndian.PutUint32(b[2:6], uint32(ms))
	copy(b[6:], entropy[:])
	// 128 bits as 26 base32 digits, the first one holding 3 bits.
	hi := binary.BigEndian.Uint64(b[0:8])
	lo := binary.BigEndian.Uint64(b[8:16])
	var out [26]byte
	for i := 25; i >= 0; i-- {
		out[i] = crockford[lo&31]
		lo = lo>>5 | hi<<59
		hi >>= 5
	}
	return string(out[:])
}
