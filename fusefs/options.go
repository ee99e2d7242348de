package fusefs

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// MountOptions is what a "-o" list sets besides the filesystem Config.
type MountOptions struct {
	Debug bool   // log every FUSE request
	Log   string // file for the daemon's log
	// Ignored lists options accepted for compatibility that change
	// nothing; the caller names them on stderr.
	Ignored []string
}

// ParseOptions applies comma-separated mount options (possibly several
// -o values) to cfg. Branches from "br=" are appended after those already
// in cfg. Unknown options are an error that names them.
func ParseOptions(cfg *Config, opts []string) (MountOptions, error) {
	var mo MountOptions
	var ov overlayDirs
	for _, list := range opts {
		for _, o := range splitOptions(list) {
			if o == "" {
				continue
			}
			key, val, hasVal := strings.Cut(o, "=")
			switch key {
			case "br", "dirs":
				if !hasVal || val == "" {
					return mo, fmt.Errorf("%w: br needs a value: -o br=DIR=rw:DIR=ro", ErrBadOption)
				}
				bs, err := ParseBranches(val)
				if err != nil {
					return mo, err
				}
				cfg.Branches = append(cfg.Branches, bs...)
			case "udba":
				switch val {
				case "reval", "notify":
					cfg.Reval = true
				case "none":
					cfg.Reval = false
				default:
					return mo, fmt.Errorf("%w: udba=%q: use udba=none or udba=reval", ErrBadOption, val)
				}
			case "timeout":
				secs, err := strconv.ParseFloat(val, 64)
				if err != nil || secs < 0 {
					return mo, fmt.Errorf("%w: timeout=%q: give seconds, e.g. timeout=1", ErrBadOption, val)
				}
				cfg.Timeout = time.Duration(secs * float64(time.Second))
				if secs == 0 {
					cfg.Reval = true
				}
			case "fsync":
				b, err := boolOption(key, val, hasVal)
				if err != nil {
					return mo, err
				}
				cfg.NoFsync = !b
			case "passthrough":
				b, err := boolOption(key, val, hasVal)
				if err != nil {
					return mo, err
				}
				cfg.NoPassthrough = !b
			case "ro":
				cfg.ReadOnly = true
			case "rw", "default_permissions", "allow_other", "suid", "dev", "exec", "atime", "relatime", "noatime", "nosuid", "nodev", "noexec":
				if hasVal {
					return mo, fmt.Errorf("%w: %s takes no value", ErrBadOption, key)
				}
				cfg.Passed = append(cfg.Passed, key)
			case "lowerdir", "upperdir", "workdir":
				if !hasVal || val == "" {
					return mo, fmt.Errorf("%w: %s needs a directory", ErrBadOption, key)
				}
				ov.set(key, val)
			case "volatile":
				cfg.NoFsync = true
			case "metacopy":
				on, err := boolOption(key, val, hasVal)
				if err != nil {
					return mo, err
				}
				cfg.Metacopy = on
			case "userxattr", "xino", "redirect_dir", "index", "nfs_export", "uuid", "context", "fscontext", "defcontext", "rootcontext":
				// Kernel overlayfs and SELinux options with no meaning here.
				mo.Ignored = append(mo.Ignored, o)
			case "uidmapping", "gidmapping":
				m, err := ParseIDMaps(val)
				if err != nil {
					return mo, err
				}
				if key == "uidmapping" {
					cfg.UIDMap = m
				} else {
					cfg.GIDMap = m
				}
			case "squash_to_root":
				root := uint32(0)
				cfg.SquashUID, cfg.SquashGID = &root, &root
			case "squash_to_uid", "squash_to_gid":
				id, err := strconv.ParseUint(val, 10, 32)
				if err != nil {
					return mo, fmt.Errorf("%w: %s=%q: give a numeric id", ErrBadOption, key, val)
				}
				v := uint32(id)
				if key == "squash_to_uid" {
					cfg.SquashUID = &v
				} else {
					cfg.SquashGID = &v
				}
			case "static_nlink":
				cfg.StaticNlink = true
			case "noxattrs":
				b, err := boolOption(key, val, hasVal)
				if err != nil {
					return mo, err
				}
				cfg.NoXattrs = b
			case "threaded", "noacl", "fast_ino", "writeback":
				// fuse-overlayfs tuning switches: ufs is always threaded,
				// keeps no ACLs of its own, checks inodes its own way and
				// leaves write-back caching to the kernel's defaults.
				mo.Ignored = append(mo.Ignored, o)
			case "xattr_permissions":
				switch val {
				case "0", "1", "2":
					cfg.XattrPermissions = int(val[0] - '0')
				default:
					return mo, fmt.Errorf("%w: xattr_permissions=%q: use 0 (off), 1 (security.fuseoverlayfs.override_stat) or 2 (user.fuseoverlayfs.override_stat)", ErrBadOption, val)
				}
			case "plugins":
				return mo, fmt.Errorf("%w: %q (a fuse-overlayfs option) is not supported yet", ErrBadOption, o)
			case "debug":
				mo.Debug = true
			case "log":
				mo.Log = val
			default:
				return mo, fmt.Errorf("%w: unknown option %q: see 'ufs mount --help'", ErrBadOption, o)
			}
		}
	}
	if err := ov.apply(cfg); err != nil {
		return mo, err
	}
	if err := cfg.checkMetacopy(); err != nil {
		return mo, err
	}
	return mo, nil
}

