package capability

import (
	"errors"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		last    Cap
		want    Cap
		wantErr error
	}{
		{"CAP_NET_ADMIN", 40, NET_ADMIN, nil},
		{"NET_ADMIN", 40, NET_ADMIN, nil},
		{"net_admin", 40, NET_ADMIN, nil},
		{"cap_sys_chroot", 40, SYS_CHROOT, nil},
		{" chown ", 40, CHOWN, nil},
		{"CAP_CHECKPOINT_RESTORE", 40, CHECKPOINT_RESTORE, nil},
		{"CAP_CHECKPOINT_RESTORE", 39, 0, ErrUnsupported},
		{"41", 41, 41, nil},
		{"41", 40, 0, ErrUnknown},
		{"NET_ADMN", 40, 0, ErrUnknown},
		{"", 40, 0, ErrUnknown},
		{"ALL", 40, 0, ErrUnknown},
	}
	for _, tt := range tests {
		got, err := parse(tt.name, tt.last)
		if tt.wantErr != nil {
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("parse(%q, last %d) error %v, want %v", tt.name, tt.last, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("parse(%q, last %d) = %v, %v; want %v", tt.name, tt.last, got, err, tt.want)
		}
	}
}

func TestUnknownNameErrorListsValidNames(t *testing.T) {
	_, err := parse("NET_ADMN", 40)
	msg := err.Error()
	for _, want := range []string{`"NET_ADMN"`, "CAP_CHOWN", "CAP_NET_ADMIN", "CAP_CHECKPOINT_RESTORE", "ALL"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not mention %s", msg, want)
		}
	}
	_, err = parse("CAP_BPF", 38)
	if !strings.Contains(err.Error(), "39") || !strings.Contains(err.Error(), "38") {
		t.Errorf("unsupported error %q should give the cap's number and the kernel's last", err)
	}
}

func TestStringAndNames(t *testing.T) {
	if got := NET_ADMIN.String(); got != "CAP_NET_ADMIN" {
		t.Errorf("NET_ADMIN.String() = %q", got)
	}
	if got := Cap(45).String(); got != "CAP_45" {
		t.Errorf("Cap(45).String() = %q", got)
	}
	for c := CHOWN; c <= CHECKPOINT_RESTORE; c++ {
		got, err := parse(c.String(), CHECKPOINT_RESTORE)
		if err != nil || got != c {
			t.Errorf("round trip of %d: parse(%q) = %v, %v", int(c), c.String(), got, err)
		}
	}
	s := Of(KILL, CHOWN, SYS_ADMIN)
	if got := s.String(); got != "CAP_CHOWN,CAP_KILL,CAP_SYS_ADMIN" {
		t.Errorf("String() = %q", got)
	}
	if s.Len() != 3 || !s.Has(KILL) || s.Has(SETUID) || s.Del(KILL).Has(KILL) {
		t.Errorf("set operations wrong on %v", s)
	}
	if Set(0).String() != "none" {
		t.Errorf("empty set String() = %q", Set(0).String())
	}
	if upTo(40) != 0x1ffffffffff || upTo(63) != ^Set(0) {
		t.Errorf("upTo: %x %x", upTo(40), upTo(63))
	}
}

func TestDefaultIsPodmans(t *testing.T) {
	want := []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
		"CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_SETFCAP"}
	if got := Default().Names(); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("Default() = %v, want %v", got, want)
	}
}

