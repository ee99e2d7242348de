package seccomp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/urun-dev/urun/capability"
)

// testKernel is the kernel release unit tests compile for, so that their
// result does not depend on the machine.
const testKernel = "6.8.0-test"

// call is one system call as the filter sees it (struct seccomp_data).
type call struct {
	name string // for messages
	arch uint32
	nr   uint32
	args [6]uint64
}

func sys(name string, args ...uint64) call {
	nr, ok := syscallNumbers[name]
	if !ok {
		panic("no system call " + name)
	}
	c := call{name: name, arch: unix.AUDIT_ARCH_X86_64, nr: uint32(nr)}
	copy(c.args[:], args)
	return c
}

// vm runs a compiled filter in x/net/bpf's interpreter.
type vm struct{ m *bpf.VM }

func newVM(t *testing.T, prog *Program) vm {
	t.Helper()
	raw := make([]bpf.RawInstruction, len(prog.Filter))
	for i, f := range prog.Filter {
		raw[i] = bpf.RawInstruction{Op: f.Code, Jt: f.Jt, Jf: f.Jf, K: f.K}
	}
	insns, ok := bpf.Disassemble(raw)
	if !ok {
		t.Fatal("filter holds instructions the interpreter does not know")
	}
	m, err := bpf.NewVM(insns)
	if err != nil {
		t.Fatal(err)
	}
	return vm{m}
}

// run returns the filter's verdict on c. The interpreter loads 32-bit words
// big-endian where the kernel loads them in the host's order, so each word
// of seccomp_data is written big-endian here: the filter sees the values
// the kernel would show it.
func (v vm) run(t *testing.T, c call) uint32 {
	t.Helper()
	in := make([]byte, 64)
	binary.BigEndian.PutUint32(in[offNr:], c.nr)
	binary.BigEndian.PutUint32(in[offArch:], c.arch)
	for i, a := range c.args {
		binary.BigEndian.PutUint32(in[offArgs+8*i:], uint32(a))
		binary.BigEndian.PutUint32(in[offArgs+8*i+4:], uint32(a>>32))
	}
	r, err := v.m.Run(in)
	if err != nil {
		t.Fatalf("%s: %v", c.name, err)
	}
	return uint32(r)
}

const (
	allow = unix.SECCOMP_RET_ALLOW
	eperm = unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)
	enosy = unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)
	kill  = unix.SECCOMP_RET_KILL_PROCESS
)

func retName(r uint32) string {
	switch r & unix.SECCOMP_RET_ACTION_FULL {
	case unix.SECCOMP_RET_ALLOW:
		return "ALLOW"
	case unix.SECCOMP_RET_ERRNO:
		return fmt.Sprintf("ERRNO(%v)", unix.Errno(r&unix.SECCOMP_RET_DATA))
	case unix.SECCOMP_RET_KILL_PROCESS:
		return "KILL_PROCESS"
	}
	return fmt.Sprintf("%#x", r)
}

func compileDefault(t *testing.T, caps capability.Set) vm {
	t.Helper()
	prog, err := Compile(Default(), Config{Caps: caps, KernelRelease: testKernel})
	if err != nil {
		t.Fatal(err)
	}
	if len(prog.Filter) > maxInsns {
		t.Fatalf("%d instructions", len(prog.Filter))
	}
	t.Logf("default profile: %d instructions", len(prog.Filter))
	return newVM(t, prog)
}

