package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/urun-dev/urun/internal/testutil"
)

// TestCompareWithPodman runs the same probes in urun and in rootless
// podman (Debian's, with runc: crun refuses this host's hybrid cgroups) on
// copies of one rootfs and compares what the container sees and the exit
// codes. Known, deliberate differences are normalised away and listed in
// the README.
func TestCompareWithPodman(t *testing.T) {
	testutil.RequireRootless(t)
	e := newEnv(t)
	for _, tool := range []string{"podman", "runc"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (make deps-bench or apt-get install podman runc): %v", tool, err)
		}
	}
	p := newPodman(t)
	hostVol := t.TempDir()
	os.WriteFile(filepath.Join(hostVol, "f"), []byte("vol\n"), 0o644)
	probes := []struct {
		name   string
		flags  []string
		script string
	}{
		{"capabilities", nil, `grep -E '^Cap(Prm|Eff|Bnd|Amb)' /proc/self/status`},
		{"capabilities of a user with cap-add", []string{"-u", "alice", "--cap-add", "NET_ADMIN"}, `grep -E '^Cap(Prm|Eff|Bnd|Amb)' /proc/self/status`},
		{"capabilities after cap-drop", []string{"--cap-drop", "ALL", "--cap-add", "CHOWN"}, `grep -E '^Cap(Prm|Eff|Bnd|Amb)' /proc/self/status`},
		{"seccomp and no_new_privs", nil, `grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status`},
		{"no-new-privileges", []string{"--security-opt", "no-new-privileges"}, `grep -E '^NoNewPrivs:' /proc/self/status`},
		{"seccomp unconfined", []string{"--security-opt", "seccomp=unconfined"}, `grep -E '^Seccomp:' /proc/self/status`},
		{"id maps", nil, `cat /proc/self/uid_map /proc/self/gid_map`},
		{"exit code", nil, `exit 3`},
		{"user by name", []string{"-u", "alice"}, `id; echo $HOME`},
		{"user and group by number", []string{"-u", "1234:5"}, `id -u; id -G; echo $HOME`},
		{"user and group by name", []string{"-u", "alice:wheel"}, `id`},
		{"workdir", []string{"-w", "/etc"}, `pwd`},
		{"environment", []string{"-e", "A=1", "-e", "PATH=/bin"}, `env | grep -vE '^(HOSTNAME|container|PWD|SHLVL|_)=' | sort`},
		{"hostname", []string{"--hostname", "box"}, `hostname; cat /etc/hostname; grep -c box /etc/hosts`},
		{"dev", nil, `ls /dev | grep -vE '^(core|console)$'; ls /dev/pts`},
		{"masked paths", nil, `for p in /proc/kcore /proc/keys /proc/timer_list /proc/sched_debug /sys/firmware /proc/acpi /proc/scsi; do [ -e $p ] && echo "$p $(ls $p | wc -l) $(cat $p 2>/dev/null | wc -c)"; done; true`},
		{"read-only paths", nil, `for p in /proc/sys/kernel/domainname /proc/sysrq-trigger /sys/kernel/profiling; do echo x 2>/dev/null > $p && echo "$p writable"; done; true`},
		{"pid 1", nil, `cat /proc/1/cmdline | tr '\0' ' '; echo`},
		{"network interfaces", nil, `ls /sys/class/net; cat /proc/net/dev | wc -l`},
		{"read-only rootfs", []string{"--read-only"}, `touch /x 2>/dev/null && echo root-writable; touch /tmp/x && echo tmp-writable`},
		{"bind mount", []string{"-v", hostVol + ":/v:ro"}, `cat /v/f; touch /v/g 2>/dev/null && echo writable; true`},
		{"tmpfs", []string{"--tmpfs", "/scratch"}, `grep ' /scratch ' /proc/mounts | cut -d' ' -f3,4 | sed 's/,size=[^,]*//; s/,inode64//; s/,uid=[0-9]*,gid=[0-9]*//'`},
		{"umask", nil, `umask`},
	}
	for _, pr := range probes {
		t.Run(pr.name, func(t *testing.T) {
			args := append(append([]string{"--rm"}, pr.flags...), "--", "sh", "-c", pr.script)
			uOut, uErr, uCode := e.run(args...)
			pOut, pErr, pCode := p.run(pr.flags, "sh", "-c", pr.script)
			if uCode != pCode || normalise(uOut) != normalise(pOut) {
				t.Errorf("urun: exit %d\n%s%s\npodman: exit %d\n%s%s", uCode, uOut, uErr, pCode, pOut, pErr)
			}
		})
	}
	// Commands that cannot run: same codes (the messages name the runtime).
	for _, tc := range [][]string{{"nosuch"}, {"/etc/passwd"}, {"/etc"}} {
		_, uErr, uCode := e.run(append([]string{"--rm", "--"}, tc...)...)
		_, pErr, pCode := p.run(nil, tc...)
		if uCode != pCode {
			t.Errorf("%v: urun exit %d (%s), podman exit %d (%s)", tc, uCode, uErr, pCode, pErr)
		}
	}
}