func TestResolve(t *testing.T) {
	const last = CHECKPOINT_RESTORE
	bounding := func() (Set, error) { return upTo(last).Del(SYS_MODULE), nil }
	def := Default()
	tests := []struct {
		name      string
		base      Set
		add, drop []string
		want      Set
		wantErr   string
	}{
		{name: "nothing", base: def, want: def},
		{name: "add one", base: def, add: []string{"NET_ADMIN"}, want: def.Add(NET_ADMIN)},
		{name: "add lower case and prefix", base: def, add: []string{"cap_sys_admin", "net_raw"}, want: def.Add(SYS_ADMIN).Add(NET_RAW)},
		{name: "drop one", base: def, drop: []string{"CAP_CHOWN"}, want: def.Del(CHOWN)},
		{name: "add present and drop absent", base: def, add: []string{"KILL"}, drop: []string{"SYS_ADMIN"}, want: def},
		{name: "drop ALL then add", base: def, add: []string{"NET_ADMIN"}, drop: []string{"all"}, want: Of(NET_ADMIN)},
		{name: "drop ALL alone", base: def, drop: []string{"ALL"}, want: 0},
		{name: "add ALL", base: def, add: []string{"ALL"}, want: upTo(last).Del(SYS_MODULE)},
		{name: "add ALL drop one", base: def, add: []string{"ALL"}, drop: []string{"NET_ADMIN"}, want: upTo(last).Del(SYS_MODULE).Del(NET_ADMIN)},
		{name: "add ALL and drop ALL", base: def, add: []string{"ALL"}, drop: []string{"ALL"}, wantErr: "not allowed"},
		{name: "add and drop the same", base: def, add: []string{"NET_ADMIN"}, drop: []string{"cap_net_admin"}, wantErr: "both added and dropped"},
		{name: "unknown add", base: def, add: []string{"NET_ADMN"}, wantErr: `unknown capability "NET_ADMN"`},
		{name: "unknown drop", base: def, drop: []string{"FOO"}, wantErr: `unknown capability "FOO"`},
		{name: "two unknown", base: def, add: []string{"FOO"}, drop: []string{"BAR"}, wantErr: `"BAR"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := resolve(tt.base, tt.add, tt.drop, last, bounding)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("resolve error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("resolve = %v\nwant %v", got, tt.want)
			}
		})
	}
}

func TestParseStatus(t *testing.T) {
	const status = "Name:\tcat\nUmask:\t0022\nCapInh:\t0000000000000000\nCapPrm:\t00000000a80425fb\n" +
		"CapEff:\t00000000a80425fb\nCapBnd:\t000001ffffffffff\nCapAmb:\t0000000000000400\nNoNewPrivs:\t0\n"
	got, err := ParseStatus(strings.NewReader(status))
	if err != nil {
		t.Fatal(err)
	}
	want := Sets{Permitted: 0xa80425fb, Effective: 0xa80425fb, Bounding: 0x1ffffffffff, Ambient: Of(NET_BIND_SERVICE)}
	if got != want {
		t.Errorf("ParseStatus = %+v, want %+v", got, want)
	}
	// 0xa80425fb is docker's old default set, which includes MKNOD.
	if !got.Effective.Has(MKNOD) || got.Effective.Has(SYS_ADMIN) {
		t.Errorf("bits misplaced: %v", got.Effective)
	}
	for _, bad := range []string{
		strings.Replace(status, "CapAmb:\t0000000000000400\n", "", 1),
		strings.Replace(status, "00000000a80425fb", "zz", 1),
	} {
		if _, err := ParseStatus(strings.NewReader(bad)); err == nil {
			t.Errorf("ParseStatus accepted %q", bad)
		}
	}
}

func TestSetsCheck(t *testing.T) {
	known := upTo(40)
	ok := []Sets{ForRoot(Default()), {Bounding: Default()},
		{Bounding: Default(), Effective: Of(KILL), Permitted: Of(KILL), Inheritable: Of(KILL), Ambient: Of(KILL)}}
	for _, s := range ok {
		if err := s.check(known); err != nil {
			t.Errorf("check(%v): %v", s, err)
		}
	}
	bad := []struct {
		s    Sets
		want string
	}{
		{Sets{Bounding: Of(45)}, "the kernel lacks"},
		{Sets{Bounding: Of(KILL), Effective: Of(KILL)}, "the effective set holds CAP_KILL, which the permitted set lacks"},
		{Sets{Bounding: Of(KILL), Permitted: Of(CHOWN)}, "which the bounding set lacks"},
		{Sets{Bounding: Of(KILL), Permitted: Of(KILL), Ambient: Of(KILL)}, "which the inheritable set lacks"},
	}
	for _, tt := range bad {
		err := tt.s.check(known)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("check(%v) = %v, want %q", tt.s, err, tt.want)
		}
	}
}

func TestForUser(t *testing.T) {
	got, err := ForUser(Default(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got != (Sets{Bounding: Default()}) {
		t.Errorf("ForUser without --cap-add = %v", got)
	}
	got, err = ForUser(Default().Add(NET_ADMIN), []string{"net_admin"})
	if err != nil {
		t.Fatal(err)
	}
	one := Of(NET_ADMIN)
	if got != (Sets{Bounding: Default().Add(NET_ADMIN), Effective: one, Permitted: one, Inheritable: one, Ambient: one}) {
		t.Errorf("ForUser with --cap-add NET_ADMIN = %v", got)
	}
	if _, err := ForUser(Default(), []string{"bogus"}); !errors.Is(err, ErrUnknown) {
		t.Errorf("ForUser with a bad name: %v", err)
	}
}
