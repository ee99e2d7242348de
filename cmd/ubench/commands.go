package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/urun-dev/urun/bench"
)

type commonFlags struct {
	Results  string   `default:"results" help:"Where results.json, results.md and the charts go (a dated subdirectory, and latest/)." type:"path"`
	Cache    string   `default:"results/cache" help:"Fixtures kept between runs (the minbase tarball and its layers)." type:"path"`
	Scratch  string   `default:"results/scratch" help:"Uppers and mount points of the run." type:"path"`
	Rounds   int      `default:"5" help:"Measured rounds after the warm-up."`
	Smoke    bool     `help:"One round, small sizes, a synthetic tree instead of the minbase: checks that the harness works."`
	Workload []string `short:"w" help:"Workloads or families to run (default all); repeat or comma-separate." sep:","`
	Impl     []string `help:"Implementations to run (default all): plain, overlayfs, fuse-overlayfs, ufs, overlayfs-rootless, fuse-overlayfs-rootless, ufs-rootless, and for the copy-up workloads overlayfs-metacopy, ufs-metacopy; for run: bwrap, crun, runc, podman-overlay, podman-fuse-overlayfs, podman-ufs, urun." sep:","`
	Ufs      string   `default:"bin/ufs" help:"The ufs binary." type:"path"`
	Urun     string   `default:"bin/urun" help:"The urun binary (measured if it exists)." type:"path"`
	User     string   `default:"urun-test" help:"The unprivileged user of the rootless figures (made by scripts/rootless-setup.sh)."`
	Suite    string   `default:"bookworm" help:"Debian suite of the minbase."`
	Mirror   string   `default:"http://deb.debian.org/debian" help:"Debian mirror for mmdebstrap."`
	Source   string   `default:"." help:"This module's source, built by the gobuild workload." type:"path"`
	Verbose  bool     `short:"v" help:"Log every sample."`
}

func (c *commonFlags) config() *bench.Config {
	level := slog.LevelWarn
	if c.Verbose {
		level = slog.LevelInfo
	}
	rounds := c.Rounds
	if c.Smoke {
		rounds = 1
	}
	return &bench.Config{
		CacheDir: c.Cache, ScratchDir: c.Scratch, ResultsDir: c.Results, SourceDir: c.Source,
		Rounds: rounds, Workloads: c.Workload, Impls: c.Impl, Smoke: c.Smoke,
		UfsBin: c.Ufs, UrunBin: c.Urun, RootlessUser: c.User, Suite: c.Suite, Mirror: c.Mirror,
		Out: os.Stdout, Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})),
	}
}

type fsCmd struct{ commonFlags }

func (c *fsCmd) Run(ctx context.Context) error { return runParts(ctx, &c.commonFlags, true, false) }

type runCmd struct{ commonFlags }

func (c *runCmd) Run(ctx context.Context) error { return runParts(ctx, &c.commonFlags, false, true) }

type allCmd struct{ commonFlags }

func (c *allCmd) Run(ctx context.Context) error { return runParts(ctx, &c.commonFlags, true, true) }

// runParts runs the chosen parts and writes the report even when a part
// was interrupted or failed half-way, so that what was measured is kept.
func runParts(ctx context.Context, c *commonFlags, fs, rt bool) error {
	cfg := c.config()
	rep := bench.NewReport(cfg.Smoke)
	var err error
	if fs {
		err = bench.RunFS(ctx, cfg, rep)
	}
	if rt && err == nil {
		err = bench.RunRuntime(ctx, cfg, rep)
	}
	rep.CheckTargets()
	rep.WriteMarkdown(os.Stdout)
	dir := filepath.Join(cfg.ResultsDir, rep.Date.Format("20060102-150405"))
	if werr := rep.Save(dir); werr != nil {
		return fmt.Errorf("save results: %w", werr)
	}
	latest := filepath.Join(cfg.ResultsDir, "latest")
	_ = os.Remove(latest)
	_ = os.Symlink(filepath.Base(dir), latest)
	fmt.Fprintf(os.Stderr, "ubench: results in %s (%s)\n", dir, time.Since(rep.Date).Round(time.Second))
	return err
}

type agentCmd struct {
	Fixture string `help:"The fixture (empty: the agent only runs commands)."`
	Scratch string
	Ufs     string
}

func (a *agentCmd) Run(ctx context.Context) error {
	// The agent ends when the harness closes its stdin, not on a signal:
	// the harness decides when the mounts go.
	return bench.ServeAgent(context.WithoutCancel(ctx), bench.AgentConfig{FixtureDir: a.Fixture, ScratchDir: a.Scratch, UfsBin: a.Ufs}, os.Stdin, os.Stdout)
}
