package bench

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// minbaseTarball returns the cached mmdebstrap minbase tarball, making it
// first (from the Debian mirror) if it is not there.
func minbaseTarball(ctx context.Context, cfg *Config, log *slog.Logger) (string, error) {
	p := filepath.Join(cfg.CacheDir, cfg.Suite+"-minbase.tar")
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	log.Info("fixture: mmdebstrap minbase", "suite", cfg.Suite, "mirror", cfg.Mirror)
	tmp := p + ".tmp"
	_ = os.Remove(tmp)
	err := run(ctx, "mmdebstrap", "--quiet", "--variant=minbase", "--format=tar", cfg.Suite, tmp, cfg.Mirror)
	if err != nil {
		_ = os.Remove(tmp)
		return "", fmt.Errorf("make the minbase rootfs (install mmdebstrap: make deps-bench): %w", err)
	}
	return p, os.Rename(tmp, p)
}

// filterTar copies the tarball src to dst without device nodes and fifos.
func filterTar(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	tr, tw := tar.NewReader(in), tar.NewWriter(out)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			out.Close()
			return fmt.Errorf("read %s: %w", src, err)
		}
		switch h.Typeflag {
		case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
			continue
		}
		if err := tw.WriteHeader(h); err != nil {
			out.Close()
			return err
		}
		if _, err := io.Copy(tw, tr); err != nil {
			out.Close()
			return err
		}
	}
	if err := tw.Close(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// writeSyntheticTar writes a small rootfs-like tree: nested directories,
// files of a few hundred bytes to a few KiB, symlinks and a hard link.
func writeSyntheticTar(dst string, files int) error {
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(out)
	mtime := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	add := func(h *tar.Header, body []byte) error {
		h.ModTime, h.Format = mtime, tar.FormatPAX
		h.Size = int64(len(body))
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		_, err := tw.Write(body)
		return err
	}
	dirs := map[string]bool{}
	mkdirs := func(p string) error {
		var parts []string
		for d := filepath.Dir(p); d != "."; d = filepath.Dir(d) {
			parts = append(parts, d)
		}
		for i := len(parts) - 1; i >= 0; i-- {
			if dirs[parts[i]] {
				continue
			}
			dirs[parts[i]] = true
			if err := add(&tar.Header{Name: "./" + parts[i] + "/", Typeflag: tar.TypeDir, Mode: 0o755}, nil); err != nil {
				return err
			}
		}
		return nil
	}
	top := []string{"usr/lib", "usr/share/doc", "etc", "var/lib/dpkg/info", "usr/bin"}
	for i := range files {
		p := fmt.Sprintf("%s/pkg%02d/file%04d", top[i%len(top)], i%17, i)
		if err := mkdirs(p); err != nil {
			return err
		}
		body := []byte(strings.Repeat(fmt.Sprintf("line %d of %s\n", i, p), 10+i%200))
		mode := int64(0o644)
		if i%7 == 0 {
			mode = 0o755
		}
		if err := add(&tar.Header{Name: "./" + p, Typeflag: tar.TypeReg, Mode: mode}, body); err != nil {
			return err
		}
		if i%10 == 0 {
			if err := add(&tar.Header{Name: "./" + p + ".link", Typeflag: tar.TypeSymlink, Linkname: filepath.Base(p), Mode: 0o777}, nil); err != nil {
				return err
			}
		}
		if i == 1 {
			if err := add(&tar.Header{Name: "./" + p + ".hard", Typeflag: tar.TypeLink, Linkname: "./" + p}, nil); err != nil {
				return err
			}
		}
	}
	if err := tw.Close(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// copyModule copies the non-test Go sources of the packages that cmd/ufs
// needs, with go.mod and go.sum, from the repository to dst.
func copyModule(src, dst string) error {
	for _, f := range []string{"go.mod", "go.sum"} {
		if err := copyFile(filepath.Join(src, f), filepath.Join(dst, f)); err != nil {
			return fmt.Errorf("copy the module to build (--source %s): %w", src, err)
		}
	}
	for _, d := range []string{"cmd/ufs", "fusefs", "internal/sys", "internal/cleanup"} {
		err := filepath.WalkDir(filepath.Join(src, d), func(p string, e fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if e.IsDir() && e.Name() == "testdata" {
				return filepath.SkipDir
			}
			if e.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
				return nil
			}
			rel, _ := filepath.Rel(src, p)
			return copyFile(p, filepath.Join(dst, rel))
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o644)
}
