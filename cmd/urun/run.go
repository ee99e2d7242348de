package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/urun-dev/urun/container"
	"github.com/urun-dev/urun/image"
	"github.com/urun-dev/urun/image/lease"
	"github.com/urun-dev/urun/internal/trace"
	"github.com/urun-dev/urun/userns"
)

type runCmd struct {
	Rootfs      []string `help:"Root filesystem directory instead of an image; repeat to stack layers, topmost first." placeholder:"DIR"`
	Pull        string   `help:"When to pull the image: missing, always, never." default:"missing" enum:"missing,always,never"`
	TLSVerify   bool     `name:"tls-verify" help:"Require HTTPS and verify certificates when pulling." default:"true" negatable:""`
	Entrypoint  *string  `help:"Overwrite the image's entrypoint (a command, or a JSON array; \"\" clears it)." placeholder:"CMD"`
	Env         []string `short:"e" help:"Set an environment variable (KEY=VALUE, or KEY to copy it from urun's environment)." placeholder:"KEY=VALUE"`
	EnvFile     []string `help:"Read environment variables from a file (KEY=VALUE lines)." placeholder:"FILE"`
	Workdir     string   `short:"w" help:"Working directory inside the container (created if missing)." placeholder:"DIR"`
	User        string   `short:"u" help:"User (name or uid) and optional group to run as." placeholder:"USER[:GROUP]"`
	Hostname    string   `help:"Container host name (default: the first 12 digits of its id)."`
	Interactive bool     `short:"i" help:"Keep stdin open."`
	TTY         bool     `short:"t" name:"tty" help:"Allocate a pseudo-terminal."`
	Rm          bool     `help:"Remove the container when it exits."`
	Name        string   `help:"Name of the container (unique)."`
	Init        bool     `help:"Run urun's minimal init as pid 1: it forwards signals and reaps zombies."`
	CapAdd      []string `help:"Add capabilities (or ALL)." placeholder:"CAP"`
	CapDrop     []string `help:"Drop capabilities (or ALL)." placeholder:"CAP"`
	SecurityOpt []string `help:"Security options: no-new-privileges, seccomp=unconfined, seccomp=FILE (a podman/Docker JSON profile)." placeholder:"OPT"`
	Privileged  bool     `help:"All capabilities, no seccomp filter, no masked paths, host devices (as far as rootless allows)."`
	ReadOnly    bool     `help:"Mount the root filesystem read-only (tmpfs on /tmp, /var/tmp, /run)."`
	Volume      []string `short:"v" help:"Bind mount a host path." placeholder:"HOST:CTR[:ro]"`
	Tmpfs       []string `help:"Mount a tmpfs (rw,nosuid,nodev by default)." placeholder:"PATH[:OPTS]"`
	Network     string   `name:"network" aliases:"net" help:"Network: none (loopback only) or host." default:"none"`
	Userns      string   `help:"User namespace mode: \"\" (you are root inside) or keep-id (you keep your uid)." placeholder:"MODE"`

	Command []string `arg:"" optional:"" passthrough:"" help:"IMAGE [COMMAND [ARG...]], or COMMAND [ARG...] with --rootfs."`
}

func (r *runCmd) Run(ctx context.Context, g *globals) error {
	c, opts, err := r.config(g)
	if err != nil {
		return &exitCodeError{Code: container.ExitSetup, Err: err}
	}
	var code int
	if len(r.Rootfs) == 0 {
		code, err = r.runImage(ctx, g, c, opts)
	} else {
		code, err = container.Run(ctx, c, opts)
	}
	if err != nil {
		return &exitCodeError{Code: code, Err: err}
	}
	if code != 0 {
		return &exitCodeError{Code: code}
	}
	return nil
}

