package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/urun-dev/urun/internal/sys"
	"golang.org/x/sys/unix"
)

// wenv is what a workload sees of its instance.
type wenv struct {
	root  string // the union (or plain directory)
	upper string // its upper layer, "" for plain
	fx    *Fixture
	stack *Stack
}

// Sample is the outcome of one timed step.
type Sample struct {
	Dur  time.Duration `json:"ns"`
	Note string        `json:"note,omitempty"`
}

// Workload is one measurement: an untimed preparation and a timed step.
type Workload struct {
	Name    string
	Family  string
	Title   string
	Stack   string
	Mutates bool // changes existing objects (plain gets a private copy)
	Cold    bool // caches are dropped between Prep and Run
	// Prep runs untimed on a fresh instance and returns Run's state.
	Prep func(ctx context.Context, e *wenv) (any, error)
	// Run is the timed step; it checks its own result and may return a
	// note for the report (as whether a copy-up copied data). A Sample
	// with a duration replaces the wall time of the step (fio reports the
	// time of its reads, without its own start-up).
	Run func(ctx context.Context, e *wenv, state any) (Sample, error)
}

// Families, in report order.
const (
	famMeta = "metadata"
	famData = "data"
	famCopy = "copy-up"
	famTree = "trees"
)

// Families lists the workload families in report order.
var Families = []string{famMeta, famData, famCopy, famTree}

// Workloads are the filesystem workloads, in report order.
var Workloads = []*Workload{
	{Name: "statwalk-cold", Family: famMeta, Title: "stat walk, cold", Stack: stackRootfs, Cold: true, Run: runStatWalk},
	{Name: "statwalk-warm", Family: famMeta, Title: "stat walk, warm", Stack: stackRootfs, Prep: prepStatWalk, Run: runStatWalk},
	{Name: "statwalk20-cold", Family: famMeta, Title: "stat walk, 20 layers, cold", Stack: stackRootfs20, Cold: true, Run: runStatWalk},
	{Name: "lookup-missing20", Family: famMeta, Title: "lookups of missing names, 20 layers", Stack: stackRootfs20, Prep: prepMissing, Run: runMissing},
	{Name: "readdir", Family: famMeta, Title: "readdir of a wide directory", Stack: stackWide, Run: runReaddir},
	{Name: "unlink", Family: famMeta, Title: "unlink of every lower file of a wide directory", Stack: stackWide, Mutates: true, Run: runUnlink},
	{Name: "seqread-cold", Family: famData, Title: "sequential read of the big lower file, cold", Stack: stackBig, Cold: true, Run: runSeqRead},
	{Name: "seqread-warm", Family: famData, Title: "sequential read of the big lower file, warm", Stack: stackBig, Prep: prepSeqRead, Run: runSeqRead},
	{Name: "randread", Family: famData, Title: "random 4k reads of the big lower file (fio, warm)", Stack: stackBig, Prep: prepSeqRead, Run: runRandRead},
	{Name: "seqwrite", Family: famData, Title: "sequential write of a new file", Stack: stackSmall, Mutates: true, Prep: prepWrite, Run: runWrite(false)},
	{Name: "seqwrite-fsync", Family: famData, Title: "sequential write of a new file, fsync", Stack: stackSmall, Mutates: true, Prep: prepWrite, Run: runWrite(true)},
	{Name: "copyup-append", Family: famCopy, Title: "append 1 byte to the big lower file", Stack: stackBig, Mutates: true, Run: runAppend},
	{Name: "copyup-chmod", Family: famCopy, Title: "chmod of the big lower file", Stack: stackBig, Mutates: true, Run: runChmod},
	{Name: "untar", Family: famTree, Title: "untar the rootfs into the union", Stack: stackSmall, Mutates: true, Run: runUntar},
	{Name: "tarc", Family: famTree, Title: "tar c of the whole union", Stack: stackRootfs, Run: runTarC},
	{Name: "gobuild", Family: famTree, Title: "go build of a module in the union", Stack: stackGo, Mutates: true, Prep: prepGoBuild, Run: runGoBuild},
}

// WorkloadByName returns the workload called name, or nil.
func WorkloadByName(name string) *Workload {
	for _, w := range Workloads {
		if w.Name == name {
			return w
		}
	}
	return nil
}

// statWalk fstatats every object below root and returns how many it saw.
func statWalk(root string) (int, error) {
	fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return 0, &os.PathError{Op: "open", Path: root, Err: err}
	}
	return walkFD(fd, root)
}

