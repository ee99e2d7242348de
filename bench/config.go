package bench

import (
	"fmt"
	"io"
	"log/slog"
)

// Config says what to measure, where, and how often.
type Config struct {
	// CacheDir holds fixtures that survive runs (the minbase tarball and
	// the layers made from it).
	CacheDir string
	// ScratchDir holds uppers, work directories and mount points; it is
	// emptied as the run goes.
	ScratchDir string
	// ResultsDir receives results.json, results.md and the charts.
	ResultsDir string
	// SourceDir is this module's source, built inside the union by the
	// gobuild workload.
	SourceDir string

	Rounds    int      // measured rounds after the warm-up
	Workloads []string // names or families; empty means all
	Impls     []string // implementation names; empty means all
	Smoke     bool     // small synthetic fixtures, small sizes

	UfsBin       string // bin/ufs
	UrunBin      string // bin/urun; measured only if it exists
	RootlessUser string // the unprivileged user of the rootless figures
	Suite        string // Debian suite of the minbase (mmdebstrap)
	Mirror       string // Debian mirror for mmdebstrap

	Out    io.Writer // the Markdown report
	Logger *slog.Logger
}

// Sizes are the workload sizes of a run.
type Sizes struct {
	BigFile     int64 `json:"big_file"`     // the lower file read, copied up and chmodded
	Write       int64 `json:"write"`        // the new file written
	RandRead    int64 `json:"rand_read"`    // bytes read by fio in 4k blocks
	WideEntries int   `json:"wide_entries"` // entries of the readdir/unlink directory
	Lookups     int   `json:"lookups"`      // lookups of names that do not exist
	SynthFiles  int   `json:"synth_files"`  // files of the synthetic rootfs (smoke)
}

// SizesFor returns the sizes, or the small ones of smoke mode.
func SizesFor(smoke bool) Sizes {
	if smoke {
		return Sizes{BigFile: 16 << 20, Write: 16 << 20, RandRead: 4 << 20, WideEntries: 500, Lookups: 500, SynthFiles: 600}
	}
	return Sizes{BigFile: 1 << 30, Write: 1 << 30, RandRead: 256 << 20, WideEntries: 10000, Lookups: 10000}
}

func (c *Config) validate() error {
	if c.Rounds < 1 {
		return fmt.Errorf("rounds %d: need at least 1", c.Rounds)
	}
	if c.CacheDir == "" || c.ScratchDir == "" || c.ResultsDir == "" {
		return fmt.Errorf("cache, scratch and results directories must all be set")
	}
	return nil
}
