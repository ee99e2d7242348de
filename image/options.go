package image

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"

	"github.com/BurntSushi/toml"
)

// Options say where the store lives and how it reaches registries. The zero
// value of each field means "the default"; see DefaultOptions and
// LoadConfig for the order in which defaults, the config file and explicit
// values apply.
type Options struct {
	// GraphRoot holds images, layers and containers:
	// $XDG_DATA_HOME/urun/storage (~/.local/share/urun/storage).
	GraphRoot string
	// RunRoot holds locks and mount state: $XDG_RUNTIME_DIR/urun, or
	// /tmp/urun-$UID when XDG_RUNTIME_DIR is unset.
	RunRoot string
	// MountProgram is the overlay driver's mount_program, the ufs binary:
	// ufs beside the running executable, else ufs from $PATH.
	MountProgram string
	// MountOptions are extra mount options the overlay driver passes to
	// MountProgram (the driver's mountopt).
	MountOptions string
	// RegistriesConf is a registries.conf(5) file used instead of the
	// system's (CONTAINERS_REGISTRIES_CONF, ~/.config/containers,
	// /etc/containers).
	RegistriesConf string
	// SignaturePolicy is a policy.json(5) file used instead of the
	// system's (~/.config/containers/policy.json,
	// /etc/containers/policy.json). Without any, every image is accepted.
	SignaturePolicy string
	// AuthFile is an auth.json used instead of the usual ones
	// ($REGISTRY_AUTH_FILE, $XDG_RUNTIME_DIR/containers/auth.json,
	// ~/.docker/config.json).
	AuthFile string
	// Logger receives debug and progress records; nil discards them.
	Logger *slog.Logger
}

// ConfigFile is the content of urun.conf (TOML). Every key is optional;
// unknown keys are an error, so that a typo is not silently ignored.
//
//	[storage]
//	graphroot = "/home/me/.local/share/urun/storage"
//	runroot = "/run/user/1000/urun"
//	mount_program = "/usr/local/bin/ufs"
//	mount_options = "fsync=0"
//
//	[registries]
//	conf = "/home/me/registries.conf"
//	policy = "/home/me/policy.json"
//	auth_file = "/home/me/auth.json"
type ConfigFile struct {
	Storage struct {
		GraphRoot    string `toml:"graphroot"`
		RunRoot      string `toml:"runroot"`
		MountProgram string `toml:"mount_program"`
		MountOptions string `toml:"mount_options"`
	} `toml:"storage"`
	Registries struct {
		Conf     string `toml:"conf"`
		Policy   string `toml:"policy"`
		AuthFile string `toml:"auth_file"`
	} `toml:"registries"`
}

// ConfigPath is the default config file: $URUN_CONFIG, else
// $XDG_CONFIG_HOME/urun/urun.conf (~/.config/urun/urun.conf).
func ConfigPath() (string, error) {
	if p := os.Getenv("URUN_CONFIG"); p != "" {
		return p, nil
	}
	dir, err := xdgDir("XDG_CONFIG_HOME", ".config")
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "urun", "urun.conf"), nil
}

// ParseConfig reads a urun.conf from r; name is used in errors.
func ParseConfig(r io.Reader, name string) (ConfigFile, error) {
	var c ConfigFile
	md, err := toml.NewDecoder(r).Decode(&c)
	if err != nil {
		return c, fmt.Errorf("config %s: %w", name, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		return c, fmt.Errorf("config %s: unknown key %q (known: storage.graphroot, storage.runroot, storage.mount_program, storage.mount_options, registries.conf, registries.policy, registries.auth_file)", name, und[0].String())
	}
	return c, nil
}

// LoadConfig fills the empty fields of o from the config file at path
// (ConfigPath when path is ""); a missing default file is not an error, a
// missing explicit one is.
func (o *Options) LoadConfig(path string) error {
	explicit := path != ""
	if !explicit {
		p, err := ConfigPath()
		if err != nil {
			return err
		}
		path = p
		explicit = os.Getenv("URUN_CONFIG") != ""
	}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) && !explicit {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open config: %w", err)
	}
	defer f.Close()
	c, err := ParseConfig(f, path)
	if err != nil {
		return err
	}
	fill := func(dst *string, v string) {
		if *dst == "" {
			*dst = v
		}
	}
	fill(&o.GraphRoot, c.Storage.GraphRoot)
	fill(&o.RunRoot, c.Storage.RunRoot)
	fill(&o.MountProgram, c.Storage.MountProgram)
	fill(&o.MountOptions, c.Storage.MountOptions)
	fill(&o.RegistriesConf, c.Registries.Conf)
	fill(&o.SignaturePolicy, c.Registries.Policy)
	fill(&o.AuthFile, c.Registries.AuthFile)
	return nil
}

// withDefaults returns o with every empty location filled with its default.
func (o Options) withDefaults() (Options, error) {
	if o.GraphRoot == "" {
		dir, err := xdgDir("XDG_DATA_HOME", ".local/share")
		if err != nil {
			return o, err
		}
		o.GraphRoot = filepath.Join(dir, "urun", "storage")
	}
	if o.RunRoot == "" {
		o.RunRoot = defaultRunRoot()
	}
	if o.MountProgram == "" {
		p, err := findUfs()
		if err != nil {
			return o, err
		}
		o.MountProgram = p
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	for _, p := range []*string{&o.GraphRoot, &o.RunRoot, &o.MountProgram} {
		abs, err := filepath.Abs(*p)
		if err != nil {
			return o, err
		}
		*p = abs
	}
	return o, nil
}

// defaultRunRoot is $XDG_RUNTIME_DIR/urun, or /tmp/urun-$UID. Inside the
// user namespace the uid is 0, so the uid of the user outside it is taken
// from URUN_HOST_UID when the re-exec set it.
func defaultRunRoot() string {
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "urun")
	}
	uid := strconv.Itoa(os.Getuid())
	if u := os.Getenv("URUN_HOST_UID"); u != "" {
		uid = u
	}
	return filepath.Join(os.TempDir(), "urun-"+uid)
}

// xdgDir returns $env, or $HOME/fallback.
func xdgDir(env, fallback string) (string, error) {
	if d := os.Getenv(env); d != "" {
		return d, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("no %s and no home directory: %w (set %s or HOME)", env, err, env)
	}
	return filepath.Join(home, fallback), nil
}

// findUfs looks for ufs beside the running executable, then in $PATH.
func findUfs() (string, error) {
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "ufs")
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	p, err := exec.LookPath("ufs")
	if err != nil {
		return "", fmt.Errorf("%w: not beside the urun binary and not in PATH (run make build, or set storage.mount_program in urun.conf)", ErrNoUfs)
	}
	return p, nil
}
