// Package lease is the hold a running container keeps on an image of
// urun's store without a container record (urun run --rm): a shared
// flock(2) on the image's lease file, GRAPHROOT/urun-leases/IMAGE-ID.
// Removing the image (urun rmi) takes the same lock exclusively without
// waiting, so it fails while a lease is held; the kernel drops the lock
// when its holder dies, however it dies, so a killed container leaves
// nothing behind.
//
// The package knows only these files and the directory containers-storage
// keeps an image's data in (GRAPHROOT/overlay-images/IMAGE-ID, gone once
// the image is deleted): it links no store, so that urun's runtime binary
// (cmd/urun-runtime) can take a lease in a fraction of the time opening
// containers-storage costs.
//
// Errors wrap the errno of the failed call (errors.Is(err, unix.ENOENT)
// works) or one of the sentinels ErrInUse and ErrGone.
package lease

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

var (
	// ErrInUse: a lease on the image is held (LockOut).
	ErrInUse = errors.New("image in use by a container")
	// ErrGone: the image is no longer in the store (Take).
	ErrGone = errors.New("image not known")
)

// Ref names a leasable image: the store's graph root and the image's ID
// (64 hex digits).
type Ref struct {
	GraphRoot string
	ImageID   string
}

// File is the lock file of the image's leases.
func (r Ref) File() string { return filepath.Join(r.GraphRoot, "urun-leases", r.ImageID) }

// imageDir is where containers-storage (overlay driver) keeps the
// image's manifest and config: it goes with the image.
func (r Ref) imageDir() string { return filepath.Join(r.GraphRoot, "overlay-images", r.ImageID) }

func (r Ref) short() string {
	if len(r.ImageID) > 12 {
		return r.ImageID[:12]
	}
	return r.ImageID
}

// Lease is a held lease; Release lets go of it.
type Lease struct {
	Ref
	f *os.File
}

// Release lets go of the image.
func (l *Lease) Release() error { return l.f.Close() }

// Take takes a lease on the image r. It waits while a removal of the
// image runs, and then fails with ErrGone if the removal went through.
// The caller looked the image up before: Take makes sure that it is
// still there, and stays so until Release.
func Take(r Ref) (*Lease, error) {
	if !validID(r.ImageID) {
		return nil, fmt.Errorf("lease on image %q: not an image ID (64 hex digits)", r.ImageID)
	}
	path := r.File()
	for {
		f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|unix.O_CLOEXEC, 0o600)
		if errors.Is(err, os.ErrNotExist) {
			if err = os.MkdirAll(filepath.Dir(path), 0o700); err == nil {
				f, err = os.OpenFile(path, os.O_RDONLY|os.O_CREATE|unix.O_CLOEXEC, 0o600)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("lease on image %s: %w", r.short(), err)
		}
		if err := flock(f, unix.LOCK_SH); err != nil {
			f.Close()
			return nil, fmt.Errorf("lease on image %s: %w", r.short(), err)
		}
		// A removal unlinks the file before it lets go: a lock on an
		// unlinked file holds nothing, and the next lease makes a new
		// file. Take that one.
		same, err := samePath(f, path)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("lease on image %s: %w", r.short(), err)
		}
		if !same {
			f.Close()
			continue
		}
		if _, err := os.Stat(r.imageDir()); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				os.Remove(path) // ours: a lease of no image
				f.Close()
				return nil, fmt.Errorf("%w: %s (removed while the container started)", ErrGone, r.short())
			}
			f.Close()
			return nil, fmt.Errorf("lease on image %s: %w", r.short(), err)
		}
		return &Lease{Ref: r, f: f}, nil
	}
}

// samePath reports whether path still names the open file f.
func samePath(f *os.File, path string) (bool, error) {
	var a, b unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &a); err != nil {
		return false, &os.PathError{Op: "fstat", Path: path, Err: err}
	}
	if err := unix.Stat(path, &b); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return false, nil
		}
		return false, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	return a.Dev == b.Dev && a.Ino == b.Ino, nil
}

// LockOut takes the image's lease lock exclusively, without waiting: it
// fails with ErrInUse while a lease is held. Call it before removing the
// image; unlock (deleted: whether the image went) then removes the lock
// file with the image, and lets go.
func LockOut(r Ref) (unlock func(deleted bool), err error) {
	path := r.File()
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_CLOEXEC, 0)
	if errors.Is(err, os.ErrNotExist) {
		return func(bool) {}, nil // never leased
	}
	if err != nil {
		return nil, fmt.Errorf("lease lock of image %s: %w", r.short(), err)
	}
	if err := flock(f, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("remove image %s: %w: a running container (urun run --rm) uses it; stop it first", r.short(), ErrInUse)
		}
		return nil, fmt.Errorf("lease lock of image %s: %w", r.short(), err)
	}
	return func(deleted bool) {
		if deleted {
			os.Remove(path)
		}
		f.Close()
	}, nil
}

// flock wraps flock(2), retrying EINTR.
func flock(f *os.File, how int) error {
	for {
		err := unix.Flock(int(f.Fd()), how)
		if !errors.Is(err, unix.EINTR) {
			if err != nil {
				return &os.PathError{Op: "flock", Path: f.Name(), Err: err}
			}
			return nil
		}
	}
}

// validID reports whether id is 64 lower-case hex digits: it becomes a
// file name.
func validID(id string) bool {
	if len(id) != 64 {
		return false
	}
	for _, c := range id {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
