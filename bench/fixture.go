package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// fixtureVersion changes whenever the layout of a fixture does, so that a
// cached one from an older harness is rebuilt.
const fixtureVersion = 3

// Stack is a stack of lower layers and the same content in one plain
// directory.
type Stack struct {
	Layers  []string `json:"layers"` // relative to the fixture, topmost first
	Merged  string   `json:"merged"` // the union's content, as a plain directory
	Entries int      `json:"entries"`
	Dirs    []string `json:"dirs"` // directories of the merged tree, for lookups
}

// Fixture is the set of lower layers every implementation mounts.
type Fixture struct {
	Version int               `json:"version"`
	Smoke   bool              `json:"smoke"`
	Sizes   Sizes             `json:"sizes"`
	Owners  string            `json:"owners"` // the id shift applied for rootless use
	Stacks  map[string]*Stack `json:"stacks"`
	Tarball string            `json:"tarball"`    // the rootfs tarball of the untar workload
	Source  string            `json:"source"`     // "minbase (bookworm)" or "synthetic"
	GoBuild string            `json:"go_build"`   // the package built by the gobuild workload
	GoFlags string            `json:"go_flags"`   // GOFLAGS of that build
	GoRoot  string            `json:"go_root"`    // the Go toolchain
	Dir     string            `json:"-"`          // where the fixture lives
	Created time.Time         `json:"created_at"` // when it was built
}

// Stack names.
const (
	stackRootfs   = "rootfs3"  // minbase in 3 layers
	stackRootfs20 = "rootfs20" // minbase in 20 layers
	stackBig      = "big"      // one large file in the bottom of 3 layers
	stackWide     = "wide"     // one directory of many entries over 3 layers
	stackSmall    = "small"    // 3 small layers, for writes of new files
	stackGo       = "gomod"    // a Go module over a seeded build cache
)

// Paths inside the stacks.
const (
	bigFile = "data/big"
	wideDir = "d"
	goSrc   = "src"
	goCache = "gocache"
)

// Path returns the absolute path of a fixture-relative path.
func (f *Fixture) Path(rel string) string { return filepath.Join(f.Dir, rel) }

// LayerPaths returns the absolute lower layers of a stack, topmost first.
func (f *Fixture) LayerPaths(stack string) []string {
	var out []string
	for _, l := range f.Stacks[stack].Layers {
		out = append(out, f.Path(l))
	}
	return out
}

// LoadOrBuildFixture returns the cached fixture for the mode, building it
// first if it is missing or stale. A fixture is built in a temporary
// directory and renamed into place, so an interrupted build leaves nothing
// that a later run would take for complete.
func LoadOrBuildFixture(ctx context.Context, cfg *Config, owners IDShift, log *slog.Logger) (*Fixture, error) {
	name := "fixture-full"
	if cfg.Smoke {
		name = "fixture-smoke"
	}
	dir := filepath.Join(cfg.CacheDir, name)
	if f, err := loadFixture(dir); err == nil && f.Version == fixtureVersion && f.Owners == owners.String() && f.Sizes == SizesFor(cfg.Smoke) {
		log.Info("fixture: cached", "dir", dir, "source", f.Source, "built", f.Created.Format(time.DateTime))
		return f, nil
	}
	log.Info("fixture: building", "dir", dir)
	tmp := dir + ".tmp"
	if err := removeAll(tmp); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return nil, err
	}
	f := &Fixture{Version: fixtureVersion, Smoke: cfg.Smoke, Sizes: SizesFor(cfg.Smoke), Owners: owners.String(),
		Stacks: map[string]*Stack{}, Dir: tmp, Created: time.Now().UTC()}
	if err := f.build(ctx, cfg, owners, log); err != nil {
		_ = removeAll(tmp)
		return nil, fmt.Errorf("build fixture: %w", err)
	}
	if err := writeJSON(filepath.Join(tmp, "fixture.json"), f); err != nil {
		return nil, err
	}
	if err := run(ctx, "sync"); err != nil {
		return nil, err
	}
	if err := removeAll(dir); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return nil, err
	}
	return loadFixture(dir)
}

func loadFixture(dir string) (*Fixture, error) {
	b, err := os.ReadFile(filepath.Join(dir, "fixture.json"))
	if err != nil {
		return nil, err
	}
	var f Fixture
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	f.Dir = dir
	return &f, nil
}

