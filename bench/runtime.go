package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/urun-dev/urun/internal/cleanup"
)

// commandRunner runs a command as the unprivileged user, timed end to end.
type commandRunner interface {
	Exec(argv, env []string, dir string) (Sample, string, error)
}

// selfRunner runs commands as ourselves (when we are the unprivileged user).
type selfRunner struct{ ctx context.Context }

func (s selfRunner) Exec(argv, env []string, dir string) (Sample, string, error) {
	return timeCommand(s.ctx, argv, env, dir)
}

// rtEnv is what a runtime's set-up sees.
type rtEnv struct {
	run     commandRunner
	dir     string   // scratch directory of the runtime part, the user's
	rootfs  string   // the container's root filesystem, a directory
	tarball string   // the same as a tarball (podman import)
	env     []string // the user's environment
	cfg     *Config
}

// rtImpl is one way to run `true` in a container.
type rtImpl struct {
	name, label string
	issue       string // the issue's figure for it
	// setup prepares (untimed) and returns the command of round n.
	setup func(ctx context.Context, e *rtEnv, self string) (func(n int) []string, func() error, error)
}

var rtImpls = []rtImpl{
	{"bwrap", "bwrap", "≈5 ms", setupBwrap},
	{"crun", "crun (OCI bundle, no cgroup; in crun-wrap)", "≈13 ms", setupOCI("crun")},
	{"crun-wrap", "crun-wrap: unshare -Urm -C + cgroup2 mount, /bin/true", "", setupWrap},
	{"runc", "runc (OCI bundle, no cgroup)", "", setupOCI("runc")},
	{"podman-overlay", "podman run --rm (native overlay, runc)", "≈240 ms", setupPodman("")},
	{"podman-fuse-overlayfs", "podman run --rm (fuse-overlayfs, runc)", "", setupPodman("fuse-overlayfs")},
	{"podman-ufs", "podman run --rm (ufs as mount_program, runc)", "", setupPodman("ufs")},
	{"urun-image", "urun run --rm IMAGE", "target < 25 ms", setupUrun(true)},
	{"urun", "urun run --rm --rootfs", "", setupUrun(false)},
}

// RunRuntime measures `true` in a container with each runtime, as the
// unprivileged user, end to end: from starting the command to its exit.
func RunRuntime(ctx context.Context, cfg *Config, rep *Report) error {
	var undo cleanup.Stack
	defer undo.Run()
	root := os.Geteuid() == 0
	name := cfg.RootlessUser
	if !root {
		name = os.Getenv("USER")
	}
	shift, err := LookupIDShift(name)
	if err != nil {
		rep.RTSkips = append(rep.RTSkips, Skip{"runtime", err.Error()})
		return nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		return err
	}
	e := &rtEnv{cfg: cfg}
	var runner commandRunner = selfRunner{ctx}
	if root {
		self, err := os.Executable()
		if err != nil {
			return err
		}
		ag, err := startAgent(ctx, self, shift, AgentConfig{AsUser: true})
		if err != nil {
			rep.RTSkips = append(rep.RTSkips, Skip{"runtime", "the agent as " + name + " did not start: " + err.Error()})
			return nil
		}
		undo.Add(func() { _ = ag.Shutdown() })
		runner = ag
	}
	e.run = runner
	e.dir, err = filepath.Abs(filepath.Join(cfg.ScratchDir, "runtime"))
	if err != nil {
		return err
	}
	if err := removeAll(e.dir); err != nil {
		return err
	}
	if err := os.MkdirAll(e.dir, 0o755); err != nil {
		return err
	}
	if err := os.Mkdir(filepath.Join(e.dir, "xdg"), 0o700); err != nil {
		return err
	}
	if root {
		for _, d := range []string{e.dir, filepath.Join(e.dir, "xdg")} {
			if err := os.Chown(d, shift.UID, shift.GID); err != nil {
				return err
			}
		}
	}
	undo.Add(func() { _ = removeAll(e.dir) })
	e.env = []string{"HOME=" + u.HomeDir, "USER=" + name, "LOGNAME=" + name, "LANG=C",
		"PATH=/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin", "XDG_RUNTIME_DIR=" + filepath.Join(e.dir, "xdg")}
	if err := rtRootfs(ctx, cfg, shift, e); err != nil {
		rep.RTSkips = append(rep.RTSkips, Skip{"runtime", err.Error()})
		return nil
	}
	self, _ := os.Executable()
	type prepared struct {
		impl rtImpl
		argv func(int) []string
		res  *Result
	}
	var ps []*prepared
	for _, impl := range rtImpls {
		if len(cfg.Impls) > 0 && !slices.Contains(cfg.Impls, impl.name) {
			continue
		}
		argv, closeFn, err := impl.setup(ctx, e, self)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			rep.RTSkips = append(rep.RTSkips, Skip{impl.name, oneLine(err.Error())})
			continue
		}
		if closeFn != nil {
			undo.Add(func() {
				if err := closeFn(); err != nil {
					cfg.Logger.Error("cleanup", "runtime", impl.name, "err", err)
				}
			})
		}
		r := &Result{Workload: "true", Impl: impl.name}
		ps = append(ps, &prepared{impl: impl, argv: argv, res: r})
		rep.RTImpls = append(rep.RTImpls, Impl{Name: impl.name, Label: impl.label})
	}
	rounds := 4 * cfg.Rounds
	rep.RTRounds = rounds
	for round := range 1 + rounds {
		for _, p := range ps {
			if p.res.Err != "" {
				continue
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			env, tracePath := e.env, ""
			if strings.HasPrefix(p.impl.name, "urun") {
				// urun's own phases (internal/trace), a file per sample.
				tracePath = filepath.Join(e.dir, "urun-trace")
				if err := os.Remove(tracePath); err != nil && !errors.Is(err, os.ErrNotExist) {
					return err
				}
				env = append(slices.Clone(env), envTrace+"="+tracePath)
			}
			s, _, err := e.run.Exec(p.argv(round), env, e.dir)
			if err != nil {
				p.res.Err = err.Error()
				continue
			}
			cfg.Logger.Info("sample", "runtime", p.impl.name, "round", round, "time", s.Dur.Round(time.Microsecond))
			if round == 0 {
				continue
			}
			p.res.Samples = append(p.res.Samples, s.Dur)
			if tracePath != "" {
				ph, err := tracePhases(tracePath, s.Dur)
				if err != nil {
					p.res.Err = err.Error()
					continue
				}
				if p.res.Phases == nil {
					p.res.Phases = map[string][]float64{}
				}
				for k, v := range ph {
					p.res.Phases[k] = append(p.res.Phases[k], v)
				}
			}
		}
	}
	for _, p := range ps {
		p.res.summarize()
		rep.Runtime = append(rep.Runtime, p.res)
	}
	return nil
}

