// Package userns puts a process into a new user namespace mapped from the
// caller's subordinate id ranges, the way podman does rootless: container
// root is the caller, ids 1…N are the ranges from /etc/subuid and
// /etc/subgid, written by the distribution's setuid newuidmap/newgidmap.
// Without a range it falls back to a single-id map (container root only).
//
// The model: the parent starts a child (a re-exec of this binary, see
// internal/reexec) with CLONE_NEWUSER plus whatever other namespaces it
// wants, writes the child's maps while the child waits on a sync pipe, then
// releases it. The child calls WaitMapped first thing. Its capabilities in
// the namespace survive its execve (made before the maps, as an unmapped
// uid) as ambient capabilities, which WaitMapped clears again: one execve
// per namespace.
//
// Errors: every failure names what was tried and how to fix it (the sysctl
// that disables user namespaces, the package that holds newuidmap, the
// /etc/subuid line to add); the underlying errno stays matchable with
// errors.Is.
package userns