// runImage runs a container from the image named by the first argument.
// The store step happens in the container's monitor, already root of the
// user namespace (see monitorImages): its state first (so that a killed
// urun's record is found and removed by the next), then a container
// record of the store (pulled as --pull says) with the container's ID,
// whose layers and image config fill c: entrypoint and command,
// environment, working directory and user, each overridden by the flags.
// --rm removes the record, then the state.
//
// A --rm container of an image the store has (and --pull is not always)
// skips all that: this process reads the image from the store's files
// (image.LookupLocal) and fills in c, and the monitor, urun-runtime, only
// takes a lease on the image (container.Config.Lease).
func (r *runCmd) runImage(ctx context.Context, g *globals, c *container.Config, opts container.RunOptions) (int, error) {
	if len(r.Command) == 0 {
		return container.ExitSetup, fmt.Errorf("no image given: urun run IMAGE [COMMAND...] (or --rootfs DIR COMMAND...)")
	}
	if _, err := image.ParsePullPolicy(r.Pull); err != nil {
		return container.ExitSetup, err
	}
	if strings.HasPrefix(r.Command[0], "-") {
		return container.ExitSetup, fmt.Errorf("unknown flag: %s", r.Command[0])
	}
	c.Image, c.Args = r.Command[0], nil
	// The look-up runs beside the making of the container's state.
	var found chan *image.LocalImage
	if r.Rm && r.Pull != string(image.PullAlways) {
		found = make(chan *image.LocalImage, 1)
		go func() { found <- lookupLocal(g, c.Image) }()
	}
	h, err := container.Create(c, opts)
	if err != nil {
		return container.ExitSetup, err
	}
	defer h.Close()
	if found != nil {
		if img := <-found; img != nil {
			c.Lease = &lease.Ref{GraphRoot: img.GraphRoot, ImageID: img.ID}
			applyImage(c, &preparedImage{ImageID: img.ID, Lowers: img.Lowers, Config: img.Config.Config, Platform: img.Config.Platform}, r.Entrypoint, r.Command[1:])
			return h.Run(ctx)
		}
	}
	b, err := json.Marshal(imageRun{Globals: *g, Pull: r.Pull, TLSVerify: r.TLSVerify, Entrypoint: r.Entrypoint, Args: r.Command[1:]})
	if err != nil {
		h.Abort()
		return container.ExitSetup, err
	}
	c.ImageOptions = b
	return h.Run(ctx)
}

// lookupLocal reads the image called name from the store's files
// (image.LookupLocal), for a --rm container whose monitor then only
// leases it (container.Config.Lease). It returns nil when the image is
// not there or cannot be read this way: the monitor's store step then
// pulls it, or says what is wrong.
func lookupLocal(g *globals, name string) *image.LocalImage {
	start := time.Now()
	defer trace.Phase("cli-image", start)
	o, err := g.storeOptions()
	if err != nil {
		return nil
	}
	img, err := image.LookupLocal(o, name)
	if err != nil {
		g.logger().Debug("image not read from the store's files; the monitor opens the store", "image", name, "err", err)
		return nil
	}
	return img
}

// applyImage fills in c from the image's container record p: the layers,
// and the process from the image's config under the flags (entrypoint:
// --entrypoint, nil if not given; args: the command after the image).
func applyImage(c *container.Config, p *preparedImage, entrypoint *string, args []string) {
	c.Layers, c.Upper, c.Work = p.Lowers, p.Upper, p.Work
	ic := p.Config
	ep := ic.Entrypoint
	if entrypoint != nil {
		ep = parseEntrypoint(*entrypoint)
	}
	if len(args) == 0 && entrypoint == nil {
		args = ic.Cmd
	}
	c.Args = append(append([]string(nil), ep...), args...)
	c.Env = container.MergeEnv(ic.Env, c.Env)
	if c.Workdir == "" {
		c.Workdir = ic.WorkingDir
	}
	if c.User == "" {
		c.User = ic.User
	}
}

