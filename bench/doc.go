// Package bench measures ufs and urun side by side with their peers:
// kernel overlayfs, fuse-overlayfs, and a plain directory as the physical
// limit for the filesystem part; podman, crun, runc and bwrap for the
// runtime part.
//
// # Model
//
// A Fixture holds the lower layers every implementation mounts: a Debian
// minbase made with mmdebstrap split into 3 and into 20 layers, a layer
// with a large file, a directory of many entries spread over 3 layers, and
// a Go module with a seeded build cache (a small synthetic tree in smoke
// mode). Fixtures are built once and cached.
//
// A Workload is an untimed preparation and a timed step on the root of an
// Instance: a fresh mount of one implementation over the stack of layers
// the workload names, with an empty upper. Every measurement gets its own
// instance, so no workload sees what another left behind. Rounds interleave
// the implementations (A B C A B C) after one warm-up round, so that drift
// of a shared machine hits all alike. Cold workloads drop the kernel's
// caches between preparation and the timed step (root only).
//
// An Executor runs the instances of one kind of caller: the local one runs
// them in this process (root, host namespaces); the agent one drives a copy
// of this program running as an unprivileged user inside a user and mount
// namespace of that user (unshare(1) with the user's subordinate ids), so
// that the rootless figures come from a real unprivileged user.
//
// # Errors and cleanup
//
// A failure of one implementation on one workload is recorded beside the
// figures and the run goes on; nothing is invented for a peer that cannot
// run. Every mount and helper process is registered on a cleanup stack as
// it is made, and released in reverse order on success, error and signal.
package bench
