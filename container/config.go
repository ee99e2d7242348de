package container

import (
	"bytes"
	"encoding/json"
	"fmt"

	"strings"

	"github.com/urun-dev/urun/capability"
	"github.com/urun-dev/urun/image/lease"
	"github.com/urun-dev/urun/seccomp"
	"github.com/urun-dev/urun/userns"
)

// Config is everything needed to run one container. It travels as JSON
// from the CLI to the monitor and from the monitor to the container's init.
type Config struct {
	// ID is the container's 64-hex-digit identifier; Name its unique name.
	ID, Name string
	// StateDir holds the container's files: upper, work, merged (the
	// rootfs mountpoint), the generated /etc files and the lock.
	StateDir string
	// Layers are the read-only directories of the rootfs, topmost first.
	Layers []string
	// ReadOnly mounts the rootfs without a writable upper (--read-only);
	// /tmp, /var/tmp and /run then get tmpfs mounts, as in podman.
	ReadOnly bool
	// Upper and Work, when set, are the writable upper branch and its work
	// directory (taken from an image store); otherwise they live in
	// StateDir.
	Upper, Work string
	// Image names the image of a container whose layers, upper and work
	// directories come from the image store: a record whose ID is ID, or
	// for a --rm container a hold on the image's layers, its upper and
	// work then in StateDir. The monitor does that store step and fills
	// in the layers and the process from the image (see Images).
	// ImageOptions are the binary's own settings of that step, opaque
	// here.
	Image        string
	ImageOptions json.RawMessage `json:",omitempty"`
	// Lease, for a container from an image that has no store record (a
	// --rm container), names the image it holds while it runs (package
	// lease). When the CLI found the image itself (ImageOptions empty),
	// it filled in Layers and the process too: the monitor then takes
	// the lease and needs no store at all.
	Lease *lease.Ref `json:",omitempty"`

	// Runtime is the binary that runs the container's init, and the
	// monitor of a container without a store step (storeStep): a build of urun
	// without the image store, which starts in a fraction of urun's time
	// (see RuntimeBeside). "" runs this binary itself.
	Runtime string `json:",omitempty"`

	// Args is the command and its arguments; Env the environment
	// (KEY=VALUE) before the user's HOME is filled in.
	Args []string
	Env  []string
	// Workdir is the working directory inside ("" means /).
	Workdir string
	// User is -u USER[:GROUP] ("" means root).
	User     string
	Hostname string
	Mounts   []Mount
	// Network is "none" (a new network namespace with loopback up) or
	// "host".
	Network string

	// TTY allocates a pseudo-terminal; Interactive keeps stdin open.
	TTY, Interactive bool
	// Init runs urun's minimal init as pid 1 (--init).
	Init bool

	// CapAdd and CapDrop adjust the default capability set; Caps is the
	// result (filled in by Run).
	CapAdd, CapDrop []string
	Caps            capability.Set
	// NoNewPrivs sets no_new_privs before exec.
	NoNewPrivs bool
	// Unconfined turns the seccomp filter off.
	Unconfined bool
	// SeccompProfile is a profile in podman's JSON format replacing the
	// default one (--security-opt seccomp=FILE, read by the CLI).
	SeccompProfile []byte
	// Privileged gives every capability, no seccomp filter, no masked
	// or read-only paths, and host devices (as far as rootless allows).
	Privileged bool
	// Remove deletes the container's state when it ends (--rm).
	Remove bool

	// KeepID, when set, gives the container a user namespace of its own,
	// nested in the monitor's, where the caller's ids appear as
	// themselves (--userns=keep-id); the command runs as them unless
	// User says otherwise.
	KeepID *KeepID

	// Maps are the user namespace's id maps (for the devpts gid and the
	// owner of files urun creates).
	Maps userns.Maps
}

// KeepID are the caller's ids, kept inside the container.
type KeepID struct{ UID, GID uint32 }

// Mount is a bind mount (-v) or a tmpfs (--tmpfs) inside the container.
type Mount struct {
	// Type is "bind" or "tmpfs".
	Type        string
	Source      string // host path for bind
	Destination string // absolute path inside
	ReadOnly    bool
	// Options are the tmpfs data options (size=, mode=) or extra flags.
	Options []string
}

// storeStep reports whether the monitor must do the image store step
// (the binary's Images) to find c's layers and process.
func (c *Config) storeStep() bool { return c.Image != "" && len(c.ImageOptions) > 0 }

// hasRecord reports whether c may have a record in the image store,
// which its removal must delete: a container from an image without a
// lease.
func (c *Config) hasRecord() bool { return c.Image != "" && c.Lease == nil }

// Validate checks what can be checked before any namespace exists.
func (c *Config) Validate() error {
	if len(c.Args) == 0 {
		return fmt.Errorf("no command given: name one after the image or rootfs (for example: urun run --rootfs DIR /bin/sh)")
	}
	if strings.HasPrefix(c.Args[0], "-") {
		return fmt.Errorf("unknown flag: %s", c.Args[0])
	}
	if len(c.Layers) == 0 {
		return fmt.Errorf("no root filesystem: give --rootfs DIR")
	}
	return c.validateSettings()
}

// fillDefaults sets what follows from the other settings once the image
// is known: a keep-id container runs as the caller unless a user is set.
func (c *Config) fillDefaults() {
	if c.KeepID != nil && c.User == "" {
		c.User = fmt.Sprintf("%d:%d", c.KeepID.UID, c.KeepID.GID)
	}
}

// validateSettings checks what does not depend on the image: hostname,
// network, capabilities, seccomp profile.
func (c *Config) validateSettings() error {
	if len(c.Hostname) > 64 || strings.ContainsFunc(c.Hostname, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return fmt.Errorf("%w: --hostname %q: at most 64 characters, no spaces or control characters", ErrBadSpec, c.Hostname)
	}
	switch c.Network {
	case "", "none", "host":
	default:
		return fmt.Errorf("--network %q: only none and host are supported", c.Network)
	}
	set, err := c.resolveCaps()
	if err != nil {
		return err
	}
	c.Caps = set
	if len(c.SeccompProfile) > 0 && !c.Unconfined && !c.Privileged {
		if _, err := seccomp.Load(bytes.NewReader(c.SeccompProfile)); err != nil {
			return fmt.Errorf("--security-opt seccomp: %w", err)
		}
	}
	return nil
}

// resolveCaps applies --cap-add/--cap-drop to podman's default set, or
// gives every capability the kernel has to --privileged.
func (c *Config) resolveCaps() (capability.Set, error) {
	if c.Privileged {
		return capability.Bounding()
	}
	return capability.Resolve(capability.Default(), c.CapAdd, c.CapDrop)
}
