package fusefs

import (
	"slices"
	"strings"
	"testing"
)

func TestParseStatus(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		groups   []uint32
		capEff   uint64
		err      bool
	}{
		{"some", "Name:\tx\nGid:\t5\t5\t5\t5\nGroups:\t4 24 27 \nCapEff:\t000001ffffffffff\n", []uint32{4, 24, 27}, 0x1ffffffffff, false},
		{"none", "Groups:\t\nCapEff:\t0000000000000000\n", nil, 0, false},
		{"no caps line", "Groups:\t1\n", nil, 0, true},
		{"missing", "Name:\tx\n", nil, 0, true},
		{"bad group", "Groups:\tx\nCapEff:\t0\n", nil, 0, true},
		{"bad caps", "Groups:\t\nCapEff:\tzz\n", nil, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseStatus(strings.NewReader(tc.in))
			if (err != nil) != tc.err {
				t.Fatalf("parseStatus: error %v, want error %v", err, tc.err)
			}
			if err == nil && (!slices.Equal(got.groups, tc.groups) || got.capEff != tc.capEff) {
				t.Errorf("parseStatus = %+v, want groups %v caps %x", got, tc.groups, tc.capEff)
			}
		})
	}
}

func TestKilledMode(t *testing.T) {
	member := caller{gid: 7}
	supplementary := caller{gid: 8, groups: []uint32{3, 7}}
	other := caller{gid: 8}
	privileged := caller{gid: 8, fsetid: true}
	for _, tc := range []struct {
		mode uint32
		c    caller
		want uint32
	}{
		{0o104755, member, 0o100755},
		{0o106755, member, 0o100755}, // group-executable: sgid goes
		{0o102745, member, 0o102745}, // mandatory-locking mark stays for a member
		{0o102745, supplementary, 0o102745},
		{0o102745, other, 0o100745},      // but not for a non-member
		{0o102745, privileged, 0o102745}, // nor for a privileged caller
		{0o100644, other, 0o100644},      // nothing to clear
		{0o106745, privileged, 0o102745}, // suid always goes
	} {
		if got := killedMode(tc.mode, 7, tc.c); got != tc.want {
			t.Errorf("killedMode(%o, gid 7, %+v) = %o, want %o", tc.mode, tc.c, got, tc.want)
		}
	}
}
