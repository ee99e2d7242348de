package fusefs

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// maxReadaheadKB bounds the readahead the union takes over from its
// branches' devices.
const maxReadaheadKB = 16 << 10

// sysfsRoot is where sysfs is mounted.
const sysfsRoot = "/sys"

// matchReadahead gives the FUSE mount at mnt the readahead of the fastest
// reading branch device, so that a cold sequential read through the union
// asks for as much at once as a read of the branch would. The kernel opens
// a FUSE mount with 128 KiB, however much the disk below reads ahead (8 MiB
// on some virtual disks: a cold read through the union then took twice as
// long as one of the branch). Only root in the initial namespaces may write
// sysfs; elsewhere this does nothing. The setting goes with the mount.
func (u *Union) matchReadahead(mnt string) error {
	want := 0
	for _, b := range u.br {
		if kb, err := deviceReadahead(b.dev); err == nil {
			want = max(want, kb)
		}
	}
	want = min(want, maxReadaheadKB)
	if want == 0 {
		return nil
	}
	var st unix.Stat_t
	if err := unix.Stat(mnt, &st); err != nil {
		return &os.PathError{Op: "stat", Path: mnt, Err: err}
	}
	p := filepath.Join(sysfsRoot, "class/bdi", devName(st.Dev), "read_ahead_kb")
	cur, err := readKB(p)
	if err != nil {
		return err
	}
	if cur >= want {
		return nil
	}
	if err := os.WriteFile(p, []byte(strconv.Itoa(want)), 0); err != nil {
		return fmt.Errorf("set the readahead of the union: %w", err)
	}
	u.log.Debug("readahead taken over from the branches", "kb", want, "was", cur)
	return nil
}

// deviceReadahead returns the readahead (KiB) of the block device dev: its
// own queue's, or for a partition its disk's.
func deviceReadahead(dev uint64) (int, error) {
	base := filepath.Join(sysfsRoot, "dev/block", devName(dev))
	kb, err := readKB(filepath.Join(base, "queue/read_ahead_kb"))
	if err == nil {
		return kb, nil
	}
	return readKB(filepath.Join(base, "../queue/read_ahead_kb"))
}

func devName(dev uint64) string {
	return fmt.Sprintf("%d:%d", unix.Major(dev), unix.Minor(dev))
}

func readKB(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	kb, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return kb, nil
}
