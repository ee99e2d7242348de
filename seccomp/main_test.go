package seccomp_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/urun-dev/urun/capability"
	"github.com/urun-dev/urun/internal/reexec"
	"github.com/urun-dev/urun/internal/testutil"
	"github.com/urun-dev/urun/seccomp"
	"github.com/urun-dev/urun/userns"
)

// probeEntry is the reexec entry point of the helper that installs a
// filter and probes system calls under it.
const probeEntry = "seccomp-test-probe"

var _ = registered()

func registered() bool {
	reexec.Register(probeEntry, func() { os.Exit(runProbe()) })
	return true
}

func TestMain(m *testing.M) {
	reexec.Init()
	os.Exit(m.Run())
}

// probeRequest is what the helper does before probing, in the order of the
// container's init.
type probeRequest struct {
	Install   bool           // compile the default profile for Caps and install it
	NoNewPriv bool           // set no_new_privs before installing
	Caps      capability.Set // the container's capability set
	Prepare   bool           // capability.Prepare first
	UID       int            // setresuid/setresgid to this id before installing; -1: stay
	Apply     bool           // capability.Apply after installing: ForRoot(Caps), or ForUser(Caps) for UID > 0
}

// probeResult is the helper's report: the error of Install ("" when it
// worked) and, per probe, the errno name or "ok", or the output of a
// command it ran.
type probeResult struct {
	InstallErr string
	Probes     map[string]string
}

func runProbe() int {
	if err := userns.WaitMapped(); err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 2
	}
	var req probeRequest
	if err := testutil.Request(&req); err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 2
	}
	res, err := probe(req)
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 3
	}
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		return 3
	}
	return 0
}

func probe(req probeRequest) (probeResult, error) {
	runtime.LockOSThread()
	res := probeResult{Probes: map[string]string{}}
	if req.Prepare {
		if err := capability.Prepare(); err != nil {
			return res, err
		}
	}
	if req.UID >= 0 {
		if err := testutil.SwitchUser(req.UID, req.UID); err != nil {
			return res, err
		}
	}
	if req.NoNewPriv {
		if err := seccomp.SetNoNewPrivs(); err != nil {
			return res, err
		}
	}
	if req.Install {
		prog, err := seccomp.Compile(seccomp.Default(), seccomp.Config{Caps: req.Caps})
		if err != nil {
			return res, err
		}
		if err := seccomp.Install(prog, 0); err != nil {
			res.InstallErr = err.Error()
			return res, nil
		}
	}
	if req.Apply {
		sets := capability.ForRoot(req.Caps)
		if req.UID > 0 {
			var err error
			if sets, err = capability.ForUser(req.Caps, nil); err != nil {
				return res, err
			}
		}
		if err := capability.Apply(sets); err != nil {
			return res, err
		}
	}
	record := func(name string, errno syscall.Errno) {
		if errno == 0 {
			res.Probes[name] = "ok"
			return
		}
		res.Probes[name] = unix.ErrnoName(errno)
	}
	raw := func(name string, nr uintptr, args ...uintptr) {
		var a [6]uintptr
		copy(a[:], args)
		r, _, errno := unix.Syscall6(nr, a[0], a[1], a[2], a[3], a[4], a[5])
		if errno == 0 && strings.HasPrefix(name, "socket") {
			unix.Close(int(r))
		}
		record(name, errno)
	}
	var keep [][]byte // the strings stay alive until the probes are done
	str := func(s string) uintptr {
		b := append([]byte(s), 0)
		keep = append(keep, b)
		return uintptr(unsafe.Pointer(&b[0]))
	}
	defer runtime.KeepAlive(&keep)
	raw("getpid", unix.SYS_GETPID)
	raw("keyctl", unix.SYS_KEYCTL, unix.KEYCTL_GET_KEYRING_ID, uintptr(0xfffffffd) /* KEY_SPEC_SESSION_KEYRING */, 0)
	raw("add_key", unix.SYS_ADD_KEY, str("user"), str("urun-test"), str("x"), 1, uintptr(0xfffffffe) /* KEY_SPEC_PROCESS_KEYRING */)
	raw("unshare_newuser", unix.SYS_UNSHARE, unix.CLONE_NEWUSER)
	raw("mount", unix.SYS_MOUNT, str("none"), str("/nonexistent-urun"), str("tmpfs"), 0, 0)
	raw("clone3", unix.SYS_CLONE3, 0, 0)
	raw("socket_vsock", unix.SYS_SOCKET, unix.AF_VSOCK, unix.SOCK_STREAM, 0)
	raw("socket_inet", unix.SYS_SOCKET, unix.AF_INET, unix.SOCK_STREAM, 0)
	raw("personality_query", unix.SYS_PERSONALITY, 0xffffffff)
	raw("personality_rie", unix.SYS_PERSONALITY, 0x0400000)
	raw("syscall_1000", 1000)
	for name, argv := range map[string][]string{
		"exec_true": {"/bin/true"},
		// a dynamically linked program doing ordinary work
		"exec_sh": {"/bin/sh", "-c", "ls -la / /proc/self/fd >/dev/null && sort /etc/passwd | wc -l >/dev/null && date >/dev/null"},
	} {
		if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
			res.Probes[name] = fmt.Sprintf("%v: %s", err, out)
		} else {
			res.Probes[name] = "ok"
		}
	}
	out, err := exec.Command("/bin/grep", "-E", "^(Seccomp|CapEff|NoNewPrivs):", "/proc/self/status").CombinedOutput()
	if err != nil && !errors.Is(err, exec.ErrNotFound) {
		out = append(out, err.Error()...)
	}
	res.Probes["status"] = string(out)
	return res, nil
}