func TestDefaultProfile(t *testing.T) {
	def := capability.Default()
	admin := def.Add(capability.SYS_ADMIN)
	ptrace := def.Add(capability.SYS_PTRACE)
	i386 := call{name: "i386 getpid", arch: unix.AUDIT_ARCH_I386, nr: 20}
	x32 := sys("getpid")
	x32.nr |= x32Bit
	x32.name = "x32 getpid"
	minus1 := call{name: "nr -1", arch: unix.AUDIT_ARCH_X86_64, nr: 0xffffffff}
	unknown := call{name: "nr 1000", arch: unix.AUDIT_ARCH_X86_64, nr: 1000}
	newest := call{name: "newest+1", arch: unix.AUDIT_ARCH_X86_64}
	for _, n := range syscallNumbers {
		newest.nr = max(newest.nr, uint32(n)+1)
	}
	tests := []struct {
		caps capability.Set
		c    call
		want uint32
	}{
		{def, sys("read"), allow},
		{def, sys("getpid"), allow},
		{def, sys("execve"), allow},
		{def, sys("capset"), allow},
		{def, sys("prctl"), allow},
		{def, sys("chroot"), allow}, // SYS_CHROOT is in the default set
		{0, sys("chroot"), eperm},
		{def, sys("keyctl"), eperm},
		{def, sys("add_key"), eperm},
		{def, sys("request_key"), eperm},
		{def, sys("kexec_load"), eperm},
		{def, sys("mount"), eperm},
		{admin, sys("mount"), allow},
		{def, sys("umount2"), eperm},
		{def, sys("pivot_root"), eperm},
		{admin, sys("pivot_root"), eperm}, // moby names it nowhere
		{def, sys("unshare", unix.CLONE_NEWUSER), eperm},
		{admin, sys("unshare", unix.CLONE_NEWUSER), allow},
		{def, sys("setns"), eperm},
		{def, sys("ptrace"), allow}, // kernel >= 4.8: moby allows ptrace to everyone
		{def, sys("kcmp"), eperm},
		{ptrace, sys("kcmp"), allow},
		{def, sys("bpf"), eperm},
		{def.Add(capability.BPF), sys("bpf"), allow},
		{def, sys("reboot"), eperm},
		{def, sys("arch_prctl"), allow},
		{def, sys("modify_ldt"), allow},
		// Argument conditions.
		{def, sys("personality", 0), allow},
		{def, sys("personality", 8), allow},
		{def, sys("personality", 0xffffffff), allow},
		{def, sys("personality", 0x0400000), eperm}, // READ_IMPLIES_EXEC
		{def, sys("personality", 1<<32), eperm},     // high word must be 0 too
		{def, sys("socket", unix.AF_INET, unix.SOCK_STREAM), allow},
		{def, sys("socket", unix.AF_UNIX, unix.SOCK_STREAM), allow},
		{def, sys("socket", unix.AF_INET6, unix.SOCK_DGRAM), allow},
		{def, sys("socket", unix.AF_NETLINK, unix.SOCK_RAW), allow},
		{def, sys("socket", unix.AF_VSOCK, unix.SOCK_STREAM), eperm},
		{def, sys("socket", unix.AF_ALG, unix.SOCK_SEQPACKET), eperm},
		{def, sys("socket", 1<<32|unix.AF_INET), eperm},
		{def, sys("clone", uint64(unix.SIGCHLD)), allow},
		{def, sys("clone", unix.CLONE_VM|unix.CLONE_FS|unix.CLONE_FILES|unix.CLONE_SIGHAND|unix.CLONE_THREAD), allow},
		{def, sys("clone", unix.CLONE_NEWUSER|uint64(unix.SIGCHLD)), eperm},
		{def, sys("clone", unix.CLONE_NEWNS), eperm},
		{admin, sys("clone", unix.CLONE_NEWUSER|uint64(unix.SIGCHLD)), allow},
		{def, sys("clone3"), enosy},
		{admin, sys("clone3"), allow},
		// Numbers and architectures the profile does not know.
		{def, newest, enosy},
		{def, unknown, enosy},
		{def, minus1, enosy},
		{def, i386, kill},
		{def, x32, kill},
	}
	vms := map[capability.Set]vm{}
	for _, tt := range tests {
		v, ok := vms[tt.caps]
		if !ok {
			v = compileDefault(t, tt.caps)
			vms[tt.caps] = v
		}
		if got := v.run(t, tt.c); got != tt.want {
			t.Errorf("%s%v with %v: %s, want %s", tt.c.name, tt.c.args[:2], tt.caps, retName(got), retName(tt.want))
		}
	}
}

