package bench

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/urun-dev/urun/internal/cleanup"
	"golang.org/x/sys/unix"
)

// Result is the figures of one implementation on one workload.
type Result struct {
	Workload string          `json:"workload"`
	Impl     string          `json:"impl"`
	Samples  []time.Duration `json:"samples_ns"`
	Notes    []string        `json:"notes,omitempty"`
	Err      string          `json:"error,omitempty"`
	Median   time.Duration   `json:"median_ns"`
	Min      time.Duration   `json:"min_ns"`
	Max      time.Duration   `json:"max_ns"`
	// Phases are urun's own phases per sample, in ms (URUN_TRACE).
	Phases map[string][]float64 `json:"phases_ms,omitempty"`
}

// Skip says why an implementation was not measured at all.
type Skip struct {
	Impl   string `json:"impl"`
	Reason string `json:"reason"`
}

// selectWorkloads picks workloads by name or family; empty means all.
func selectWorkloads(names []string) ([]*Workload, error) {
	if len(names) == 0 {
		return Workloads, nil
	}
	var out []*Workload
	for _, n := range names {
		found := false
		for _, w := range Workloads {
			if (w.Name == n || w.Family == n) && !slices.Contains(out, w) {
				out = append(out, w)
				found = true
			}
		}
		if !found && !slices.ContainsFunc(Workloads, func(w *Workload) bool { return w.Name == n || w.Family == n }) {
			return nil, fmt.Errorf("unknown workload or family %q (known: %s)", n, workloadNames())
		}
	}
	return out, nil
}

func workloadNames() string {
	s := append([]string(nil), Families...)
	for _, w := range Workloads {
		s = append(s, w.Name)
	}
	return strings.Join(s, ", ")
}

// RunFS runs the filesystem part and returns its results.
func RunFS(ctx context.Context, cfg *Config, rep *Report) error {
	log := cfg.Logger
	if err := cfg.validate(); err != nil {
		return err
	}
	ws, err := selectWorkloads(cfg.Workloads)
	if err != nil {
		return err
	}
	var undo cleanup.Stack
	defer undo.Run()

	root := os.Geteuid() == 0
	impls, skips := availableImpls(cfg, root)
	rep.Skips = append(rep.Skips, skips...)

	// The rootless user: urun-test as root, ourselves otherwise.
	var shift IDShift
	rootlessUser := cfg.RootlessUser
	if !root {
		rootlessUser = os.Getenv("USER")
	}
	if hasRootless(impls) {
		if shift, err = LookupIDShift(rootlessUser); err != nil {
			impls, skips = dropRootless(impls, err.Error())
			rep.Skips = append(rep.Skips, skips...)
		}
	}
	fx, err := LoadOrBuildFixture(ctx, cfg, shift, log)
	if err != nil {
		return err
	}
	rep.Fixture = fx.Source
	rep.Sizes = fx.Sizes
	if err := ageTree(filepath.Join(fx.Path(fx.Stacks[stackGo].Layers[1]), goCache), 2*time.Hour); err != nil {
		return err
	}

	scratch, err := prepareScratch(cfg.ScratchDir, shift)
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	// As root, the root implementations mount in an agent of their own, in
	// a private mount namespace; otherwise only the plain directory runs
	// here, in this process.
	var local Executor = newLocalExecutor(fx, filepath.Join(scratch, "root"), cfg.UfsBin)
	if root {
		if local, err = startAgent(ctx, self, shift, AgentConfig{FixtureDir: fx.Dir, ScratchDir: filepath.Join(scratch, "root"), UfsBin: cfg.UfsBin, MountNS: true}); err != nil {
			return err
		}
	}
	undo.Add(func() {
		if err := local.Shutdown(); err != nil {
			log.Error("cleanup", "err", err)
		}
	})
	var agent *agentExecutor
	if hasRootless(impls) {
		agent, err = startAgent(ctx, self, shift, AgentConfig{FixtureDir: fx.Dir, ScratchDir: filepath.Join(scratch, "rootless"), UfsBin: cfg.UfsBin, AsUser: true, UserNS: true})
		if err != nil {
			impls, skips = dropRootless(impls, "the rootless agent did not start: "+err.Error())
			rep.Skips = append(rep.Skips, skips...)
		} else {
			rep.Notes = append(rep.Notes, fmt.Sprintf("rootless implementations run as %s in a user namespace made with unshare/newuidmap (%s)", shift.User, agent.Info))
			undo.Add(func() {
				if err := agent.Shutdown(); err != nil {
					log.Error("cleanup", "err", err)
				}
			})
		}
	}
	exec := func(impl Impl) Executor {
		if impl.Rootless {
			return agent
		}
		return local
	}
	if !root {
		rep.Notes = append(rep.Notes, "caches were not dropped for the cold workloads: not root")
	}
	rep.Impls = impls
	warm := 1
	if cfg.Smoke {
		warm = 0
	}
	rep.Rounds, rep.Warmup = cfg.Rounds, warm
	for _, w := range ws {
		results := map[string]*Result{}
		for _, impl := range impls {
			if !impl.runs(w) {
				continue
			}
			r := &Result{Workload: w.Name, Impl: impl.Name}
			results[impl.Name] = r
			rep.Results = append(rep.Results, r)
		}
		for round := range warm + cfg.Rounds {
			for _, impl := range impls {
				r := results[impl.Name]
				if r == nil || r.Err != "" {
					continue
				}
				if err := ctx.Err(); err != nil {
					return err
				}
				s, closeErr, err := measure(ctx, exec(impl), impl, w, root)
				if closeErr != nil {
					// The figure stands; the harness's own trouble is reported.
					msg := fmt.Sprintf("%s on %s, round %d: teardown: %v", impl.Name, w.Name, round-warm+1, closeErr)
					rep.Warnings = append(rep.Warnings, msg)
					log.Warn("teardown", "msg", msg)
				}
				if err != nil {
					if ctx.Err() != nil {
						return ctx.Err()
					}
					r.Err = err.Error()
					log.Warn("failed", "workload", w.Name, "impl", impl.Name, "err", err)
					continue
				}
				log.Info("sample", "workload", w.Name, "impl", impl.Name, "round", round-warm+1, "time", s.Dur.Round(time.Microsecond), "note", s.Note)
				if round < warm {
					continue
				}
				r.Samples = append(r.Samples, s.Dur)
				if s.Note != "" && !slices.Contains(r.Notes, s.Note) {
					r.Notes = append(r.Notes, s.Note)
				}
			}
		}
		for _, r := range results {
			r.summarize()
		}
	}
	return nil
}