// parseEntrypoint reads --entrypoint: a JSON array, or one command.
func parseEntrypoint(s string) []string {
	if s == "" {
		return nil
	}
	var list []string
	if strings.HasPrefix(s, "[") && json.Unmarshal([]byte(s), &list) == nil {
		return list
	}
	return []string{s}
}

// config turns the flags into a container configuration.
func (r *runCmd) config(g *globals) (*container.Config, container.RunOptions, error) {
	c := &container.Config{
		Args:        r.Command,
		Workdir:     r.Workdir,
		User:        r.User,
		Hostname:    r.Hostname,
		Interactive: r.Interactive,
		TTY:         r.TTY,
		Remove:      r.Rm,
		Name:        r.Name,
		Init:        r.Init,
		CapAdd:      r.CapAdd,
		CapDrop:     r.CapDrop,
		Privileged:  r.Privileged,
		ReadOnly:    r.ReadOnly,
		Network:     r.Network,
		Runtime:     runtimeBinary(),
	}
	opts := container.RunOptions{Root: g.Root, Logger: g.logger()}
	if len(r.Rootfs) > 0 && len(r.Command) == 0 {
		return nil, opts, fmt.Errorf("no command given: urun run --rootfs DIR COMMAND [ARG...]")
	}
	for _, l := range r.Rootfs {
		abs, err := filepath.Abs(l)
		if err != nil {
			return nil, opts, err
		}
		c.Layers = append(c.Layers, abs)
	}
	if c.Workdir != "" && !filepath.IsAbs(c.Workdir) {
		return nil, opts, fmt.Errorf("--workdir %q: must be an absolute path", c.Workdir)
	}
	for _, f := range r.EnvFile {
		fh, err := os.Open(f)
		if err != nil {
			return nil, opts, fmt.Errorf("--env-file: %w", err)
		}
		env, err := container.ParseEnvFile(fh, f, os.LookupEnv)
		fh.Close()
		if err != nil {
			return nil, opts, err
		}
		c.Env = append(c.Env, env...)
	}
	env, err := container.ParseEnv(r.Env, os.LookupEnv)
	if err != nil {
		return nil, opts, err
	}
	c.Env = append(c.Env, env...)
	for _, v := range r.Volume {
		m, err := container.ParseVolume(v)
		if err != nil {
			return nil, opts, err
		}
		c.Mounts = append(c.Mounts, m)
	}
	for _, v := range r.Tmpfs {
		m, err := container.ParseTmpfs(v)
		if err != nil {
			return nil, opts, err
		}
		c.Mounts = append(c.Mounts, m)
	}
	for _, o := range r.SecurityOpt {
		switch {
		case o == "no-new-privileges" || o == "no-new-privileges=true" || o == "no-new-privileges:true":
			c.NoNewPrivs = true
		case o == "seccomp=unconfined" || o == "seccomp:unconfined":
			c.Unconfined = true
		case strings.HasPrefix(o, "seccomp=") || strings.HasPrefix(o, "seccomp:"):
			b, err := os.ReadFile(o[len("seccomp="):])
			if err != nil {
				return nil, opts, fmt.Errorf("--security-opt %s: %w", o, err)
			}
			c.SeccompProfile = b
		case strings.HasPrefix(o, "label=") || strings.HasPrefix(o, "apparmor="):
			// No SELinux/AppArmor here; accepted like podman on such hosts.
		default:
			return nil, opts, fmt.Errorf("--security-opt %q: supported: no-new-privileges, seccomp=unconfined, seccomp=FILE", o)
		}
	}
	switch r.Userns {
	case "", "host":
	case "keep-id":
		opts.Mode = userns.ModeKeepID
	default:
		return nil, opts, fmt.Errorf("--userns %q: supported: keep-id", r.Userns)
	}
	return c, opts, nil
}

// runtimeBinary is urun-runtime beside this urun, if there is one
// (container.Config.Runtime).
func runtimeBinary() string {
	exe, err := os.Executable()
	if err != nil {
		return ""
	}
	return container.RuntimeBeside(exe)
}