// rtRootfs finds the container's root filesystem: the minbase of the
// filesystem fixture (with its owners shifted for the user, as podman
// stores images), or a busybox one in smoke mode.
func rtRootfs(ctx context.Context, cfg *Config, shift IDShift, e *rtEnv) error {
	if !cfg.Smoke {
		fx, err := LoadOrBuildFixture(ctx, cfg, shift, cfg.Logger)
		if err != nil {
			return err
		}
		e.rootfs, e.tarball = fx.Path(fx.Stacks[stackRootfs].Merged), fx.Path(fx.Tarball)
		return nil
	}
	bb, err := exec.LookPath("busybox")
	if err != nil {
		return fmt.Errorf("smoke mode runs busybox in the containers: %w (install busybox-static)", err)
	}
	e.rootfs = filepath.Join(e.dir, "rootfs")
	for _, d := range []string{"bin", "proc", "dev", "sys", "tmp", "etc"} {
		if err := os.MkdirAll(filepath.Join(e.rootfs, d), 0o755); err != nil {
			return err
		}
	}
	if err := run(ctx, "cp", bb, filepath.Join(e.rootfs, "bin", "busybox")); err != nil {
		return err
	}
	if err := os.Symlink("busybox", filepath.Join(e.rootfs, "bin", "true")); err != nil {
		return err
	}
	e.tarball = filepath.Join(e.dir, "rootfs.tar")
	return run(ctx, "tar", "-cf", e.tarball, "-C", e.rootfs, ".")
}

func setupBwrap(_ context.Context, e *rtEnv, _ string) (func(int) []string, func() error, error) {
	if _, err := exec.LookPath("bwrap"); err != nil {
		return nil, nil, fmt.Errorf("bwrap is not installed (make deps-bench)")
	}
	argv := []string{"bwrap", "--unshare-all", "--die-with-parent", "--ro-bind", e.rootfs, "/",
		"--proc", "/proc", "--dev", "/dev", "/bin/true"}
	if _, _, err := e.run.Exec(argv, e.env, e.dir); err != nil {
		return nil, nil, err
	}
	return func(int) []string { return argv }, nil, nil
}

