package fusefs

import (
	"slices"
	"strings"
	"testing"

	"github.com/hanwen/go-fuse/v2/fuse"
)

func TestParseGroups(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     []uint32
		err      bool
	}{
		{"some", "Name:\tx\nGid:\t5\t5\t5\t5\nGroups:\t4 24 27 \nNStgid:\t1\n", []uint32{4, 24, 27}, false},
		{"none", "Groups:\t\n", nil, false},
		{"missing", "Name:\tx\n", nil, true},
		{"bad", "Groups:\tx\n", nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseGroups(strings.NewReader(tc.in))
			if (err != nil) != tc.err || !slices.Equal(got, tc.want) {
				t.Errorf("parseGroups = %v, %v; want %v, error %v", got, err, tc.want, tc.err)
			}
		})
	}
}

func TestKilledMode(t *testing.T) {
	member := &fuse.InHeader{Caller: fuse.Caller{Owner: fuse.Owner{Gid: 7}}}
	other := &fuse.InHeader{Caller: fuse.Caller{Owner: fuse.Owner{Gid: 8}}}
	for _, tc := range []struct {
		mode     uint32
		hdr      *fuse.InHeader
		noFSETID bool
		want     uint32
	}{
		{0o104755, member, true, 0o100755},
		{0o106755, member, true, 0o100755}, // group-executable: sgid goes
		{0o102745, member, true, 0o102745}, // mandatory-locking mark stays for a member
		{0o102745, other, true, 0o100745},  // but not for a non-member
		{0o102745, other, false, 0o102745}, // nor for a privileged caller
		{0o100644, other, true, 0o100644},  // nothing to clear
		{0o106745, other, false, 0o102745}, // suid always goes
	} {
		if got := killedMode(tc.mode, 7, tc.hdr, tc.noFSETID); got != tc.want {
			t.Errorf("killedMode(%o, gid 7, caller gid %d, noFSETID %v) = %o, want %o", tc.mode, tc.hdr.Gid, tc.noFSETID, got, tc.want)
		}
	}
}
