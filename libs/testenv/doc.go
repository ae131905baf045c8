// Package testenv is the project's one test toolkit, shared by every
// harness (kubetest, dbtest, sqstest, natstest, tests/harness) and by the
// services' own tests:
//
//   - Process supervises a real binary: started with its arguments and
//     environment, its output kept (and written to the test log with the
//     process's name as a prefix), a readiness probe, a graceful Stop
//     (SIGTERM, then SIGKILL after a grace), Kill (SIGKILL), any Signal
//     (SIGSTOP, SIGCONT, ...), Restart with the same arguments, its own
//     process group, and on Linux a parent-death signal so that no child
//     outlives a killed test binary.
//   - Require skips a test whose real dependency is missing, except under
//     CI (CI=true), where it fails it.
//   - Client calls a JSON HTTP API.
//   - Delivery is an in-memory queue.Delivery that records how a handler
//     settled it.
//   - FreePorts, FreePort and FreeAddr find loopback ports; SyncBuffer is
//     a buffer safe for concurrent use; RepoRoot finds the repository.
//
// Production code does not import it.
package testenv
