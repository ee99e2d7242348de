package lease

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const testID = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// newRef is an image of a fake store: its overlay-images directory, which
// is all this package looks at.
func newRef(t *testing.T) Ref {
	t.Helper()
	r := Ref{GraphRoot: t.TempDir(), ImageID: testID}
	if err := os.MkdirAll(r.imageDir(), 0o700); err != nil {
		t.Fatal(err)
	}
	return r
}

// TestTakeLockOut: a lease keeps LockOut out (ErrInUse) until released,
// two leases share the image, and LockOut's unlock removes the lock file
// with the image.
func TestTakeLockOut(t *testing.T) {
	r := newRef(t)
	a, err := Take(r)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Take(r)
	if err != nil {
		t.Fatalf("a second lease: %v", err)
	}
	if _, err := LockOut(r); !errors.Is(err, ErrInUse) {
		t.Fatalf("lock-out with two leases: %v, want ErrInUse", err)
	}
	a.Release()
	if _, err := LockOut(r); !errors.Is(err, ErrInUse) {
		t.Fatalf("lock-out with one lease: %v, want ErrInUse", err)
	}
	b.Release()
	unlock, err := LockOut(r)
	if err != nil {
		t.Fatalf("lock-out without leases: %v", err)
	}
	// While locked out, no lease: the removal goes through.
	done := make(chan error, 1)
	go func() {
		l, err := Take(r)
		if err == nil {
			l.Release()
		}
		done <- err
	}()
	if err := os.RemoveAll(r.imageDir()); err != nil {
		t.Fatal(err)
	}
	unlock(true)
	if err := <-done; !errors.Is(err, ErrGone) {
		t.Errorf("lease during the removal: %v, want ErrGone", err)
	}
	if _, err := os.Stat(r.File()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("lease file after the removal and a failed lease: %v", err)
	}
}

// TestTakeAfterRelink: a lease taken while a lock-out unlinks the lock
// file holds the new file, so that the next lock-out sees it.
func TestTakeAfterRelink(t *testing.T) {
	r := newRef(t)
	if l, err := Take(r); err != nil { // makes the file
		t.Fatal(err)
	} else {
		l.Release()
	}
	unlock, err := LockOut(r)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *Lease, 1)
	go func() {
		l, err := Take(r)
		if err != nil {
			t.Error(err)
		}
		got <- l
	}()
	unlock(true) // the file goes; the image stays (as if stored again)
	l := <-got
	if l == nil {
		return
	}
	defer l.Release()
	if _, err := LockOut(r); !errors.Is(err, ErrInUse) {
		t.Errorf("lock-out while a lease holds the new file: %v, want ErrInUse", err)
	}
}

func TestTakeErrors(t *testing.T) {
	r := Ref{GraphRoot: t.TempDir(), ImageID: testID}
	if _, err := Take(r); !errors.Is(err, ErrGone) {
		t.Errorf("lease on an image not in the store: %v, want ErrGone", err)
	}
	if _, err := os.Stat(r.File()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("lease file of no image: %v", err)
	}
	for _, id := range []string{"", "../../etc", strings.ToUpper(testID), testID[:12]} {
		if _, err := Take(Ref{GraphRoot: r.GraphRoot, ImageID: id}); err == nil || !strings.Contains(err.Error(), "not an image ID") {
			t.Errorf("lease on %q: %v", id, err)
		}
	}
	if unlock, err := LockOut(r); err != nil {
		t.Errorf("lock-out of a never leased image: %v", err)
	} else {
		unlock(true)
	}
	// A graph root that cannot hold the lease directory.
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o600)
	if _, err := Take(Ref{GraphRoot: file, ImageID: testID}); err == nil || errors.Is(err, ErrGone) {
		t.Errorf("lease in a graph root that is a file: %v", err)
	}
}