// measure opens an instance, drops caches for a cold workload, runs the
// timed step and closes the instance. An error of the close is returned
// apart: it does not void the figure.
func measure(ctx context.Context, ex Executor, impl Impl, w *Workload, root bool) (s Sample, closeErr, err error) {
	id, err := ex.Open(ctx, impl, w.Name)
	if err != nil {
		return Sample{}, nil, err
	}
	defer func() { closeErr = ex.Close(ctx, id) }()
	if w.Cold && root {
		if err := dropCaches(); err != nil {
			return Sample{}, nil, err
		}
	}
	s, err = ex.Measure(ctx, id)
	return s, nil, err
}

// dropCaches writes back dirty pages and drops the page, dentry and inode
// caches.
func dropCaches() error {
	unix.Sync()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0); err != nil {
		return fmt.Errorf("drop caches: %w", err)
	}
	return nil
}

func (r *Result) summarize() {
	if len(r.Samples) == 0 {
		return
	}
	s := slices.Clone(r.Samples)
	slices.Sort(s)
	r.Min, r.Max = s[0], s[len(s)-1]
	if len(s)%2 == 1 {
		r.Median = s[len(s)/2]
	} else {
		r.Median = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
}

func hasRootless(impls []Impl) bool {
	return slices.ContainsFunc(impls, func(i Impl) bool { return i.Rootless })
}

func dropRootless(impls []Impl, reason string) ([]Impl, []Skip) {
	var keep []Impl
	var skips []Skip
	for _, i := range impls {
		if i.Rootless {
			skips = append(skips, Skip{i.Name, reason})
		} else {
			keep = append(keep, i)
		}
	}
	return keep, skips
}

// availableImpls returns the selected implementations that can run here,
// and a reason for each that cannot.
func availableImpls(cfg *Config, root bool) ([]Impl, []Skip) {
	var impls []Impl
	var skips []Skip
	for _, i := range FSImpls {
		if len(cfg.Impls) > 0 && !slices.Contains(cfg.Impls, i.Name) {
			continue
		}
		reason := ""
		switch {
		case !root && !i.Rootless && i.Kind != "plain":
			reason = "needs root"
		case i.Kind == "fuse-overlayfs":
			if _, err := exec.LookPath("fuse-overlayfs"); err != nil {
				reason = "fuse-overlayfs is not installed (make deps-bench)"
			}
		case i.Kind == "ufs":
			if _, err := os.Stat(cfg.UfsBin); err != nil {
				reason = fmt.Sprintf("no ufs binary at %s (make build)", cfg.UfsBin)
			}
		}
		if reason != "" {
			skips = append(skips, Skip{i.Name, reason})
			continue
		}
		impls = append(impls, i)
	}
	return impls, skips
}

// prepareScratch empties the scratch directory (detaching what an
// interrupted run may have left mounted there) and makes the directories of
// the local and the rootless instances.
func prepareScratch(dir string, shift IDShift) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	if b, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		var stale []string
		for line := range strings.Lines(string(b)) {
			f := strings.Fields(line)
			if len(f) > 4 && strings.HasPrefix(unescapeMount(f[4]), dir+"/") {
				stale = append(stale, unescapeMount(f[4]))
			}
		}
		slices.Sort(stale)
		for _, m := range slices.Backward(stale) {
			slog.Warn("detaching a stale mount", "mount", m)
			_ = unix.Unmount(m, unix.MNT_DETACH)
		}
	}
	if err := removeAll(dir); err != nil {
		return "", err
	}
	for _, d := range []string{"root", "rootless"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return "", err
		}
	}
	if !shift.identity() && os.Geteuid() == 0 {
		if err := os.Chown(filepath.Join(dir, "rootless"), shift.UID, shift.GID); err != nil {
			return "", err
		}
	}
	return dir, nil
}
