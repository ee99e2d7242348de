// Package fusefs is ufs's union filesystem: a FUSE filesystem (go-fuse v2
// fs API) that stacks directories ("branches") with aufs semantics.
//
// # Model
//
// Branches are ordered topmost first; each is rw (writable), wh (read-only,
// its whiteouts honoured) or ro (read-only, its whiteouts ignored). A node
// is one object of the union; its nodeState says which branch holds it and,
// for a directory, which branches merge into it (down to the first opaque
// one). A name resolves to the topmost branch holding it unless a whiteout in
// a higher branch that honours whiteouts hides it. Whiteouts are read in the
// aufs format (".wh.NAME", ".wh..wh..opq") and the overlay format (0/0
// character devices, overlay.opaque and overlay.whiteout xattrs); the aufs
// format is written, and the overlay format at a name itself where
// ".wh.NAME" would exceed NAME_MAX. Names starting with ".wh." never show
// through the mount.
//
// Every change to an object in a read-only branch first copies it up to an
// rw branch (parents first): the copy is staged in the branch's
// ".wh..wh.work" directory, given its owner, mode, xattrs and times, and
// renamed into place, so a crash leaves the old object or the whole new one.
// Copied-up objects keep their inode number for the life of the mount (an
// alias table maps the copy's branch inode to the original's), and hard
// links of a copied-up object stay linked through the ".wh..wh.plnk" index,
// which persists across remounts.
//
// With Config.Metacopy (overlay mode), a change of the metadata only of a
// lower regular file copies up a metacopy file instead, in overlayfs's
// format: sparse, carrying overlay.metacopy, its data read from the lower
// file until a change of the data completes the copy (metacopy.go).
//
// Branch files are reached through the branch root's O_PATH descriptor with
// openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS) and *at calls, so no symlink
// in a branch leads outside it and paths deeper than PATH_MAX work.
//
// # Locks
//
// node.cuMu serialises copy-ups of one object with the namespace
// operations on it: unlink and rmdir hold the victim's cuMu, rename holds
// the source's and the target's (taken in address order), so that a copy-up
// cannot undo them. copyUp holds a node's cuMu while it takes its parent's,
// so the order is descendant before ancestor; a tree copied up for a rename
// tolerates a concurrent copy-up of one of its files (whoever renames its
// complete copy into place first wins, the other uses it).
// node.mu (guarding nodeState), Union.inoMu and branch.whMu (the shared
// whiteout) are leaves: nothing is acquired while holding them.
// handlelessDirs.mu is a leaf too; a listing's mu is held while a READDIR
// goes through the node tree, so it comes before every node lock. The kernel serialises directory operations
// per directory (i_rwsem), which the create, remove and rename paths rely on.
//
// # Errors
//
// Inside the package errors are Go errors wrapping the errno of the system
// call (*os.PathError from internal/sys); they become a syscall.Errno only at
// the FUSE edge, through fs.ToErrno.
package fusefs
