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
}

// ParseOptions applies comma-separated mount options (possibly several
// -o values) to cfg. Branches from "br=" are appended after those already
// in cfg. Unknown options are an error that names them.
func ParseOptions(cfg *Config, opts []string) (MountOptions, error) {
	var mo MountOptions
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
			case "debug":
				mo.Debug = true
			case "log":
				mo.Log = val
			default:
				return mo, fmt.Errorf("%w: unknown option %q: see 'ufs mount --help'", ErrBadOption, o)
			}
		}
	}
	return mo, nil
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

// splitOptions splits on commas that are not escaped with a backslash.
func splitOptions(s string) []string {
	var out []string
	var cur strings.Builder
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '\\' && i+1 < len(s):
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