func walkFD(fd int, path string) (int, error) {
	defer unix.Close(fd)
	ents, err := sys.ReadDir(fd)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	n := 0
	var st unix.Stat_t
	for _, e := range ents {
		if err := sys.Fstatat(fd, e.Name, &st); err != nil {
			return n, fmt.Errorf("%s: %w", path, err)
		}
		n++
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			continue
		}
		sub, err := unix.Openat(fd, e.Name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
		if err != nil {
			return n, &os.PathError{Op: "openat", Path: filepath.Join(path, e.Name), Err: err}
		}
		m, err := walkFD(sub, filepath.Join(path, e.Name))
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func prepStatWalk(_ context.Context, e *wenv) (any, error) {
	_, err := statWalk(e.root)
	return nil, err
}

func runStatWalk(_ context.Context, e *wenv, _ any) (Sample, error) {
	n, err := statWalk(e.root)
	if err != nil {
		return Sample{}, err
	}
	if want := e.stack.Entries; n != want {
		return Sample{}, fmt.Errorf("stat walk saw %d objects, the plain copy has %d", n, want)
	}
	return Sample{}, nil
}

func prepMissing(_ context.Context, e *wenv) (any, error) {
	if _, err := statWalk(e.root); err != nil {
		return nil, err
	}
	dirs := e.stack.Dirs
	paths := make([]string, e.fx.Sizes.Lookups)
	for i := range paths {
		paths[i] = filepath.Join(e.root, dirs[i%len(dirs)], "missing-"+strconv.Itoa(i))
	}
	return paths, nil
}

func runMissing(_ context.Context, _ *wenv, state any) (Sample, error) {
	var st unix.Stat_t
	for _, p := range state.([]string) {
		if err := unix.Lstat(p, &st); !errors.Is(err, unix.ENOENT) {
			return Sample{}, fmt.Errorf("lstat %s: want ENOENT, got %v", p, err)
		}
	}
	return Sample{}, nil
}

func readWide(e *wenv) (int, []sys.Dirent, error) {
	p := filepath.Join(e.root, wideDir)
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return -1, nil, &os.PathError{Op: "open", Path: p, Err: err}
	}
	ents, err := sys.ReadDir(fd)
	if err != nil {
		unix.Close(fd)
		return -1, nil, err
	}
	if len(ents) != e.fx.Sizes.WideEntries {
		unix.Close(fd)
		return -1, nil, fmt.Errorf("readdir %s: %d entries, want %d", p, len(ents), e.fx.Sizes.WideEntries)
	}
	return fd, ents, nil
}

func runReaddir(_ context.Context, e *wenv, _ any) (Sample, error) {
	fd, _, err := readWide(e)
	if err != nil {
		return Sample{}, err
	}
	return Sample{}, unix.Close(fd)
}

func runUnlink(_ context.Context, e *wenv, _ any) (Sample, error) {
	fd, ents, err := readWide(e)
	if err != nil {
		return Sample{}, err
	}
	defer unix.Close(fd)
	for _, d := range ents {
		if err := sys.Unlinkat(fd, d.Name, 0); err != nil {
			return Sample{}, err
		}
	}
	return Sample{}, nil
}

func readAll(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	var n int64
	for {
		m, err := f.Read(buf)
		n += int64(m)
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

func prepSeqRead(_ context.Context, e *wenv) (any, error) {
	_, err := readAll(filepath.Join(e.root, bigFile))
	return nil, err
}

func runSeqRead(_ context.Context, e *wenv, _ any) (Sample, error) {
	n, err := readAll(filepath.Join(e.root, bigFile))
	if err != nil {
		return Sample{}, err
	}
	if n != e.fx.Sizes.BigFile {
		return Sample{}, fmt.Errorf("read %d bytes of %s, want %d", n, bigFile, e.fx.Sizes.BigFile)
	}
	return Sample{}, nil
}

// fioResult is the part of fio's JSON output the randread workload reads.
type fioResult struct {
	Jobs []struct {
		Error int `json:"error"`
		Read  struct {
			TotalIOs int64 `json:"total_ios"`
			LatNS    struct {
				Mean float64 `json:"mean"`
			} `json:"lat_ns"`
		} `json:"read"`
	} `json:"jobs"`
}

// runRandRead reports the time fio's reads took: the mean latency times
// the number of reads (fio's own start-up is not part of it).
func runRandRead(ctx context.Context, e *wenv, _ any) (Sample, error) {
	out, err := output(ctx, nil, "fio", "--name=randread", "--filename="+filepath.Join(e.root, bigFile),
		"--readonly", "--rw=randread", "--bs=4k", "--ioengine=psync", "--invalidate=0",
		"--size="+strconv.FormatInt(e.fx.Sizes.BigFile, 10), "--io_size="+strconv.FormatInt(e.fx.Sizes.RandRead, 10),
		"--randrepeat=1", "--norandommap", "--output-format=json")
	if err != nil {
		return Sample{}, err
	}
	var r fioResult
	if err := json.Unmarshal(out, &r); err != nil {
		return Sample{}, fmt.Errorf("parse fio output: %w", err)
	}
	if len(r.Jobs) != 1 || r.Jobs[0].Error != 0 {
		return Sample{}, fmt.Errorf("fio: unexpected result %s", out)
	}
	j := r.Jobs[0]
	if want := e.fx.Sizes.RandRead / 4096; j.Read.TotalIOs != want {
		return Sample{}, fmt.Errorf("fio did %d reads, want %d", j.Read.TotalIOs, want)
	}
	return Sample{Dur: time.Duration(j.Read.LatNS.Mean * float64(j.Read.TotalIOs))}, nil
}

func prepWrite(_ context.Context, _ *wenv) (any, error) {
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i*7 + i>>8)
	}
	return buf, nil
}

func runWrite(fsync bool) func(context.Context, *wenv, any) (Sample, error) {
	return func(_ context.Context, e *wenv, state any) (Sample, error) {
		buf := state.([]byte)
		f, err := os.OpenFile(filepath.Join(e.root, "newfile"), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			return Sample{}, err
		}
		for left := e.fx.Sizes.Write; left > 0; left -= int64(len(buf)) {
			if _, err := f.Write(buf[:min(left, int64(len(buf)))]); err != nil {
				f.Close()
				return Sample{}, err
			}
		}
		if fsync {
			if err := f.Sync(); err != nil {
				f.Close()
				return Sample{}, err
			}
		}
		return Sample{}, f.Close()
	}
}

// copiedNote says whether the upper holds the big file's data after a
// copy-up: "data copied" or "metadata only".
func copiedNote(e *wenv) string {
	if e.upper == "" {
		return ""
	}
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(e.upper, bigFile), &st); err != nil {
		return "no copy in the upper"
	}
	if st.Blocks*512 >= e.fx.Sizes.BigFile/2 {
		return "data copied"
	}
	return "metadata only"
}

