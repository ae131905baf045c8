package natsjs

import "time"

// SetReadCounted runs f in every bounded Read once it has counted what it
// will deliver, until the test ends.
func SetReadCounted(t interface{ Cleanup(func()) }, f func()) {
	readCounted = f
	t.Cleanup(func() { readCounted = nil })
}

// DenyPublish makes c act as a connection whose permissions deny
// patterns (an agent's), for the checks made before a request.
func DenyPublish(c *Conn, patterns ...string) { c.pubDeny = append(c.pubDeny, patterns...) }

// SetJetStreamGrace sets jetStreamGrace until the test ends.
func SetJetStreamGrace(t interface{ Cleanup(func()) }, d time.Duration) {
	old := jetStreamGrace
	jetStreamGrace = d
	t.Cleanup(func() { jetStreamGrace = old })
}