func (f *Fixture) build(ctx context.Context, cfg *Config, owners IDShift, log *slog.Logger) error {
	// The rootfs: a real minbase, or a synthetic tree in smoke mode.
	f.Tarball = "rootfs.tar"
	if cfg.Smoke {
		f.Source = fmt.Sprintf("synthetic tree of %d files", f.Sizes.SynthFiles)
		if err := writeSyntheticTar(f.Path(f.Tarball), f.Sizes.SynthFiles); err != nil {
			return err
		}
	} else {
		f.Source = fmt.Sprintf("Debian %s minbase (mmdebstrap)", cfg.Suite)
		raw, err := minbaseTarball(ctx, cfg, log)
		if err != nil {
			return err
		}
		// Device nodes are left out: nobody may make them in a user
		// namespace, and no workload reads them.
		if err := filterTar(raw, f.Path(f.Tarball)); err != nil {
			return err
		}
	}
	log.Info("fixture: splitting the rootfs into 3 and 20 layers")
	for _, s := range []struct {
		name string
		n    int
	}{{stackRootfs, 3}, {stackRootfs20, 20}} {
		full := f.Path(s.name + "/full")
		if err := os.MkdirAll(full, 0o755); err != nil {
			return err
		}
		if err := run(ctx, "tar", "-xpf", f.Path(f.Tarball), "-C", full, "--numeric-owner", "--same-owner"); err != nil {
			return err
		}
		st := &Stack{}
		for i := s.n - 1; i >= 0; i-- {
			st.Layers = append(st.Layers, fmt.Sprintf("%s/l%02d", s.name, i))
		}
		if err := splitTree(full, f.LayerPathsOf(st)); err != nil {
			return err
		}
		if err := removeAll(full); err != nil { // only directories are left
			return err
		}
		f.Stacks[s.name] = st
	}
	log.Info("fixture: big file, wide directory, small layers")
	if err := f.buildBig(); err != nil {
		return err
	}
	if err := f.buildWide(); err != nil {
		return err
	}
	if err := f.buildSmall(); err != nil {
		return err
	}
	log.Info("fixture: Go module and seeded build cache")
	if err := f.buildGo(ctx, cfg); err != nil {
		return err
	}
	log.Info("fixture: plain copies of the unions")
	for name, st := range f.Stacks {
		if name == stackRootfs20 {
			continue // same content as rootfs3
		}
		st.Merged = name + "/merged"
		if err := mergeLayers(ctx, f.LayerPathsOf(st), f.Path(st.Merged)); err != nil {
			return err
		}
	}
	f.Stacks[stackRootfs20].Merged = f.Stacks[stackRootfs].Merged
	if !owners.identity() {
		log.Info("fixture: shifting owners for the rootless user", "shift", owners.String())
		if err := owners.apply(f.Dir); err != nil {
			return err
		}
	}
	for _, st := range f.Stacks {
		n, dirs, err := countTree(f.Path(st.Merged))
		if err != nil {
			return err
		}
		st.Entries, st.Dirs = n, dirs
	}
	return nil
}

// LayerPathsOf is LayerPaths for a stack not yet in the fixture.
func (f *Fixture) LayerPathsOf(st *Stack) []string {
	var out []string
	for _, l := range st.Layers {
		out = append(out, f.Path(l))
	}
	return out
}

func (f *Fixture) threeLayers(name string) (*Stack, error) {
	st := &Stack{Layers: []string{name + "/l2", name + "/l1", name + "/l0"}}
	for _, l := range f.LayerPathsOf(st) {
		if err := os.MkdirAll(l, 0o755); err != nil {
			return nil, err
		}
	}
	f.Stacks[name] = st
	return st, nil
}

// buildBig writes the large file, pseudo-random so that no layer of the
// storage stack can compress or skip it, in the bottom layer.
func (f *Fixture) buildBig() error {
	st, err := f.threeLayers(stackBig)
	if err != nil {
		return err
	}
	ls := f.LayerPathsOf(st)
	for i, l := range ls[:2] {
		if err := os.WriteFile(filepath.Join(l, fmt.Sprintf("layer%d", i)), []byte("upper layer\n"), 0o644); err != nil {
			return err
		}
	}
	p := filepath.Join(ls[2], bigFile)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return writeRandomFile(p, f.Sizes.BigFile, false)
}

func writeRandomFile(path string, size int64, sync bool) error {
	fh, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if err := fillRandom(fh, size, sync); err != nil {
		fh.Close()
		return err
	}
	return fh.Close()
}

