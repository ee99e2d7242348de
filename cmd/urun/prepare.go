package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"time"

	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/urun-dev/urun/container"
	"github.com/urun-dev/urun/image"
	"github.com/urun-dev/urun/image/lease"
	"github.com/urun-dev/urun/internal/trace"
)

// preparedImage is what urun run needs of an image: a container record of
// the store, its layer directories and the image's default process.
type preparedImage struct {
	ImageID     string
	ContainerID string
	// Lowers are the image's layers, topmost first; Upper and Work the
	// container's writable layer and overlay work directory.
	Lowers      []string
	Upper, Work string
	Config      imgspecv1.ImageConfig
	Platform    imgspecv1.Platform
}

// prepareOptions say how prepareImage gets the image.
type prepareOptions struct {
	Pull      image.PullPolicy
	TLSVerify bool
	Platform  string
	Quiet     bool
	// Name is the container record's name ("": none); ID its ID ("": the
	// store picks one).
	Name, ID string
}

// prepareImage makes a container record for the image called name (pulled
// as o.Pull says) and returns its directories and config. The store work
// runs in urun's user namespace: urun runs itself (the hidden command
// prepare-container), which enters it, and reads the result from its
// standard output; progress and errors go to standard error.
func prepareImage(ctx context.Context, g *globals, name string, o prepareOptions) (*preparedImage, error) {
	args := append(g.storeArgs(), "prepare-container", "--pull="+string(o.Pull), fmt.Sprintf("--tls-verify=%t", o.TLSVerify))
	if o.Platform != "" {
		args = append(args, "--platform", o.Platform)
	}
	if o.Quiet {
		args = append(args, "--quiet")
	}
	if o.Name != "" {
		args = append(args, "--name", o.Name)
	}
	if o.ID != "" {
		args = append(args, "--id", o.ID)
	}
	var p preparedImage
	if err := runSelf(ctx, append(args, "--", name), &p); err != nil {
		return nil, err
	}
	return &p, nil
}

// removeContainerRecord deletes a container record made by prepareImage
// and its writable layer (urun run --rm, or a failed start).
func removeContainerRecord(ctx context.Context, g *globals, id string) error {
	return runSelf(ctx, append(g.storeArgs(), "remove-container", "--", id), nil)
}

// storeArgs are the global flags that say where the store is.
func (g *globals) storeArgs() []string {
	var a []string
	for _, f := range []struct{ flag, v string }{
		{"--root", g.Root}, {"--log-level", g.LogLevel}, {"--config", g.Config},
		{"--graphroot", g.GraphRoot}, {"--runroot", g.RunRoot}, {"--registries-conf", g.RegistriesConf},
	} {
		if f.v != "" {
			a = append(a, f.flag+"="+f.v)
		}
	}
	return a
}

// selfReply is what the hidden commands print on standard output.
type selfReply struct {
	Error  string          `json:",omitempty"`
	Result json.RawMessage `json:",omitempty"`
}

// runSelf runs this urun with args (a hidden command), and decodes its
// reply: the result into out (when not nil), or its error. Standard
// error (progress) passes through.
func runSelf(ctx context.Context, args []string, out any) error {
	exe, err := selfExe()
	if err != nil {
		return fmt.Errorf("find the urun binary: %w", err)
	}
	var stdout bytes.Buffer
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Stdout, cmd.Stderr = &stdout, os.Stderr
	runErr := cmd.Run()
	var r selfReply
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		if runErr != nil {
			return fmt.Errorf("%s %v: %w", exe, args, runErr)
		}
		return fmt.Errorf("%s %v: bad reply: %w", exe, args, err)
	}
	if r.Error != "" {
		return errors.New(r.Error)
	}
	if runErr != nil {
		return fmt.Errorf("%s %v: %w", exe, args, runErr)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(r.Result, out); err != nil {
		return fmt.Errorf("%s %v: bad result: %w", exe, args, err)
	}
	return nil
}

// reply prints a hidden command's reply: its result or its error (which
// then ends urun with 125 and no message of its own). An exit code from the
// run inside the user namespace, which replied already, passes through.
func reply(result any, err error) error {
	var ec *exitCodeError
	if errors.As(err, &ec) {
		return err
	}
	r := selfReply{}
	if err != nil {
		r.Error = err.Error()
	} else if r.Result, err = json.Marshal(result); err != nil {
		r.Error = err.Error()
	}
	if werr := json.NewEncoder(os.Stdout).Encode(r); werr != nil {
		return werr
	}
	if r.Error != "" {
		return &exitCodeError{Code: container.ExitSetup}
	}
	return nil
}

// selfExe finds the urun binary (tests point it at a built urun).
var selfExe = os.Executable

// prepareContainerCmd is the hidden command behind prepareImage.
type prepareContainerCmd struct {
	pullFlags
	Pull string `default:"missing" enum:"missing,always,never" help:"Pull the image: missing, always or never."`
	Name string `help:"Name of the container record."`
	ID   string `help:"ID of the container record (default: the store picks one)."`

	Image string `arg:"" help:"Image."`
}

func (c *prepareContainerCmd) Run(ctx context.Context, g *globals) error {
	var p *preparedImage
	err := c.prepare(ctx, g, &p)
	return reply(p, err)
}

