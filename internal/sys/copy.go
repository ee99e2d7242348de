package sys

import (
	"errors"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// CopyData copies the contents of src into dst, both open file
// descriptors, dst empty. It tries FICLONE first (a reflink shares the
// blocks), then copy_file_range over each data extent found with
// SEEK_DATA/SEEK_HOLE so that holes stay holes, and plain read/write where
// copy_file_range is refused (across filesystems on old kernels). size is
// the length of src; dst is extended to it.
func CopyData(dst, src int, size int64) error {
	if size == 0 {
		return nil
	}
	if err := unix.IoctlFileClone(dst, src); err == nil {
		return nil
	}
	off := int64(0)
	for off < size {
		data, err := unix.Seek(src, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // only a hole remains
		}
		if err != nil {
			// No SEEK_DATA support: treat the rest as data.
			data = off
		}
		hole, err := unix.Seek(src, data, unix.SEEK_HOLE)
		if err != nil || hole > size {
			hole = size
		}
		if err := copyRange(dst, src, data, hole-data); err != nil {
			return err
		}
		off = hole
	}
	if err := retry(func() error { return unix.Ftruncate(dst, size) }); err != nil {
		return os.NewSyscallError("ftruncate", err)
	}
	return nil
}

func copyRange(dst, src int, off, n int64) error {
	for n > 0 {
		roff, woff := off, off
		c, err := unix.CopyFileRange(src, &roff, dst, &woff, int(min(n, 1<<30)), 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || c == 0 {
			if err == nil || errors.Is(err, unix.EXDEV) || errors.Is(err, unix.EINVAL) ||
				errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOSYS) {
				return copyRW(dst, src, off, n)
			}
			return os.NewSyscallError("copy_file_range", err)
		}
		off += int64(c)
		n -= int64(c)
	}
	return nil
}

func copyRW(dst, src int, off, n int64) error {
	buf := make([]byte, 128*1024)
	for n > 0 {
		want := int(min(n, int64(len(buf))))
		var r int
		err := retry(func() error {
			var err error
			r, err = unix.Pread(src, buf[:want], off)
			return err
		})
		if err != nil {
			return os.NewSyscallError("pread", err)
		}
		if r == 0 {
			return io.ErrUnexpectedEOF
		}
		for w := 0; w < r; {
			var c int
			err := retry(func() error {
				var err error
				c, err = unix.Pwrite(dst, buf[w:r], off+int64(w))
				return err
			})
			if err != nil {
				return os.NewSyscallError("pwrite", err)
			}
			w += c
		}
		off += int64(r)
		n -= int64(r)
	}
	return nil
}