// normalise removes what legitimately differs between the two: runtime
// names in messages and the order of lines.
func normalise(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// podman runs rootless podman with private storage and configuration,
// without cgroups (none can be had on this host) and without network.
type podman struct {
	t      *testing.T
	env    []string
	rootfs string
}

func newPodman(t *testing.T) *podman {
	dir := t.TempDir()
	run := testutil.PodmanRuntimeDir(t)
	conf := filepath.Join(dir, "containers.conf")
	os.WriteFile(conf, []byte("[engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\nruntime = \"runc\"\n"), 0o644)
	storage := filepath.Join(dir, "storage.conf")
	// Rootless podman takes its graph root from rootless_storage_path
	// (graphroot is for root) and keeps its state database there: without
	// it, the database in ~/.local/share/containers would remember the
	// run and tmp directories of an earlier test, pause process included.
	graph := filepath.Join(dir, "graph")
	os.WriteFile(storage, []byte("[storage]\ndriver = \"vfs\"\ngraphroot = \""+graph+"\"\nrootless_storage_path = \""+graph+"\"\nrunroot = \""+filepath.Join(run, "containers")+"\"\n"), 0o644)
	p := &podman{
		t: t,
		env: append(os.Environ(), "XDG_RUNTIME_DIR="+run, "CONTAINERS_CONF="+conf, "CONTAINERS_STORAGE_CONF="+storage,
			"XDG_CONFIG_HOME="+filepath.Join(dir, "config"), "XDG_DATA_HOME="+filepath.Join(dir, "data")),
		rootfs: testutil.BusyboxRootfs(t),
	}
	t.Cleanup(func() {
		// The files belong to subordinate ids: remove them in podman's
		// user namespace, once the clean-up commands conmon started
		// at each container's exit have ended, then end the pause
		// process that holds the namespace.
		for _, pid := range testutil.ProcessesMentioning(graph) {
			if !testutil.WaitExit(t, pid, 30*time.Second) {
				t.Errorf("process %d of podman's storage still runs", pid)
			}
		}
		rm := exec.Command("podman", "unshare", "rm", "-rf", graph, filepath.Join(run, "containers"))
		rm.Env = p.env
		if out, err := rm.CombinedOutput(); err != nil {
			t.Errorf("remove podman's storage: %v\n%s", err, out)
		}
		testutil.EndPodmanPause(t, run)
	})
	return p
}

func (p *podman) run(flags []string, cmdArgs ...string) (string, string, int) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// Debian's podman 4 still grants NET_RAW, MKNOD and AUDIT_WRITE by
	// default; podman 5 and urun do not.
	args := append([]string{"run", "--rm", "--network", "none", "--cap-drop", "NET_RAW,MKNOD,AUDIT_WRITE"}, flags...)
	args = append(append(args, "--rootfs", p.rootfs), cmdArgs...)
	cmd := exec.CommandContext(ctx, "podman", args...)
	cmd.Env = p.env
	out, errs, code := capture(p.t, cmd)
	// podman warns that / is not a shared mount on this host.
	var kept []string
	for _, l := range strings.Split(errs, "\n") {
		if !strings.Contains(l, "is not a shared mount") && l != "" {
			kept = append(kept, l)
		}
	}
	return out, strings.Join(kept, "\n"), code
}
