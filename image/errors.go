package image

import (
	"errors"

	"github.com/urun-dev/urun/image/lease"
)

// Sentinel errors; match them with errors.Is.
var (
	// ErrNotFound: no image in the store has the given name or ID.
	ErrNotFound = errors.New("image not known")
	// ErrInUse: a container still uses the image.
	// A lease's refusal (package lease) is this error too.
	ErrInUse = lease.ErrInUse
	// ErrNoUfs: the ufs binary the overlay driver mounts with is missing.
	ErrNoUfs = errors.New("ufs not found")
	// ErrBadReference: a name that is no image reference.
	ErrBadReference = errors.New("bad image reference")
	// ErrContainerNotFound: no container record with that ID or name.
	ErrContainerNotFound = errors.New("container not known")
)
