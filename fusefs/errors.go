package fusefs

import "errors"

// Sentinel errors returned by configuration and mount checks; wrapped with
// the offending branch, option or path.
var (
	// ErrBadBranch reports a branch specification that cannot be used.
	ErrBadBranch = errors.New("bad branch")
	// ErrBadOption reports an unknown or malformed mount option.
	ErrBadOption = errors.New("bad option")
	// ErrNoBranches reports a union without any branch.
	ErrNoBranches = errors.New("no branches: give at least one with -o br=DIR=rw or --branch DIR=ro")
	// ErrMountpoint reports a mountpoint that cannot be used.
	ErrMountpoint = errors.New("bad mountpoint")
	// ErrFUSE reports that the FUSE device cannot be used.
	ErrFUSE = errors.New("no FUSE access")
)

// errNoSharedWhiteout says that an rw branch cannot hold a shared whiteout
// inode; the caller makes a whiteout of its own.
var errNoSharedWhiteout = errors.New("no shared whiteout in this branch")
