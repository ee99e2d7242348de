// Package capability names Linux capabilities, resolves a container's
// capability set from --cap-add/--cap-drop as podman does, and applies it
// to the thread that will execve the container's process.
//
// # Model
//
// A Cap is a capability number, a Set is a 64-bit mask of them (the
// kernel's own layout). Names are accepted in podman's forms
// ("CAP_NET_ADMIN", "NET_ADMIN", "net_admin"); the valid ones are those up
// to the running kernel's last capability (/proc/sys/kernel/cap_last_cap).
// Default is podman's default set; Resolve applies --cap-add/--cap-drop
// with podman's precedence (drop ALL keeps only the added ones, add ALL
// takes the bounding set). ForRoot and ForUser turn the resolved set into
// the five per-thread sets (bounding, effective, permitted, inheritable,
// ambient) that podman puts into the OCI spec for a root and for a non-root
// container user, and Apply gives them to the calling thread.
//
// # Call order in the container's init
//
// Capabilities, uids and secure bits are per thread, so everything below
// runs on one locked OS thread, the one that calls execve:
//
//	runtime.LockOSThread()              // never unlocked: the thread execs
//	capability.Prepare()                // SECBIT_NO_SETUID_FIXUP: keep caps across setresuid
//	setgroups, setresgid, setresuid     // the container user
//	seccomp.Install(prog, 0)            // unless unconfined; without no_new_privs it needs
//	                                    // CAP_SYS_ADMIN, still effective thanks to Prepare
//	capability.Apply(sets)              // bounding drop, secure bits back to normal, E/P/I, ambient
//	prctl(PR_SET_NO_NEW_PRIVS, 1)       // if asked (it may also come before seccomp.Install)
//	execve
//
// Prepare must come before the setresuid: otherwise a switch to a non-root
// uid empties the permitted set and Apply can neither drop the bounding set
// (CAP_SETPCAP) nor keep any --cap-add capability. Apply must come last
// before execve because it drops the capabilities the steps before it use
// (CAP_SETUID, CAP_SETGID, CAP_SYS_ADMIN for the filter). The filter of
// the default seccomp profile allows capset, prctl and execve, so Apply and
// execve work under it.
//
// At execve the kernel recomputes the sets: a uid-0 process gets its
// bounding set as permitted and effective (ForRoot sets them equal anyway);
// a non-root process keeps only its ambient set, which ForUser fills with
// the --cap-add capabilities, as podman does.
//
// # Errors
//
// Unknown names wrap ErrUnknown and list the valid names; names past the
// kernel's last capability wrap ErrUnsupported. System call failures are
// *os.SyscallError, so errors.Is(err, unix.EPERM) works, with a note of the
// capability the call needs.
package capability