// crunWrapper runs a command as root of a new user namespace (the user
// alone mapped) with new mount and cgroup namespaces and a cgroup2 mount on
// /sys/fs/cgroup: a host that is not hybrid, as crun wants one.
func crunWrapper() []string {
	return []string{"unshare", "--user", "--map-root-user", "--mount", "--cgroup", "sh", "-c",
		`mount -t cgroup2 none /sys/fs/cgroup && exec "$@"`, "sh"}
}

// setupWrap measures crunWrapper alone, running /bin/true: what the crun
// figure carries on top of crun.
func setupWrap(_ context.Context, e *rtEnv, _ string) (func(int) []string, func() error, error) {
	argv := append(crunWrapper(), "/bin/true")
	if _, _, err := e.run.Exec(argv, e.env, e.dir); err != nil {
		return nil, nil, err
	}
	return func(int) []string { return argv }, nil, nil
}

// setupOCI makes a rootless OCI bundle for crun or runc: their own
// `spec --rootless`, the rootfs read-only, no terminal, no cgroup (the
// host's cgroup v2 has no controllers to delegate).
func setupOCI(rt string) func(context.Context, *rtEnv, string) (func(int) []string, func() error, error) {
	return func(_ context.Context, e *rtEnv, _ string) (func(int) []string, func() error, error) {
		if _, err := exec.LookPath(rt); err != nil {
			return nil, nil, fmt.Errorf("%s is not installed (make deps-bench)", rt)
		}
		bundle, state := filepath.Join(e.dir, rt+"-bundle"), filepath.Join(e.dir, rt+"-state")
		if _, _, err := e.run.Exec([]string{"mkdir", "-p", bundle, state}, e.env, e.dir); err != nil {
			return nil, nil, err
		}
		// crun refuses every container on this host's hybrid cgroups (the
		// unified hierarchy holds a controller), even without cgroups; it
		// runs in a user and mount namespace of the user's own where
		// /sys/fs/cgroup is a cgroup2 view of a new cgroup namespace. The
		// figure includes that wrapper (unshare, sh, mount: see crun-wrap).
		var wrap []string
		if rt == "crun" {
			wrap = crunWrapper()
		}
		if _, _, err := e.run.Exec(append(wrap, rt, "spec", "--rootless"), e.env, bundle); err != nil {
			return nil, nil, err
		}
		if err := editSpec(filepath.Join(bundle, "config.json"), e.rootfs); err != nil {
			return nil, nil, err
		}
		global := append(wrap, rt, "--root", state)
		if rt == "crun" {
			global = append(global, "--cgroup-manager=disabled")
		}
		argv := func(n int) []string {
			return append(global, "run", "--bundle", bundle, fmt.Sprintf("ubench-%s-%d", rt, n))
		}
		if _, _, err := e.run.Exec(argv(-1), e.env, e.dir); err != nil {
			return nil, nil, err
		}
		return argv, nil, nil
	}
}

func editSpec(path, rootfs string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var spec map[string]any
	if err := json.Unmarshal(b, &spec); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	spec["root"] = map[string]any{"path": rootfs, "readonly": true}
	proc, _ := spec["process"].(map[string]any)
	if proc == nil {
		return fmt.Errorf("%s: no process", path)
	}
	proc["args"] = []string{"/bin/true"}
	proc["terminal"] = false
	if linux, ok := spec["linux"].(map[string]any); ok {
		delete(linux, "resources")
		delete(linux, "cgroupsPath")
	}
	if mounts, ok := spec["mounts"].([]any); ok {
		var keep []any
		for _, m := range mounts {
			if mm, ok := m.(map[string]any); ok && mm["type"] == "cgroup" {
				continue
			}
			keep = append(keep, m)
		}
		spec["mounts"] = keep
	}
	out, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, out, 0o644)
}

