// Package seccomp compiles a seccomp profile into a classic BPF filter for
// the container's process and installs it, in pure Go (no libseccomp, so
// CGO_ENABLED=0 builds work).
//
// # Model
//
// A Profile is a profile in the JSON format podman and Docker share
// (Default is moby's default profile, from github.com/moby/profiles; Load
// reads a --security-opt seccomp=FILE). Compile resolves it for one
// container, deciding every rule's includes/excludes on the container's
// capability set (capability.Set, as resolved from --cap-add/--cap-drop),
// the x86_64 architecture ("amd64") and the kernel version, and emits a
// filter that
//
//  1. kills the process for any system call that is not native x86_64:
//     i386 (int 0x80, AUDIT_ARCH_I386) and the x32 ABI (__X32_SYSCALL_BIT);
//  2. binary-searches the system call number over runs of numbers that
//     share one verdict; a number with argument rules gets its rules, in
//     profile order, the first whose conditions all hold deciding (all
//     conditions of a rule must hold; comparisons are on the full 64-bit
//     argument);
//  3. answers numbers the profile knows but allows nowhere with the
//     default action (ERRNO(EPERM) for the default profile), and numbers
//     above the newest system call it names with ENOSYS, so that a libc
//     probing a system call newer than the profile falls back (runc does
//     the same; podman's own profile gets there with defaultErrnoRet
//     ENOSYS).
//
// Jumps to far places are unconditional "ja" instructions, so the 8-bit
// offsets of conditional jumps never limit a filter; the kernel's limit of
// 4096 instructions does (ErrTooLarge). The default profile compiles to
// about 460 instructions.
//
// Install loads a filter with seccomp(SECCOMP_SET_MODE_FILTER,
// SECCOMP_FILTER_FLAG_TSYNC) for every thread of the process. The kernel
// takes it from a thread with no_new_privs set (SetNoNewPrivs) or with
// CAP_SYS_ADMIN in its user namespace.
//
// # Call order in the container's init
//
// On the locked OS thread that execs (see package capability for the whole
// sequence): capability.Prepare; setgroups/setresgid/setresuid;
// Compile+Install; capability.Apply; no_new_privs if asked; execve.
// Without no_new_privs, Install must come before capability.Apply drops
// CAP_SYS_ADMIN (Prepare kept it effective through the setresuid). With
// no_new_privs, SetNoNewPrivs may come first and Install anywhere before
// execve. The default filter allows capset, prctl, setresuid and execve,
// so what follows Install works under it.
//
// # Errors
//
// Profile errors wrap ErrProfile and name the rule (syscalls[i] and its
// names). Install returns the errno of seccomp(2) as an *os.SyscallError,
// matchable with errors.Is, with the fix for EACCES.
package seccomp

//go:generate go run mksysnum.go