// buildWide spreads the entries of one directory over the three layers.
func (f *Fixture) buildWide() error {
	st, err := f.threeLayers(stackWide)
	if err != nil {
		return err
	}
	ls := f.LayerPathsOf(st)
	for _, l := range ls {
		if err := os.MkdirAll(filepath.Join(l, wideDir), 0o755); err != nil {
			return err
		}
	}
	for i := range f.Sizes.WideEntries {
		p := filepath.Join(ls[i%3], wideDir, fmt.Sprintf("entry-%05d", i))
		if err := os.WriteFile(p, []byte(strconv.Itoa(i)+"\n"), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func (f *Fixture) buildSmall() error {
	st, err := f.threeLayers(stackSmall)
	if err != nil {
		return err
	}
	for i, l := range f.LayerPathsOf(st) {
		d := filepath.Join(l, fmt.Sprintf("layer%d", i))
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(d, "file"), []byte("small\n"), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// splitTree moves the objects of src into the layers (as many as given),
// each to the layer its path hashes to, creating in each layer the
// directories it needs with the metadata of the originals.
func splitTree(src string, layers []string) error {
	type dirMeta struct {
		path string
		st   unix.Stat_t
	}
	var made []dirMeta
	have := map[string]bool{}
	var ensureDir func(layer int, rel string) error
	ensureDir = func(layer int, rel string) error {
		dst := filepath.Join(layers[layer], rel)
		if have[dst] {
			return nil
		}
		if rel != "." {
			if err := ensureDir(layer, filepath.Dir(rel)); err != nil {
				return err
			}
		}
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(src, rel), &st); err != nil {
			return &os.PathError{Op: "lstat", Path: filepath.Join(src, rel), Err: err}
		}
		if err := os.Mkdir(dst, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
		have[dst] = true
		made = append(made, dirMeta{dst, st})
		return nil
	}
	for i := range layers {
		if err := ensureDir(i, "."); err != nil {
			return err
		}
	}
	var moves [][2]string
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == src {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		h := fnv.New32a()
		h.Write([]byte(rel))
		layer := int(h.Sum32() % uint32(len(layers)))
		if d.IsDir() {
			return ensureDir(layer, rel)
		}
		if err := ensureDir(layer, filepath.Dir(rel)); err != nil {
			return err
		}
		moves = append(moves, [2]string{p, filepath.Join(layers[layer], rel)})
		return nil
	})
	if err != nil {
		return err
	}
	for _, m := range moves {
		if err := os.Rename(m[0], m[1]); err != nil {
			return err
		}
	}
	// Directory metadata last: the moves changed the times. Deepest first.
	for i := len(made) - 1; i >= 0; i-- {
		m := made[i]
		if err := os.Lchown(m.path, int(m.st.Uid), int(m.st.Gid)); err != nil {
			return err
		}
		if err := os.Chmod(m.path, fs.FileMode(m.st.Mode&0o777)|modeBits(m.st.Mode)); err != nil {
			return err
		}
		ts := []unix.Timespec{m.st.Atim, m.st.Mtim}
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, m.path, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return &os.PathError{Op: "utimensat", Path: m.path, Err: err}
		}
	}
	return nil
}

func modeBits(m uint32) fs.FileMode {
	var out fs.FileMode
	if m&unix.S_ISUID != 0 {
		out |= fs.ModeSetuid
	}
	if m&unix.S_ISGID != 0 {
		out |= fs.ModeSetgid
	}
	if m&unix.S_ISVTX != 0 {
		out |= fs.ModeSticky
	}
	return out
}

// mergeLayers copies the layers (no whiteouts in them) bottom up into one
// plain directory.
func mergeLayers(ctx context.Context, layers []string, dst string) error {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	for i := len(layers) - 1; i >= 0; i-- {
		if err := copyTree(ctx, layers[i], dst); err != nil {
			return err
		}
	}
	return nil
}

// copyTree copies the content of src into dst with everything kept.
func copyTree(ctx context.Context, src, dst string) error {
	return run(ctx, "cp", "-a", "--reflink=auto", src+"/.", dst+"/")
}

// countTree counts the objects below root and lists its directories.
func countTree(root string) (int, []string, error) {
	n := 0
	var dirs []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == root {
			dirs = append(dirs, ".")
			return nil
		}
		n++
		if d.IsDir() {
			rel, _ := filepath.Rel(root, p)
			dirs = append(dirs, rel)
		}
		return nil
	})
	return n, dirs, err
}

// removeAll removes a tree, refusing to descend into a mount.
func removeAll(p string) error {
	if _, err := os.Lstat(p); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return run(context.Background(), "rm", "-rf", "--one-file-system", p)
}

// fillRandom writes size pseudo-random bytes to w in 1 MiB writes.
func fillRandom(fh *os.File, size int64, sync bool) error {
	rng := rand.NewChaCha8([32]byte{'u', 'r', 'u', 'n'})
	buf := make([]byte, 1<<20)
	for size > 0 {
		n := min(int64(len(buf)), size)
		_, _ = rng.Read(buf[:n])
		if _, err := fh.Write(buf[:n]); err != nil {
			return err
		}
		size -= n
	}
	if sync {
		return fh.Sync()
	}
	return nil
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// ageTree sets the times of every object below root to age ago: the seeded
// Go build cache then looks as old as a container image usually is (the go
// command refreshes the time of cache entries older than an hour, which
// copies them up), the same in every run.
func ageTree(root string, age time.Duration) error {
	t := unix.NsecToTimespec(time.Now().Add(-age).UnixNano())
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return unix.UtimesNanoAt(unix.AT_FDCWD, p, []unix.Timespec{t, t}, unix.AT_SYMLINK_NOFOLLOW)
	})
}