// setupPodman imports the rootfs as an image into a store of its own
// (native overlay, or overlay with a mount_program) and runs containers
// from it without cgroups (the host has no controllers to delegate).
func setupPodman(mountProgram string) func(context.Context, *rtEnv, string) (func(int) []string, func() error, error) {
	return func(_ context.Context, e *rtEnv, _ string) (func(int) []string, func() error, error) {
		if _, err := exec.LookPath("podman"); err != nil {
			return nil, nil, fmt.Errorf("podman is not installed (make deps-bench)")
		}
		name := "podman-overlay"
		global := []string{"podman"}
		if mountProgram != "" {
			name = "podman-" + mountProgram
			prog := mountProgram
			if mountProgram == "ufs" {
				prog = e.cfg.UfsBin
			} else if p, err := exec.LookPath(prog); err == nil {
				prog = p
			}
			if _, err := os.Stat(prog); err != nil {
				return nil, nil, fmt.Errorf("no %s: %w", mountProgram, err)
			}
			global = append(global, "--storage-opt", "overlay.mount_program="+prog)
		}
		base := filepath.Join(e.dir, name)
		// podman refuses a runroot path longer than 50 bytes.
		_, out, err := e.run.Exec([]string{"mktemp", "-d", "/tmp/ubench-run-XXXXXX"}, e.env, e.dir)
		if err != nil {
			return nil, nil, err
		}
		runroot := strings.TrimSpace(out)
		// crun refuses to start a container on this host's hybrid cgroups
		// while cgroup v2 holds a controller; runc does not.
		global = append(global, "--root", base+"/root", "--runroot", runroot, "--tmpdir", base+"/tmp",
			"--storage-driver", "overlay", "--cgroup-manager", "cgroupfs", "--events-backend", "none", "--runtime", "runc")
		closeFn := func() error {
			defer removeAll(runroot)
			// The pause process keeps podman's user namespace; it goes last.
			b, err := os.ReadFile(filepath.Join(base, "tmp", "pause.pid"))
			if err != nil {
				return nil
			}
			pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
			if err != nil || pid <= 1 {
				return nil
			}
			if p, err := os.FindProcess(pid); err == nil {
				_ = p.Kill()
			}
			return nil
		}
		if _, _, err := e.run.Exec(append(global, "import", "--quiet", e.tarball, "localhost/ubench-rootfs:latest"), e.env, e.dir); err != nil {
			return nil, closeFn, err
		}
		argv := append(global, "run", "--rm", "--network=none", "--pull=never",
			"localhost/ubench-rootfs:latest", "/bin/true")
		if _, _, err := e.run.Exec(argv, e.env, e.dir); err != nil {
			return nil, closeFn, errors.Join(err, closeFn())
		}
		return func(int) []string { return argv }, closeFn, nil
	}
}

// setupUrun runs urun from the minbase imported as an image into a store of
// its own (image), or on the rootfs directory (--rootfs), with --rm as
// podman runs (runc and crun delete their containers too): without it
// every round would leave a container's state and store record behind.
func setupUrun(image bool) func(context.Context, *rtEnv, string) (func(int) []string, func() error, error) {
	return func(_ context.Context, e *rtEnv, _ string) (func(int) []string, func() error, error) {
		bin, err := filepath.Abs(e.cfg.UrunBin)
		if err != nil {
			return nil, nil, err
		}
		if _, err := os.Stat(bin); err != nil {
			return nil, nil, fmt.Errorf("no urun binary at %s (make build)", bin)
		}
		global := []string{bin, "--root", filepath.Join(e.dir, "urun")}
		argv := append(global, "run", "--rm", "--rootfs", e.rootfs, "/bin/true")
		if image {
			if _, _, err := e.run.Exec(append(global, "import", e.tarball, "ubench-rootfs"), e.env, e.dir); err != nil {
				return nil, nil, err
			}
			argv = append(global, "run", "--rm", "--pull=never", "localhost/ubench-rootfs", "/bin/true")
		}
		if _, _, err := e.run.Exec(argv, e.env, e.dir); err != nil {
			return nil, nil, err
		}
		return func(int) []string { return argv }, nil, nil
	}
}

func (r *Report) writeRuntime(p func(string, ...any)) {
	p("## Runtime: `true` in a container, end to end, as the unprivileged user (%d rounds after a warm-up)\n\n", r.RTRounds)
	p("| runtime | median (min–max) | issue's figure |\n|---|---|---|\n")
	for _, i := range r.RTImpls {
		var x *Result
		for _, y := range r.Runtime {
			if y.Impl == i.Name {
				x = y
			}
		}
		issue := ""
		for _, ri := range rtImpls {
			if ri.name == i.Name {
				issue = ri.issue
			}
		}
		p("| %s | %s | %s |\n", i.Label, cell(x), issue)
	}
	p("\n")
	r.writePhases(p)
}

func (r *Report) checkRuntimeTargets(add func(text, figure, status string)) {
	text := "urun: `true` from an image under 25 ms"
	for _, x := range r.Runtime {
		if x.Impl == "urun-image" && x.Median > 0 {
			status := met
			if x.Median >= urunTarget {
				status = miss
			}
			add(text, fmtDur(x.Median), status)
			return
		}
	}
	why := "urun was not measured"
	for _, s := range r.RTSkips {
		if s.Impl == "urun-image" || s.Impl == "runtime" {
			why = s.Reason
		}
	}
	add(text, "–", "not measured: "+why)
}

// urunTarget is the issue's target for `true` in a urun container.
const urunTarget = 25 * time.Millisecond