// TestDefaultProfileEveryName checks every x86_64 system call the default
// profile names unconditionally against the filter: allowed ones pass,
// everything below the newest known number that it does not allow gets
// EPERM.
func TestDefaultProfileEveryName(t *testing.T) {
	v := compileDefault(t, capability.Default())
	allowed := map[string]bool{}
	for _, s := range Default().p.Syscalls {
		if s.Includes != nil || s.Excludes != nil || len(s.Args) > 0 || s.Action != "SCMP_ACT_ALLOW" {
			continue
		}
		for _, n := range s.Names {
			allowed[n] = true
		}
	}
	if len(allowed) < 300 {
		t.Fatalf("only %d unconditionally allowed names", len(allowed))
	}
	for name := range syscallNumbers {
		got := v.run(t, sys(name))
		switch {
		case allowed[name] && got != allow:
			t.Errorf("%s: %s, want ALLOW", name, retName(got))
		case !allowed[name] && got == allow && !conditionallyAllowed[name]:
			t.Errorf("%s: ALLOW, but the profile does not allow it unconditionally", name)
		}
	}
}

// conditionallyAllowed are the names the default profile allows under a
// condition the default capability set or the test kernel meets.
var conditionallyAllowed = map[string]bool{
	"chroot": true, "arch_prctl": true, "modify_ldt": true,
	"ptrace": true, "process_vm_readv": true, "process_vm_writev": true,
	// and those allowed with all-zero arguments: personality(PER_LINUX),
	// socket(AF_UNSPEC) (moby's "domain < AF_..." range; the kernel refuses
	// AF_UNSPEC itself) and clone without namespace flags.
	"personality": true, "socket": true, "clone": true,
}

