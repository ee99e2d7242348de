// Package container runs one rootless container: from a Config (layers,
// command, identity, mounts, security settings) to a process whose exit
// status comes back to the caller.
//
// # Model
//
// Three processes, each a re-execution of the binary (see
// internal/reexec; main and TestMain call Register and reexec.Init):
//
//   - the CLI (Run, or Create then Handle.Run): makes the container's state
//     directory below the data root and locks it for the container's whole
//     life, plans the user namespace's maps (package userns), starts the
//     monitor and forwards signals to it, relays the terminal of -t;
//   - the monitor (root of a new user namespace, in a new mount namespace,
//     outside the container's pid namespace): starts the container's init
//     at once (it waits for its config), meanwhile makes the container's
//     record in the image store for a container from an image (the
//     binary's Images, given to Register) and mounts the rootfs union
//     (package fusefs) from its own process, so that the FUSE server lives
//     exactly as long as the container; the mount reaches the init's mount
//     namespace by propagation (the state directory is a shared bind of
//     itself). Then it sends the init its config, forwards signals to it,
//     and at the end unmounts and removes --rm state (and store record);
//   - the container's init (new pid, uts, ipc, cgroup, mount and, unless
//     --network host, net namespaces; a nested user namespace for keep-id):
//     builds /proc, /sys, /dev, the binds and tmpfs, pivots into the union,
//     masks paths, then becomes the command (execProcess: user, groups,
//     terminal, working directory, seccomp filter, capabilities, execve), or
//     with --init starts it as a child and reaps.
//
// Parent-death signals chain the three, so a SIGKILL of the CLI ends the
// container; no descriptor of urun reaches the command. With URUN_TRACE
// each of them records its phases (internal/trace).
//
// # Locks
//
// A container's state directory holds a lock file, flock'ed by the CLI
// from the directory's first moment and shared with the monitor: a state
// whose lock is free belongs to a container that is not running, and
// ReapStale may remove it (--rm). No in-process locks are held across
// calls.
//
// # Errors
//
// Functions return errors that name the object and wrap the cause (errno
// matchable with errors.Is). What must end urun with a particular status
// is an *ExitError: ExitSetup (125) for urun's own failures, ExitCannotRun
// (126) and ExitNotFound (127) for commands that cannot run, as podman
// uses them. Bad -v, --tmpfs, -e and --name values wrap ErrBadSpec.
package container
