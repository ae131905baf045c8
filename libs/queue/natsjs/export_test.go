package natsjs

// SetReadCounted runs f in every bounded Read once it has counted what it
// will deliver, until the test ends.
func SetReadCounted(t interface{ Cleanup(func()) }, f func()) {
	readCounted = f
	t.Cleanup(func() { readCounted = nil })
}