func runAppend(_ context.Context, e *wenv, _ any) (Sample, error) {
	f, err := os.OpenFile(filepath.Join(e.root, bigFile), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return Sample{}, err
	}
	if _, err := f.Write([]byte{'!'}); err != nil {
		f.Close()
		return Sample{}, err
	}
	if err := f.Close(); err != nil {
		return Sample{}, err
	}
	return Sample{Note: copiedNote(e)}, nil
}

func runChmod(_ context.Context, e *wenv, _ any) (Sample, error) {
	if err := os.Chmod(filepath.Join(e.root, bigFile), 0o600); err != nil {
		return Sample{}, err
	}
	return Sample{Note: copiedNote(e)}, nil
}

func runUntar(ctx context.Context, e *wenv, _ any) (Sample, error) {
	dst := filepath.Join(e.root, "untar")
	if err := os.Mkdir(dst, 0o755); err != nil {
		return Sample{}, err
	}
	return Sample{}, run(ctx, "tar", "-xpf", e.fx.Path(e.fx.Tarball), "-C", dst, "--numeric-owner", "--same-owner")
}

// countWriter counts what tar writes and throws it away.
type countWriter int64

func (c *countWriter) Write(p []byte) (int, error) { *c += countWriter(len(p)); return len(p), nil }

func runTarC(ctx context.Context, e *wenv, _ any) (Sample, error) {
	var n countWriter
	cmd := command(ctx, "tar", "-cf", "-", "-C", e.root, ".")
	cmd.Stdout = &n
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return Sample{}, cmdError(cmd, err, stderr.Bytes())
	}
	if n < 10240 {
		return Sample{}, fmt.Errorf("tar wrote only %d bytes", n)
	}
	return Sample{}, nil
}

func prepGoBuild(_ context.Context, e *wenv) (any, error) {
	return nil, os.Mkdir(filepath.Join(e.root, "home"), 0o755)
}

func runGoBuild(ctx context.Context, e *wenv, _ any) (Sample, error) {
	out := filepath.Join(e.root, "out", "prog")
	cmd := command(ctx, filepath.Join(e.fx.GoRoot, "bin", "go"), "build", "-o", out, e.fx.GoBuild)
	cmd.Dir = filepath.Join(e.root, goSrc)
	cmd.Env = goEnv(e.fx.GoRoot, filepath.Join(e.root, "home"), filepath.Join(e.root, goCache), e.fx.GoFlags)
	if b, err := cmd.CombinedOutput(); err != nil {
		return Sample{}, cmdError(cmd, err, b)
	}
	if _, err := os.Stat(out); err != nil {
		return Sample{}, fmt.Errorf("go build made no binary: %w", err)
	}
	return Sample{}, nil
}