// TestCompileProfile covers what the default profile does not: the other
// comparison operators, several rules for one call, kernel conditions,
// actions and errors.
func TestCompileProfile(t *testing.T) {
	const profile = `{
	"defaultAction": "SCMP_ACT_ERRNO",
	"defaultErrnoRet": 13,
	"syscalls": [
		{"names": ["read", "write", "bogus_call"], "action": "SCMP_ACT_ALLOW"},
		{"names": ["lseek"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 2, "value": 2, "op": "SCMP_CMP_LT"}]},
		{"names": ["lseek"], "action": "SCMP_ACT_ERRNO", "errnoRet": 22},
		{"names": ["dup2"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 1, "value": 10, "op": "SCMP_CMP_LE"}]},
		{"names": ["dup3"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 1, "value": 4294967296, "op": "SCMP_CMP_GT"}]},
		{"names": ["fcntl"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 1, "value": 4, "op": "SCMP_CMP_GE"}]},
		{"names": ["kill"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 1, "value": 9, "op": "SCMP_CMP_NE"}, {"index": 0, "value": 1, "op": "SCMP_CMP_NE"}]},
		{"names": ["mmap"], "action": "SCMP_ACT_KILL_THREAD", "args": [{"index": 2, "value": 4, "valueTwo": 4, "op": "SCMP_CMP_MASKED_EQ"}]},
		{"names": ["mmap"], "action": "SCMP_ACT_ALLOW"},
		{"names": ["getpid"], "action": "SCMP_ACT_LOG", "includes": {"minKernel": "6.9"}},
		{"names": ["gettid"], "action": "SCMP_ACT_TRAP", "excludes": {"minKernel": "6.9"}},
		{"names": ["getuid"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["arm64"]}},
		{"names": ["getgid"], "action": "SCMP_ACT_ALLOW", "excludes": {"caps": ["CAP_KILL", "CAP_SETUID"]}},
		{"name": "getegid", "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_KILL", "CAP_SETUID"]}}
	]}`
	p, err := Load(strings.NewReader(profile))
	if err != nil {
		t.Fatal(err)
	}
	eacces := unix.SECCOMP_RET_ERRNO | uint32(unix.EACCES)
	einval := unix.SECCOMP_RET_ERRNO | uint32(unix.EINVAL)
	tests := []struct {
		c    call
		want uint32
	}{
		{sys("read"), allow},
		{sys("open"), eacces},    // below the newest known number: the default errno
		{sys("getppid"), eacces}, // not named, but below dup3 (292)
		{sys("openat2"), enosy},  // above every name: newer than the profile
		{sys("lseek", 0, 0, 1), allow},
		{sys("lseek", 0, 0, 2), einval},
		{sys("lseek", 0, 0, 1<<32), einval},
		{sys("dup2", 0, 10), allow},
		{sys("dup2", 0, 11), eacces},
		{sys("dup2", 0, 1<<32|5), eacces},
		{sys("dup3", 0, 1<<32), eacces},
		{sys("dup3", 0, 1<<32|1), allow},
		{sys("dup3", 0, 2<<32), allow},
		{sys("fcntl", 0, 3), eacces},
		{sys("fcntl", 0, 4), allow},
		{sys("fcntl", 0, 1<<32), allow},
		{sys("kill", 5, 15), allow},
		{sys("kill", 5, 9), eacces},
		{sys("kill", 1, 15), eacces},
		{sys("kill", 1<<32|1, 15), allow},
		{sys("mmap", 0, 0, unix.PROT_READ|unix.PROT_EXEC), unix.SECCOMP_RET_KILL_THREAD},
		{sys("mmap", 0, 0, unix.PROT_READ|unix.PROT_WRITE), allow},
		{sys("getpid"), eacces}, // minKernel 6.9 > 6.8
		{sys("gettid"), unix.SECCOMP_RET_TRAP},
		{sys("getuid"), eacces},
		{sys("getgid"), eacces}, // excluded: CAP_KILL is held
		{sys("getegid"), allow}, // included: both held
	}
	prog, err := Compile(p, Config{Caps: capability.Of(capability.KILL, capability.SETUID), KernelRelease: testKernel})
	if err != nil {
		t.Fatal(err)
	}
	v := newVM(t, prog)
	for _, tt := range tests {
		if got := v.run(t, tt.c); got != tt.want {
			t.Errorf("%s%v: %s, want %s", tt.c.name, tt.c.args[:3], retName(got), retName(tt.want))
		}
	}
	// Without CAP_SETUID, getegid's include fails; with neither, getgid's
	// exclude does not apply.
	prog, err = Compile(p, Config{Caps: 0, KernelRelease: "6.9.1"})
	if err != nil {
		t.Fatal(err)
	}
	v = newVM(t, prog)
	for _, tt := range []struct {
		c    call
		want uint32
	}{{sys("getgid"), allow}, {sys("getegid"), eacces}, {sys("getpid"), unix.SECCOMP_RET_LOG}, {sys("gettid"), eacces}} {
		if got := v.run(t, tt.c); got != tt.want {
			t.Errorf("no caps, kernel 6.9: %s: %s, want %s", tt.c.name, retName(got), retName(tt.want))
		}
	}
}

func TestCompileErrors(t *testing.T) {
	tests := []struct {
		profile string
		want    string
	}{
		{`{"syscalls": []}`, "no defaultAction"},
		{`{"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"], "archMap": [{"architecture": "SCMP_ARCH_X86_64"}]}`, "both"},
		{`{"defaultAction": "SCMP_ACT_NOPE"}`, `unknown action "SCMP_ACT_NOPE"`},
		{`{"defaultAction": "SCMP_ACT_NOTIFY"}`, "seccomp agent"},
		{`{"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 70000}`, "16 bits"},
		{`{"defaultAction": "SCMP_ACT_ERRNO", "flags": ["SECCOMP_FILTER_FLAG_BOGUS"]}`, "unknown flag"},
		{`{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}`, "argument index 6"},
		{`{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_ABOUT"}]}]}`, "unknown operator"},
		{`{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_FLY"]}}]}`, `unknown capability "CAP_FLY"`},
		{`{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"name": "read", "names": ["write"], "action": "SCMP_ACT_ALLOW"}]}`, `both "name" and "names"`},
		{`{"defaultAction": `, "decode JSON"},
	}
	for _, tt := range tests {
		p, err := Load(strings.NewReader(tt.profile))
		if err == nil {
			_, err = Compile(p, Config{KernelRelease: testKernel})
		}
		if err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, ErrProfile) {
			t.Errorf("%s: error %v, want ErrProfile saying %q", tt.profile, err, tt.want)
		}
	}
}