// overlayDirs collects the overlayfs-style options.
type overlayDirs struct {
	lower, upper, work string
	seen               bool
}

func (o *overlayDirs) set(key, val string) {
	o.seen = true
	switch key {
	case "lowerdir":
		o.lower = val
	case "upperdir":
		o.upper = val
	case "workdir":
		o.work = val
	}
}

// apply turns lowerdir/upperdir/workdir into branches: the upper is rw, the
// lowers (topmost first) honour whiteouts, whiteouts are written in the
// overlay format and bookkeeping goes to the workdir. Without an upperdir
// the union is read-only. Data-only lowers (after "::") hold only data for
// metacopy/redirect layers, which ufs does not follow: they are ignored.
func (o *overlayDirs) apply(cfg *Config) error {
	if !o.seen {
		return nil
	}
	if len(cfg.Branches) > 0 {
		return fmt.Errorf("%w: give either br= (aufs) or lowerdir=/upperdir= (overlay), not both", ErrBadOption)
	}
	if o.lower == "" {
		return fmt.Errorf("%w: lowerdir is required in overlay mode: -o lowerdir=DIR[:DIR...],upperdir=DIR,workdir=DIR", ErrBadOption)
	}
	if (o.upper == "") != (o.work == "") {
		return fmt.Errorf("%w: upperdir and workdir go together", ErrBadOption)
	}
	if o.upper != "" {
		cfg.Branches = append(cfg.Branches, Branch{Path: o.upper, Perm: PermRW})
		cfg.WorkDir = o.work
	}
	lowers := o.lower
	if i := strings.Index(lowers, "::"); i >= 0 {
		lowers = lowers[:i]
	}
	for _, l := range splitEscaped(lowers, ':') {
		if l == "" {
			return fmt.Errorf("%w: empty directory in lowerdir=%q", ErrBadOption, o.lower)
		}
		cfg.Branches = append(cfg.Branches, Branch{Path: l, Perm: PermROWH})
	}
	cfg.Whiteouts = FormatOverlay
	return nil
}

// splitEscaped splits s on sep, except where sep is escaped with a
// backslash (overlayfs's "\:" in lowerdir).
func splitEscaped(s string, sep byte) []string {
	var out []string
	var cur strings.Builder
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
		case s[i] == sep:
			out = append(out, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(s[i])
		}
	}
	return append(out, cur.String())
}

func boolOption(key, val string, hasVal bool) (bool, error) {
	if !hasVal {
		return true, nil
	}
	switch val {
	case "1", "on", "true", "yes":
		return true, nil
	case "0", "off", "false", "no":
		return false, nil
	}
	return false, fmt.Errorf("%w: %s=%q: use %s=0 or %s=1", ErrBadOption, key, val, key, key)
}

// splitOptions splits on commas that are not escaped with a backslash;
// other backslashes stay for the option's own parser.
func splitOptions(s string) []string {
	var out []string
	var cur strings.Builder
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '\\' && i+1 < len(s) && s[i+1] == ',':
			i++
			cur.WriteByte(s[i])
		case s[i] == ',':
			out = append(out, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(s[i])
		}
	}
	return append(out, cur.String())
}