func (c *prepareContainerCmd) prepare(ctx context.Context, g *globals, out **preparedImage) error {
	policy, err := image.ParsePullPolicy(c.Pull)
	if err != nil {
		return err
	}
	po, err := c.pullFlags.options()
	if err != nil {
		return err
	}
	return withStore(ctx, g, func(ctx context.Context, s *image.Store) error {
		reapStale(g, s)
		p, err := newRecord(ctx, s, c.Image, policy, po, c.ID, c.Name)
		*out = p
		return err
	})
}

// newRecord makes a container record (called id and name, "" for the
// store's choice and none) of the image called name, pulled as policy
// says.
func newRecord(ctx context.Context, s *image.Store, name string, policy image.PullPolicy, po image.PullOptions, id, ctrName string) (*preparedImage, error) {
	img, err := s.Get(ctx, name, policy, po)
	if err != nil {
		return nil, err
	}
	return newRecordOf(ctx, s, img, id, ctrName)
}

// newRecordOf makes a container record of img (see newRecord).
func newRecordOf(ctx context.Context, s *image.Store, img *image.Image, id, ctrName string) (*preparedImage, error) {
	ctr, err := s.NewContainerID(ctx, img, id, ctrName)
	if err != nil {
		return nil, err
	}
	return &preparedImage{
		ImageID: img.ID, ContainerID: ctr.ID, Lowers: ctr.Lowers(), Upper: ctr.Upper(), Work: ctr.Work(),
		Config: ctr.Config(), Platform: ctr.Platform(),
	}, nil
}

// imageRun is how the monitor of a container from an image does the
// store step (container.Config.ImageOptions), from urun run's flags.
type imageRun struct {
	Globals    globals
	Pull       string
	TLSVerify  bool
	Entrypoint *string  // --entrypoint, nil when not given
	Args       []string // the command after the image: replaces its Cmd
}

// monitorImages is the image store in the monitor of a container from an
// image (container.Images): the monitor is root of urun's user namespace
// already, so the store opens there directly, without the user namespace
// of its own that withStore makes for the other commands.
//
// A container removed when it ends (--rm) gets no record: it leases the
// image (image.Lease) and keeps its writable layer in its state
// directory, as a --rootfs container does; the store sees no write.
type monitorImages struct {
	run imageRun
	s   *image.Store
	// lease is the --rm container's hold on its image (nil: none, or
	// released); leased is that container's ID.
	lease  *image.Lease
	leased string
}

var _ container.Images = (*monitorImages)(nil)

// openImages is container.OpenImages for urun's store.
func openImages(ctx context.Context, c *container.Config) (container.Images, error) {
	start := time.Now()
	var r imageRun
	if err := json.Unmarshal(c.ImageOptions, &r); err != nil {
		return nil, fmt.Errorf("image settings of container %s: %w", c.ID, err)
	}
	s, err := r.Globals.openStore(ctx)
	if err != nil {
		return nil, err
	}
	trace.Phase("store-open", start)
	return &monitorImages{run: r, s: s}, nil
}

func (m *monitorImages) Prepare(ctx context.Context, c *container.Config) error {
	policy, err := image.ParsePullPolicy(m.run.Pull)
	if err != nil {
		return err
	}
	po, err := (&pullFlags{TLSVerify: m.run.TLSVerify}).options()
	if err != nil {
		return err
	}
	start := time.Now()
	img, err := m.s.Get(ctx, c.Image, policy, po)
	if err != nil {
		return err
	}
	trace.Phase("store-image", start)
	start = time.Now()
	var p *preparedImage
	if c.Remove {
		l, err := m.s.Lease(ctx, img)
		if err != nil {
			return err
		}
		m.lease, m.leased = l, c.ID
		// No record: a later ReapStale or rm needs no store for it.
		c.Lease = &lease.Ref{GraphRoot: m.s.GraphRoot(), ImageID: img.ID}
		p = &preparedImage{ImageID: img.ID, Lowers: l.Lowers(), Config: l.Config(), Platform: l.Platform()}
	} else if p, err = newRecordOf(ctx, m.s, img, c.ID, ""); err != nil {
		return err
	}
	trace.Phase("store-record", start)
	applyImage(c, p, m.run.Entrypoint, m.run.Args)
	return nil
}

// Release removes the record, or lets go of the lease; a record that is
// not there (never made, or removed already) is no error.
func (m *monitorImages) Release(c *container.Config) error {
	if m.lease != nil && c.ID == m.leased {
		l := m.lease
		m.lease = nil
		return l.Release()
	}
	err := m.s.RemoveContainer(c.ID)
	if errors.Is(err, image.ErrContainerNotFound) {
		return nil
	}
	return err
}

func (m *monitorImages) Close() error {
	var err error
	if m.lease != nil {
		err = m.lease.Release()
	}
	return errors.Join(err, m.s.Close())
}

// removeContainerCmd is the hidden command behind removeContainerRecord.
type removeContainerCmd struct {
	ID string `arg:"" help:"Container record ID or name."`
}

func (c *removeContainerCmd) Run(ctx context.Context, g *globals) error {
	return reply(struct{}{}, withStore(ctx, g, func(ctx context.Context, s *image.Store) error {
		return s.RemoveContainer(c.ID)
	}))
}

// reapStale removes the records and state of --rm containers from images
// whose urun was killed before it could (container.ReapStale).
func reapStale(g *globals, s *image.Store) {
	root := g.Root
	if root == "" {
		var err error
		if root, err = container.DefaultRoot(); err != nil {
			return
		}
	}
	container.ReapStale(root, func(c *container.Config) error {
		err := s.RemoveContainer(c.ID)
		if errors.Is(err, image.ErrContainerNotFound) {
			return nil
		}
		return err
	})
}