func TestCompileTooLarge(t *testing.T) {
	var b strings.Builder
	b.WriteString(`{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [`)
	for i := range 1200 {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `{"names": ["ioctl"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 1, "value": %d, "op": "SCMP_CMP_EQ"}]}`, i)
	}
	b.WriteString("]}")
	p, err := Load(strings.NewReader(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Compile(p, Config{KernelRelease: testKernel}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("1200 ioctl rules: %v, want ErrTooLarge", err)
	}
}

func TestParseKernel(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want kernelVersion
	}{{"6.18.44-fc-v669", kernelVersion{6, 18}}, {"4.8", kernelVersion{4, 8}}, {"5.10-rc3", kernelVersion{5, 10}}} {
		got, err := parseKernel(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("parseKernel(%q) = %v, %v", tt.in, got, err)
		}
	}
	for _, bad := range []string{"", "6", "x.y"} {
		if _, err := parseKernel(bad); err == nil {
			t.Errorf("parseKernel(%q) accepted", bad)
		}
	}
}

// TestLoadFilePodmanFormat reads a profile written the way podman's
// seccomp.json is (empty includes/excludes objects, "errno" names beside
// "errnoRet", comments, an archMap): the fields we do not use are ignored.
func TestLoadFilePodmanFormat(t *testing.T) {
	const profile = `{
	"defaultAction": "SCMP_ACT_ERRNO",
	"defaultErrnoRet": 38,
	"defaultErrno": "ENOSYS",
	"archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]}],
	"syscalls": [
		{"names": ["keyctl"], "action": "SCMP_ACT_ERRNO", "args": [], "comment": "", "includes": {}, "excludes": {}, "errnoRet": 1, "errno": "EPERM"},
		{"names": ["read", "exit_group"], "action": "SCMP_ACT_ALLOW", "args": [], "comment": "", "includes": {}, "excludes": {}},
		{"names": ["socket"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 40, "valueTwo": 0, "op": "SCMP_CMP_EQ"}], "includes": {}, "excludes": {}, "errnoRet": 1, "errno": "EPERM"},
		{"names": ["socket"], "action": "SCMP_ACT_ALLOW", "args": [], "includes": {}, "excludes": {}}
	]}`
	path := filepath.Join(t.TempDir(), "seccomp.json")
	if err := os.WriteFile(path, []byte(profile), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	prog, err := Compile(p, Config{Caps: capability.Default(), KernelRelease: testKernel})
	if err != nil {
		t.Fatal(err)
	}
	v := newVM(t, prog)
	for _, tt := range []struct {
		c    call
		want uint32
	}{
		{sys("read"), allow},
		{sys("keyctl"), eperm},
		{sys("socket", unix.AF_VSOCK), eperm},
		{sys("socket", unix.AF_INET), allow},
		{sys("write"), enosy}, // podman's default errno
	} {
		if got := v.run(t, tt.c); got != tt.want {
			t.Errorf("%s%v: %s, want %s", tt.c.name, tt.c.args[:1], retName(got), retName(tt.want))
		}
	}
	if _, err := LoadFile(filepath.Join(t.TempDir(), "missing.json")); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "missing.json") {
		t.Errorf("missing profile: %v", err)
	}
}
