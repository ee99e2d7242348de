package fusefs_test

import (
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/urun-dev/urun/fusefs"
	"github.com/urun-dev/urun/internal/testutil"
	"golang.org/x/sys/unix"
)

// TestConcurrentDirectoryChanges runs a random mix of renames, removals,
// creations and lookups of a few directory names from 8 goroutines over
// an overlay-format union whose lower holds the same names. Every call may
// fail with what a local filesystem answers under such a race (ENOENT,
// EEXIST, ENOTEMPTY, ENOTDIR, EISDIR, EINVAL), never otherwise.
// Regression: a directory node took its attributes from whatever its name
// held, the whiteout that replaced it included (mode 0, shown by go-fuse
// with the directory's type), and its owner then got EACCES.
func TestConcurrentDirectoryChanges(t *testing.T) {
	testutil.RequireFUSE(t)
	low := t.TempDir()
	testutil.Write(t, low, testutil.Tree{"a/f": "x", "b/g": "y", "c/": "", "a/x/y/z": "deep"})
	mnt := mountConfig(t, fusefs.Config{
		Branches:  []fusefs.Branch{{Path: t.TempDir(), Perm: fusefs.PermRW}, {Path: low, Perm: fusefs.PermROWH}},
		Whiteouts: fusefs.FormatOverlay,
	})
	names := []string{"a", "b", "c", "d", "a/x", "b/x", "c/x", "a/x/y", "b/g", "a/f"}
	var mu sync.Mutex
	unexpected := map[string]int{}
	var example error
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func(seed int64) {
			defer wg.Done()
			r := rand.New(rand.NewSource(seed))
			for range 6000 {
				x := filepath.Join(mnt, names[r.Intn(len(names))])
				y := filepath.Join(mnt, names[r.Intn(len(names))])
				var err error
				op := r.Intn(6)
				switch op {
				case 0:
					err = os.Rename(x, y)
				case 1:
					err = os.RemoveAll(x)
				case 2:
					err = os.Mkdir(x, 0o755)
				case 3:
					err = os.WriteFile(filepath.Join(x, "f"), []byte("z"), 0o644)
				case 4:
					_, err = os.ReadDir(x)
				case 5:
					var st unix.Stat_t
					err = unix.Lstat(filepath.Join(x, "f"), &st)
				}
				var errno unix.Errno
				if err == nil || !errors.As(err, &errno) {
					continue
				}
				switch errno {
				case unix.ENOENT, unix.EEXIST, unix.ENOTEMPTY, unix.ENOTDIR, unix.EISDIR, unix.EINVAL:
					continue
				}
				mu.Lock()
				unexpected[fmt.Sprintf("op %d: %v", op, errno)]++
				if example == nil {
					example = err
				}
				mu.Unlock()
			}
		}(int64(w))
	}
	wg.Wait()
	if len(unexpected) > 0 {
		t.Errorf("unexpected errors %v, e.g. %v", unexpected, example)
	}
}
