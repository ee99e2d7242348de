package container

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseVolume(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		spec string
		want Mount
		err  string
	}{
		{dir + ":/data", Mount{Type: "bind", Source: dir, Destination: "/data"}, ""},
		{dir + ":/data/:ro", Mount{Type: "bind", Source: dir, Destination: "/data", ReadOnly: true}, ""},
		{dir + ":/data:ro,Z", Mount{Type: "bind", Source: dir, Destination: "/data", ReadOnly: true}, ""},
		{dir + ":/data:rw", Mount{Type: "bind", Source: dir, Destination: "/data"}, ""},
		{"vol:/data", Mount{}, "named volumes are not supported"},
		{dir, Mount{}, "want HOST-PATH:CONTAINER-PATH"},
		{dir + ":rel", Mount{}, "must be absolute"},
		{dir + ":/x:bogus", Mount{}, `unknown option "bogus"`},
		{dir + "/missing:/x", Mount{}, "no such file or directory"},
		{":/x", Mount{}, "empty path"},
		{"a:b:c:d", Mount{}, "want HOST-PATH"},
	}
	for _, tc := range tests {
		got, err := ParseVolume(tc.spec)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: err %v, want %q", tc.spec, err, tc.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%q: %+v, %v; want %+v", tc.spec, got, err, tc.want)
		}
	}
}

func TestParseTmpfs(t *testing.T) {
	tests := []struct {
		spec string
		want Mount
		err  string
	}{
		{"/tmp", Mount{Type: "tmpfs", Destination: "/tmp", Options: []string{"nosuid", "nodev"}}, ""},
		{"/t:size=1m,mode=700,noexec,dev", Mount{Type: "tmpfs", Destination: "/t", Options: []string{"nosuid", "size=1m", "mode=700", "noexec"}}, ""},
		{"/t:ro", Mount{Type: "tmpfs", Destination: "/t", ReadOnly: true, Options: []string{"nosuid", "nodev"}}, ""},
		{"t", Mount{}, "must be absolute"},
		{"/t:bogus=1", Mount{}, `unknown option "bogus=1"`},
	}
	for _, tc := range tests {
		got, err := ParseTmpfs(tc.spec)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: err %v, want %q", tc.spec, err, tc.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%q: %+v, %v; want %+v", tc.spec, got, err, tc.want)
		}
	}
}

func TestEnv(t *testing.T) {
	lookup := func(k string) (string, bool) {
		v, ok := map[string]string{"HOSTVAR": "h"}[k]
		return v, ok
	}
	got, err := ParseEnv([]string{"A=1", "HOSTVAR", "UNSET", "B=", "C=x=y"}, lookup)
	if err != nil || !reflect.DeepEqual(got, []string{"A=1", "HOSTVAR=h", "B=", "C=x=y"}) {
		t.Errorf("ParseEnv: %v, %v", got, err)
	}
	if _, err := ParseEnv([]string{"=x"}, lookup); err == nil {
		t.Error("empty name accepted")
	}
	f, err := ParseEnvFile(strings.NewReader("# c\n\n  A=1\nHOSTVAR\n"), "f", lookup)
	if err != nil || !reflect.DeepEqual(f, []string{"A=1", "HOSTVAR=h"}) {
		t.Errorf("ParseEnvFile: %v, %v", f, err)
	}
	if _, err := ParseEnvFile(strings.NewReader("ok=1\n=bad\n"), "f", lookup); err == nil || !strings.Contains(err.Error(), "f:2") {
		t.Errorf("ParseEnvFile bad line: %v", err)
	}
	m := MergeEnv([]string{"PATH=/bin", "A=1"}, []string{"A=2", "B=3"}, []string{"PATH=/x"})
	if !reflect.DeepEqual(m, []string{"PATH=/x", "A=2", "B=3"}) {
		t.Errorf("MergeEnv: %v", m)
	}
}

func TestResolveUser(t *testing.T) {
	passwd := "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\nbad line\n"
	group := "root:x:0:\nwheel:x:10:alice,bob\nalice:x:1000:\naudio:x:29:bob,alice\n"
	tests := []struct {
		spec string
		want Identity
		err  string
	}{
		{"", Identity{0, 0, nil, "/root"}, ""},
		{"alice", Identity{1000, 1000, []uint32{10, 29}, "/home/alice"}, ""},
		{"1000", Identity{1000, 1000, []uint32{10, 29}, "/home/alice"}, ""},
		{"alice:wheel", Identity{1000, 10, nil, "/home/alice"}, ""},
		{"alice:77", Identity{1000, 77, nil, "/home/alice"}, ""},
		{"4321", Identity{4321, 0, nil, "/"}, ""},
		{"bob", Identity{}, "unable to find user bob"},
		{"alice:nogroup", Identity{}, "unable to find group nogroup"},
	}
	for _, tc := range tests {
		got, err := ResolveUser(tc.spec, strings.NewReader(passwd), strings.NewReader(group))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: %v, want %q", tc.spec, err, tc.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%q: %+v, %v; want %+v", tc.spec, got, err, tc.want)
		}
	}
	if id, err := ResolveUser("7", nil, nil); err != nil || id.UID != 7 || id.Home != "/" {
		t.Errorf("no passwd file: %+v, %v", id, err)
	}
}

func TestLookPath(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "prog"), []byte("#!/bin/sh\n"), 0o755)
	os.WriteFile(filepath.Join(dir, "data"), []byte("x"), 0o644)
	if p, err := lookPath("prog", "/nonexistent:"+dir); err != nil || p != filepath.Join(dir, "prog") {
		t.Errorf("prog: %q, %v", p, err)
	}
	for _, tc := range []struct {
		file string
		code int
	}{{"nosuch", ExitNotFound}, {"data", ExitNotFound}, {dir + "/nosuch", ExitNotFound}, {dir + "/data", ExitCannotRun}, {dir, ExitCannotRun}} {
		if os.Geteuid() == 0 && tc.file == dir+"/data" {
			continue // root may execute anything with an x bit; data has none, but access(2) says so only for non-root
		}
		_, err := lookPath(tc.file, dir)
		e, ok := err.(*ExitError)
		if !ok || e.Code != tc.code {
			t.Errorf("%s: %v, want exit %d", tc.file, err, tc.code)
		}
	}
}

func TestCheckFUSE(t *testing.T) {
	err := checkFUSE(filepath.Join(t.TempDir(), "fuse"))
	if err == nil || !strings.Contains(err.Error(), "modprobe fuse") {
		t.Errorf("missing device: %v", err)
	}
	if os.Geteuid() == 0 {
		return
	}
	locked := filepath.Join(t.TempDir(), "fuse")
	os.WriteFile(locked, nil, 0)
	if err := checkFUSE(locked); err == nil || !strings.Contains(err.Error(), "chmod 0666 /dev/fuse") {
		t.Errorf("no access: %v", err)
	}
}
