package fusefs_test

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/urun-dev/urun/fusefs"
)

// Unit tests: no mount, they run under -short too.

func TestParsePerm(t *testing.T) {
	tests := []struct {
		in      string
		want    fusefs.Perm
		wantErr bool
	}{
		{in: "rw", want: fusefs.PermRW},
		{in: "ro", want: fusefs.PermRO},
		{in: "rr", want: fusefs.PermRO},
		{in: "wh", want: fusefs.PermROWH},
		{in: "ro+wh", want: fusefs.PermROWH},
		{in: "rr+wh", want: fusefs.PermROWH},
		{in: "", wantErr: true},
		{in: "RW", wantErr: true},
		{in: "rw+wh", wantErr: true},
		{in: "write", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := fusefs.ParsePerm(tt.in)
			if tt.wantErr {
				if !errors.Is(err, fusefs.ErrBadBranch) {
					t.Fatalf("ParsePerm(%q) = %v, %v; want ErrBadBranch", tt.in, got, err)
				}
				if !strings.Contains(err.Error(), tt.in) {
					t.Errorf("error %q does not name %q", err, tt.in)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParsePerm(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestPermString(t *testing.T) {
	for p, want := range map[fusefs.Perm]string{fusefs.PermRW: "rw", fusefs.PermROWH: "wh", fusefs.PermRO: "ro"} {
		if got := p.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", p, got, want)
		}
		back, err := fusefs.ParsePerm(want)
		if err != nil || back != p {
			t.Errorf("ParsePerm(%q) = %v, %v; want %v", want, back, err, p)
		}
	}
}

func TestParseBranch(t *testing.T) {
	tests := []struct {
		name    string
		spec    string
		first   bool
		want    fusefs.Branch
		wantErr bool
	}{
		{name: "rw", spec: "/a=rw", want: fusefs.Branch{Path: "/a", Perm: fusefs.PermRW}},
		{name: "ro", spec: "/a=ro", want: fusefs.Branch{Path: "/a", Perm: fusefs.PermRO}},
		{name: "wh", spec: "/a=wh", want: fusefs.Branch{Path: "/a", Perm: fusefs.PermROWH}},
		{name: "ro+wh", spec: "/a=ro+wh", want: fusefs.Branch{Path: "/a", Perm: fusefs.PermROWH}},
		{name: "explicit perm of first", spec: "/a=ro", first: true, want: fusefs.Branch{Path: "/a", Perm: fusefs.PermRO}},
		{name: "default first is rw", spec: "/a", first: true, want: fusefs.Branch{Path: "/a", Perm: fusefs.PermRW}},
		{name: "default other is ro", spec: "/a", want: fusefs.Branch{Path: "/a", Perm: fusefs.PermRO}},
		{name: "relative", spec: "a/b=rw", want: fusefs.Branch{Path: "a/b", Perm: fusefs.PermRW}},
		{name: "equals in dir", spec: "/a=b=wh", want: fusefs.Branch{Path: "/a=b", Perm: fusefs.PermROWH}},
		{name: "space in dir", spec: "/a b=rw", want: fusefs.Branch{Path: "/a b", Perm: fusefs.PermRW}},
		{name: "empty", spec: "", wantErr: true},
		{name: "empty first", spec: "", first: true, wantErr: true},
		{name: "no dir", spec: "=rw", wantErr: true},
		{name: "unknown perm", spec: "/a=rx", wantErr: true},
		{name: "unknown perm of first", spec: "/a=rx", first: true, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := fusefs.ParseBranch(tt.spec, tt.first)
			if tt.wantErr {
				if !errors.Is(err, fusefs.ErrBadBranch) {
					t.Fatalf("ParseBranch(%q, %v) = %+v, %v; want ErrBadBranch", tt.spec, tt.first, got, err)
				}
				if tt.spec != "" && !strings.Contains(err.Error(), tt.spec) {
					t.Errorf("error %q does not name %q", err, tt.spec)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseBranch(%q, %v) = %+v, %v; want %+v", tt.spec, tt.first, got, err, tt.want)
			}
		})
	}
}

func TestParseBranches(t *testing.T) {
	rw := fusefs.PermRW
	ro := fusefs.PermRO
	wh := fusefs.PermROWH
	tests := []struct {
		name    string
		in      string
		want    []fusefs.Branch
		wantErr bool
	}{
		{name: "three", in: "/up=rw:/mid=wh:/low=ro", want: []fusefs.Branch{{"/up", rw}, {"/mid", wh}, {"/low", ro}}},
		{name: "one", in: "/up=rw", want: []fusefs.Branch{{"/up", rw}}},
		{name: "defaults", in: "/up:/low", want: []fusefs.Branch{{"/up", rw}, {"/low", ro}}},
		{name: "read-only top", in: "/a=ro:/b=ro", want: []fusefs.Branch{{"/a", ro}, {"/b", ro}}},
		{name: "several rw", in: "/a=rw:/b=rw:/c=rr", want: []fusefs.Branch{{"/a", rw}, {"/b", rw}, {"/c", ro}}},
		{name: "empty", in: "", wantErr: true},
		{name: "empty middle", in: "/a=rw::/b=ro", wantErr: true},
		{name: "trailing colon", in: "/a=rw:", wantErr: true},
		{name: "leading colon", in: ":/a=rw", wantErr: true},
		{name: "bad perm", in: "/a=rw:/b=xx", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := fusefs.ParseBranches(tt.in)
			if tt.wantErr {
				if !errors.Is(err, fusefs.ErrBadBranch) {
					t.Fatalf("ParseBranches(%q) = %+v, %v; want ErrBadBranch", tt.in, got, err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("ParseBranches(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestParseOptions(t *testing.T) {
	base := []fusefs.Branch{{Path: "/given", Perm: fusefs.PermRW}}
	tests := []struct {
		name    string
		opts    []string
		start   []fusefs.Branch // cfg.Branches before parsing
		want    fusefs.Config   // Branches, Reval, Timeout, NoFsync, NoPassthrough, ReadOnly, Passed
		wantMO  fusefs.MountOptions
		wantErr error
		errHas  string // the error names this
	}{
		{name: "none", opts: nil},
		{name: "empty list", opts: []string{""}},
		{name: "empty items", opts: []string{",,ro,,"}, want: fusefs.Config{ReadOnly: true}},
		{name: "br", opts: []string{"br=/a=rw:/b=ro"},
			want: fusefs.Config{Branches: []fusefs.Branch{{"/a", fusefs.PermRW}, {"/b", fusefs.PermRO}}}},
		{name: "dirs alias", opts: []string{"dirs=/a=rw:/b=wh"},
			want: fusefs.Config{Branches: []fusefs.Branch{{"/a", fusefs.PermRW}, {"/b", fusefs.PermROWH}}}},
		{name: "br appends to given", opts: []string{"br=/b=ro"}, start: base,
			want: fusefs.Config{Branches: []fusefs.Branch{{"/given", fusefs.PermRW}, {"/b", fusefs.PermRO}}}},
		{name: "br twice appends", opts: []string{"br=/a=rw", "br=/b=ro"},
			want: fusefs.Config{Branches: []fusefs.Branch{{"/a", fusefs.PermRW}, {"/b", fusefs.PermRO}}}},
		{name: "escaped comma", opts: []string{`br=/a\,b=rw,ro`},
			want: fusefs.Config{Branches: []fusefs.Branch{{"/a,b", fusefs.PermRW}}, ReadOnly: true}},
		{name: "br without value", opts: []string{"br"}, wantErr: fusefs.ErrBadOption, errHas: "br"},
		{name: "br empty", opts: []string{"br="}, wantErr: fusefs.ErrBadOption, errHas: "br"},
		{name: "br bad perm", opts: []string{"br=/a=zz"}, wantErr: fusefs.ErrBadBranch, errHas: "zz"},
		{name: "udba=reval", opts: []string{"udba=reval"}, want: fusefs.Config{Reval: true}},
		{name: "udba=notify", opts: []string{"udba=notify"}, want: fusefs.Config{Reval: true}},
		{name: "udba=none after reval", opts: []string{"udba=reval,udba=none"}, want: fusefs.Config{}},
		{name: "udba bad", opts: []string{"udba=sometimes"}, wantErr: fusefs.ErrBadOption, errHas: "sometimes"},
		{name: "udba without value", opts: []string{"udba"}, wantErr: fusefs.ErrBadOption, errHas: "udba"},
		{name: "timeout", opts: []string{"timeout=2"}, want: fusefs.Config{Timeout: 2 * time.Second}},
		{name: "timeout fraction", opts: []string{"timeout=0.25"}, want: fusefs.Config{Timeout: 250 * time.Millisecond}},
		{name: "timeout zero revalidates", opts: []string{"timeout=0"}, want: fusefs.Config{Reval: true}},
		{name: "timeout negative", opts: []string{"timeout=-1"}, wantErr: fusefs.ErrBadOption, errHas: "-1"},
		{name: "timeout not a number", opts: []string{"timeout=soon"}, wantErr: fusefs.ErrBadOption, errHas: "soon"},
		{name: "timeout without value", opts: []string{"timeout"}, wantErr: fusefs.ErrBadOption, errHas: "timeout"},
		{name: "fsync", opts: []string{"fsync"}, want: fusefs.Config{}},
		{name: "fsync=0", opts: []string{"fsync=0"}, want: fusefs.Config{NoFsync: true}},
		{name: "fsync=off", opts: []string{"fsync=off"}, want: fusefs.Config{NoFsync: true}},
		{name: "fsync=no", opts: []string{"fsync=no"}, want: fusefs.Config{NoFsync: true}},
		{name: "fsync=false", opts: []string{"fsync=false"}, want: fusefs.Config{NoFsync: true}},
		{name: "fsync=1 after 0", opts: []string{"fsync=0", "fsync=1"}, want: fusefs.Config{}},
		{name: "fsync=on", opts: []string{"fsync=0,fsync=on"}, want: fusefs.Config{}},
		{name: "fsync=yes", opts: []string{"fsync=0,fsync=yes"}, want: fusefs.Config{}},
		{name: "fsync=true", opts: []string{"fsync=0,fsync=true"}, want: fusefs.Config{}},
		{name: "fsync bad", opts: []string{"fsync=2"}, wantErr: fusefs.ErrBadOption, errHas: "fsync"},
		{name: "passthrough=0", opts: []string{"passthrough=0"}, want: fusefs.Config{NoPassthrough: true}},
		{name: "passthrough", opts: []string{"passthrough=0,passthrough"}, want: fusefs.Config{}},
		{name: "passthrough bad", opts: []string{"passthrough=maybe"}, wantErr: fusefs.ErrBadOption, errHas: "maybe"},
		{name: "ro", opts: []string{"ro"}, want: fusefs.Config{ReadOnly: true}},
		{name: "generic flags", opts: []string{"rw,default_permissions,allow_other,suid,dev,exec,atime,relatime,noatime,nosuid,nodev,noexec"},
			want: fusefs.Config{Passed: []string{"rw", "default_permissions", "allow_other", "suid", "dev", "exec", "atime", "relatime", "noatime", "nosuid", "nodev", "noexec"}}},
		{name: "generic flag with value", opts: []string{"nosuid=1"}, wantErr: fusefs.ErrBadOption, errHas: "nosuid"},
		{name: "debug", opts: []string{"debug"}, wantMO: fusefs.MountOptions{Debug: true}},
		{name: "log", opts: []string{"log=/var/log/ufs.log"}, wantMO: fusefs.MountOptions{Log: "/var/log/ufs.log"}},
		{name: "several lists", opts: []string{"br=/a=rw,debug", "udba=reval,nodev"},
			want:   fusefs.Config{Branches: []fusefs.Branch{{"/a", fusefs.PermRW}}, Reval: true, Passed: []string{"nodev"}},
			wantMO: fusefs.MountOptions{Debug: true}},
		{name: "unknown", opts: []string{"ro,frobnicate=on"}, wantErr: fusefs.ErrBadOption, errHas: "frobnicate=on"},
		{name: "unknown bare", opts: []string{"frobnicate"}, wantErr: fusefs.ErrBadOption, errHas: "frobnicate"},
		{name: "xattr_permissions off", opts: []string{"xattr_permissions=0"}},
		{name: "ignored switches are named", opts: []string{"threaded=1,noacl,fast_ino=1,writeback=0,userxattr,context=\"x\""},
			wantMO: fusefs.MountOptions{Ignored: []string{"threaded=1", "noacl", "fast_ino=1", "writeback=0", "userxattr", "context=\"x\""}}},
		{name: "xattr_permissions privileged", opts: []string{"xattr_permissions=1"}, want: fusefs.Config{XattrPermissions: 1}},
		{name: "xattr_permissions user", opts: []string{"xattr_permissions=2"}, want: fusefs.Config{XattrPermissions: 2}},
		{name: "xattr_permissions out of range", opts: []string{"xattr_permissions=3"}, wantErr: fusefs.ErrBadOption, errHas: "xattr_permissions=\"3\""},
		{name: "xattr_permissions without value", opts: []string{"xattr_permissions"}, wantErr: fusefs.ErrBadOption, errHas: "xattr_permissions"},
		{name: "plugins", opts: []string{"plugins=/x.so"}, wantErr: fusefs.ErrBadOption, errHas: "plugins"},
		{name: "metacopy=on in overlay mode", opts: []string{"lowerdir=/l,upperdir=/u,workdir=/w,metacopy=on"},
			want: fusefs.Config{Branches: []fusefs.Branch{{"/u", fusefs.PermRW}, {"/l", fusefs.PermROWH}}, Metacopy: true}},
		{name: "metacopy bare", opts: []string{"metacopy,lowerdir=/l"},
			want: fusefs.Config{Branches: []fusefs.Branch{{"/l", fusefs.PermROWH}}, Metacopy: true}},
		{name: "metacopy=off", opts: []string{"lowerdir=/l,metacopy=on,metacopy=off"},
			want: fusefs.Config{Branches: []fusefs.Branch{{"/l", fusefs.PermROWH}}}},
		{name: "metacopy=off in aufs mode", opts: []string{"br=/a=rw,metacopy=off"},
			want: fusefs.Config{Branches: []fusefs.Branch{{"/a", fusefs.PermRW}}}},
		{name: "metacopy bad value", opts: []string{"lowerdir=/l,metacopy=sometimes"}, wantErr: fusefs.ErrBadOption, errHas: "sometimes"},
		{name: "metacopy=on in aufs mode", opts: []string{"br=/a=rw:/b=ro,metacopy=on"}, wantErr: fusefs.ErrBadOption, errHas: "lowerdir="},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := fusefs.Config{Branches: slices.Clone(tt.start)}
			mo, err := fusefs.ParseOptions(&cfg, tt.opts)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("ParseOptions(%q) = %v; want %v", tt.opts, err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.errHas) {
					t.Errorf("error %q does not name %q", err, tt.errHas)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseOptions(%q): %v", tt.opts, err)
			}
			if !reflect.DeepEqual(mo, tt.wantMO) {
				t.Errorf("MountOptions = %+v, want %+v", mo, tt.wantMO)
			}
			got := fusefs.Config{
				Branches: cfg.Branches, Reval: cfg.Reval, Timeout: cfg.Timeout, NoFsync: cfg.NoFsync,
				NoPassthrough: cfg.NoPassthrough, ReadOnly: cfg.ReadOnly, Passed: cfg.Passed,
				XattrPermissions: cfg.XattrPermissions, Metacopy: cfg.Metacopy,
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Config = %+v\n want %+v", got, tt.want)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	type layout struct {
		dir      string // a fresh directory for the case
		branches []fusefs.Branch
		mnt      string
	}
	mkdir := func(t *testing.T, p string) string {
		t.Helper()
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	br := func(p string, perm fusefs.Perm) fusefs.Branch { return fusefs.Branch{Path: p, Perm: perm} }
	tests := []struct {
		name    string
		setup   func(t *testing.T, l *layout)
		wantErr error
		errHas  []string // the error names these (relative to l.dir)
	}{
		{
			name: "ok",
			setup: func(t *testing.T, l *layout) {
				l.branches = []fusefs.Branch{br(mkdir(t, l.dir+"/up"), fusefs.PermRW), br(mkdir(t, l.dir+"/low"), fusefs.PermRO)}
				l.mnt = mkdir(t, l.dir+"/mnt")
			},
		},
		{
			name: "ok without mountpoint",
			setup: func(t *testing.T, l *layout) {
				l.branches = []fusefs.Branch{br(mkdir(t, l.dir+"/up"), fusefs.PermRW)}
			},
		},
		{
			name: "sibling with common prefix is not nested",
			setup: func(t *testing.T, l *layout) {
				l.branches = []fusefs.Branch{br(mkdir(t, l.dir+"/a/b"), fusefs.PermRW), br(mkdir(t, l.dir+"/a/bc"), fusefs.PermRO)}
				l.mnt = mkdir(t, l.dir+"/a/b-mnt")
			},
		},
		{
			name:    "no branches",
			setup:   func(t *testing.T, l *layout) {},
			wantErr: fusefs.ErrNoBranches,
		},
		{
			name: "missing branch",
			setup: func(t *testing.T, l *layout) {
				l.branches = []fusefs.Branch{br(mkdir(t, l.dir+"/up"), fusefs.PermRW), br(l.dir+"/nonexistent", fusefs.PermRO)}
			},
			wantErr: fusefs.ErrBadBranch,
			errHas:  []string{"/nonexistent", "does not exist"},
		},
		{
			name: "not a directory",
			setup: func(t *testing.T, l *layout) {
				writeFile(t, l.dir+"/file", "", 0o644)
				l.branches = []fusefs.Branch{br(l.dir+"/file", fusefs.PermRW)}
			},
			wantErr: fusefs.ErrBadBranch,
			errHas:  []string{"/file", "not a directory"},
		},
		{
			name: "nested branches",
			setup: func(t *testing.T, l *layout) {
				l.branches = []fusefs.Branch{br(mkdir(t, l.dir+"/a/inner"), fusefs.PermRW), br(l.dir+"/a", fusefs.PermRO)}
			},
			wantErr: fusefs.ErrBadBranch,
			errHas:  []string{"/a/inner", "inside"},
		},
		{
			name: "nested branches, outer first",
			setup: func(t *testing.T, l *layout) {
				mkdir(t, l.dir+"/a/inner")
				l.branches = []fusefs.Branch{br(l.dir+"/a", fusefs.PermRW), br(l.dir+"/a/inner", fusefs.PermRO)}
			},
			wantErr: fusefs.ErrBadBranch,
			errHas:  []string{"/a/inner", "inside"},
		},
		{
			name: "duplicate",
			setup: func(t *testing.T, l *layout) {
				l.branches = []fusefs.Branch{br(mkdir(t, l.dir+"/a"), fusefs.PermRW), br(l.dir+"/a", fusefs.PermRO)}
			},
			wantErr: fusefs.ErrBadBranch,
			errHas:  []string{"/a", "twice"},
		},
		{
			name: "duplicate spelled differently",
			setup: func(t *testing.T, l *layout) {
				mkdir(t, l.dir+"/a")
				mkdir(t, l.dir+"/b")
				l.branches = []fusefs.Branch{br(l.dir+"/a", fusefs.PermRW), br(l.dir+"/b/../a/", fusefs.PermRO)}
			},
			wantErr: fusefs.ErrBadBranch,
			errHas:  []string{"/a", "twice"},
		},
		{
			name: "duplicate through a symlink",
			setup: func(t *testing.T, l *layout) {
				mkdir(t, l.dir+"/a")
				if err := os.Symlink("a", l.dir+"/link"); err != nil {
					t.Fatal(err)
				}
				l.branches = []fusefs.Branch{br(l.dir+"/a", fusefs.PermRW), br(l.dir+"/link", fusefs.PermRO)}
			},
			wantErr: fusefs.ErrBadBranch,
			errHas:  []string{"/a", "twice"},
		},
		{
			name: "branch inside mountpoint",
			setup: func(t *testing.T, l *layout) {
				l.mnt = mkdir(t, l.dir+"/mnt")
				l.branches = []fusefs.Branch{br(mkdir(t, l.dir+"/mnt/up"), fusefs.PermRW)}
			},
			wantErr: fusefs.ErrBadBranch,
			errHas:  []string{"/mnt/up", "mountpoint"},
		},
		{
			name: "mountpoint inside branch",
			setup: func(t *testing.T, l *layout) {
				l.branches = []fusefs.Branch{br(mkdir(t, l.dir+"/up"), fusefs.PermRW)}
				l.mnt = mkdir(t, l.dir+"/up/mnt")
			},
			wantErr: fusefs.ErrBadBranch,
			errHas:  []string{"/up/mnt", "mountpoint"},
		},
		{
			name: "mountpoint is a branch",
			setup: func(t *testing.T, l *layout) {
				l.branches = []fusefs.Branch{br(mkdir(t, l.dir+"/up"), fusefs.PermRW)}
				l.mnt = l.dir + "/up"
			},
			wantErr: fusefs.ErrBadBranch,
			errHas:  []string{"/up", "mountpoint"},
		},
		{
			name: "mountpoint inside branch through a symlink",
			setup: func(t *testing.T, l *layout) {
				l.branches = []fusefs.Branch{br(mkdir(t, l.dir+"/up"), fusefs.PermRW)}
				mkdir(t, l.dir+"/up/mnt")
				if err := os.Symlink("up/mnt", l.dir+"/mntlink"); err != nil {
					t.Fatal(err)
				}
				l.mnt = l.dir + "/mntlink"
			},
			wantErr: fusefs.ErrBadBranch,
			errHas:  []string{"/up/mnt", "mountpoint"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := &layout{dir: t.TempDir()}
			tt.setup(t, l)
			cfg := fusefs.Config{Branches: l.branches}
			err := cfg.Validate(l.mnt)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				for _, b := range cfg.Branches {
					if !filepath.IsAbs(b.Path) {
						t.Errorf("branch %q not made absolute", b.Path)
					}
				}
				return
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Validate = %v, want %v", err, tt.wantErr)
			}
			for _, s := range tt.errHas {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
		})
	}
}

// TestValidateRelative checks that Validate turns relative branch paths
// into absolute ones (the daemon may change directory later).
func TestValidateRelative(t *testing.T) {
	dir := t.TempDir()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	rel, err := filepath.Rel(wd, dir)
	if err != nil {
		t.Skipf("no relative path from %s to %s: %v", wd, dir, err)
	}
	cfg := fusefs.Config{Branches: []fusefs.Branch{{Path: rel, Perm: fusefs.PermRW}}}
	if err := cfg.Validate(""); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	want, _ := filepath.EvalSymlinks(dir)
	if cfg.Branches[0].Path != want {
		t.Errorf("branch path %q, want %q", cfg.Branches[0].Path, want)
	}
}

// TestValidateAccess checks that a branch the caller cannot use is refused
// with a message that names it. Root passes every permission check, so
// this runs unprivileged only.
func TestValidateAccess(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root bypasses directory permissions; runs unprivileged (make test-unit as a user, make test-rootless)")
	}
	dir := t.TempDir()
	tests := []struct {
		name string
		mode os.FileMode
		perm fusefs.Perm
		ok   bool
	}{
		{name: "unreadable ro", mode: 0o311, perm: fusefs.PermRO},
		{name: "unsearchable ro", mode: 0o600, perm: fusefs.PermRO},
		{name: "read-only dir as rw", mode: 0o555, perm: fusefs.PermRW},
		{name: "read-only dir as ro", mode: 0o555, perm: fusefs.PermRO, ok: true},
		{name: "read-only dir as wh", mode: 0o555, perm: fusefs.PermROWH, ok: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "-"))
			if err := os.Mkdir(p, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(p, tt.mode); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.Chmod(p, 0o755) })
			cfg := fusefs.Config{Branches: []fusefs.Branch{{Path: p, Perm: tt.perm}}}
			err := cfg.Validate("")
			if tt.ok {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if !errors.Is(err, fusefs.ErrBadBranch) || !strings.Contains(err.Error(), p) {
				t.Fatalf("Validate = %v, want ErrBadBranch naming %s", err, p)
			}
		})
	}
}

func TestParseMountpoints(t *testing.T) {
	const mountinfo = `22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
23 22 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
40 22 0:35 / /mnt/my\040union rw,nosuid,nodev,relatime shared:20 - fuse.ufs /up rw,user_id=0,group_id=0
41 22 0:36 / /mnt/tab\011and\134backslash rw - tmpfs tmpfs rw
42 22 0:37 / /mnt/new\012line rw - tmpfs tmpfs rw
43 22 0:38 / /mnt/trailing\040 rw - tmpfs tmpfs rw
44 22 0:39 / /mnt/not\04an\9escape rw - tmpfs tmpfs rw
short line

45 22 0:40 /sub /mnt/bind rw - ext4 /dev/sda1 rw
`
	got, err := fusefs.ParseMountpoints(strings.NewReader(mountinfo))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"/",
		"/proc",
		"/mnt/my union",
		"/mnt/tab\tand\\backslash",
		"/mnt/new\nline",
		"/mnt/trailing ",
		`/mnt/not\04an\9escape`,
		"/mnt/bind",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ParseMountpoints:\n got %q\nwant %q", got, want)
	}
}

func TestParseMountpointsEmpty(t *testing.T) {
	got, err := fusefs.ParseMountpoints(strings.NewReader(""))
	if err != nil || len(got) != 0 {
		t.Errorf("ParseMountpoints(\"\") = %q, %v; want nothing", got, err)
	}
}

// TestParseMountpointsLongLine checks that a mountinfo line longer than
// bufio's default 64 KiB token (a mount with very many options) does not
// stop the scan.
func TestParseMountpointsLongLine(t *testing.T) {
	long := "50 22 0:41 / /mnt/long rw - tmpfs tmpfs rw," + strings.Repeat("x", 100<<10) + "\n"
	got, err := fusefs.ParseMountpoints(strings.NewReader(long + "51 22 0:42 / /mnt/after rw - tmpfs tmpfs rw\n"))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"/mnt/long", "/mnt/after"}; !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestIsMountpoint(t *testing.T) {
	for _, tt := range []struct {
		path string
		want bool
	}{
		{"/", true},
		{"/proc", true},
		{"/proc/", true},
		{t.TempDir(), false},
	} {
		got, err := fusefs.IsMountpoint(tt.path)
		if err != nil || got != tt.want {
			t.Errorf("IsMountpoint(%q) = %v, %v; want %v", tt.path, got, err, tt.want)
		}
	}
}

// TestNewOptions checks how a Config turns into go-fuse mount options,
// without mounting.
func TestNewOptions(t *testing.T) {
	second := time.Second
	def := fusefs.DefaultTimeout
	zero := time.Duration(0)
	tests := []struct {
		name        string
		cfg         func(up, low string) fusefs.Config
		timeout     time.Duration
		symlinkCach bool
		ro          bool
		flags       []string // among the FUSE mount options
	}{
		{
			name:        "default",
			cfg:         func(up, low string) fusefs.Config { return fusefs.Config{Branches: rwro(up, low)} },
			timeout:     def,
			symlinkCach: true,
		},
		{
			name:    "timeout",
			cfg:     func(up, low string) fusefs.Config { return fusefs.Config{Branches: rwro(up, low), Timeout: 3 * second} },
			timeout: 3 * second, symlinkCach: true,
		},
		{
			name: "reval",
			cfg: func(up, low string) fusefs.Config {
				return fusefs.Config{Branches: rwro(up, low), Reval: true, Timeout: 3 * second}
			},
			timeout: zero,
		},
		{
			name: "no rw branch",
			cfg: func(up, low string) fusefs.Config {
				return fusefs.Config{Branches: []fusefs.Branch{{Path: up, Perm: fusefs.PermROWH}, {Path: low, Perm: fusefs.PermRO}}}
			},
			timeout: def, symlinkCach: true, ro: true,
		},
		{
			name:    "read-only",
			cfg:     func(up, low string) fusefs.Config { return fusefs.Config{Branches: rwro(up, low), ReadOnly: true} },
			timeout: def, symlinkCach: true, ro: true,
		},
		{
			name: "passed flags",
			cfg: func(up, low string) fusefs.Config {
				return fusefs.Config{Branches: rwro(up, low), Passed: []string{"nosuid", "nodev", "noexec", "noatime"}}
			},
			timeout: def, symlinkCach: true, flags: []string{"nosuid", "nodev", "noexec", "noatime"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up, low := t.TempDir(), t.TempDir()
			u, err := fusefs.New(tt.cfg(up, low))
			if err != nil {
				t.Fatal(err)
			}
			defer u.Close()
			o := u.Options()
			if o.EntryTimeout == nil || *o.EntryTimeout != tt.timeout || o.AttrTimeout == nil || *o.AttrTimeout != tt.timeout {
				t.Errorf("entry/attr timeout %v/%v, want %v", o.EntryTimeout, o.AttrTimeout, tt.timeout)
			}
			if o.NegativeTimeout == nil || *o.NegativeTimeout != tt.timeout {
				t.Errorf("negative timeout %v, want %v", o.NegativeTimeout, tt.timeout)
			}
			if o.EnableSymlinkCaching != tt.symlinkCach {
				t.Errorf("EnableSymlinkCaching = %v, want %v", o.EnableSymlinkCaching, tt.symlinkCach)
			}
			if got := slices.Contains(o.Options, "ro"); got != tt.ro {
				t.Errorf("options %q: ro = %v, want %v", o.Options, got, tt.ro)
			}
			for _, f := range tt.flags {
				if !slices.Contains(o.Options, f) {
					t.Errorf("options %q lack %q", o.Options, f)
				}
			}
			if o.RootStableAttr == nil || o.RootStableAttr.Ino != 1 {
				t.Errorf("root inode %+v, want 1", o.RootStableAttr)
			}
			// A read-only union writes nothing into its branches.
			if tt.ro {
				if ents, _ := os.ReadDir(up); len(ents) != 0 {
					t.Errorf("read-only union wrote into %s: %v", up, ents)
				}
			}
		})
	}
}

func rwro(up, low string) []fusefs.Branch {
	return []fusefs.Branch{{Path: up, Perm: fusefs.PermRW}, {Path: low, Perm: fusefs.PermRO}}
}

// TestNewNoBranches checks that New refuses an empty stack.
func TestNewNoBranches(t *testing.T) {
	if _, err := fusefs.New(fusefs.Config{}); !errors.Is(err, fusefs.ErrNoBranches) {
		t.Errorf("New(empty) = %v, want ErrNoBranches", err)
	}
}

// TestNewCleansStaging checks that leftovers of an interrupted copy-up in
// an rw branch's staging directory are removed when the union starts, and
// that the rest of the branch is left alone.
func TestNewCleansStaging(t *testing.T) {
	up := t.TempDir()
	work := filepath.Join(up, ".wh..wh.work")
	writeFile(t, filepath.Join(work, "t1.123"), "half a copy", 0o600)
	writeFile(t, filepath.Join(work, "tdir", "inner"), "half a dir", 0o600)
	writeFile(t, filepath.Join(up, "keep"), "keep", 0o644)
	u, err := fusefs.New(fusefs.Config{Branches: []fusefs.Branch{{Path: up, Perm: fusefs.PermRW}}})
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	if ents, err := os.ReadDir(work); err != nil || len(ents) != 0 {
		t.Errorf("staging directory after New: %v, %v; want empty", ents, err)
	}
	wantContent(t, filepath.Join(up, "keep"), "keep")
}
