package capability

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
)

// Cap is a Linux capability number (capabilities(7)), CAP_CHOWN = 0 up to
// the running kernel's last capability.
type Cap int

// The capabilities the kernel headers name, in number order.
const (
	CHOWN Cap = iota
	DAC_OVERRIDE
	DAC_READ_SEARCH
	FOWNER
	FSETID
	KILL
	SETGID
	SETUID
	SETPCAP
	LINUX_IMMUTABLE
	NET_BIND_SERVICE
	NET_BROADCAST
	NET_ADMIN
	NET_RAW
	IPC_LOCK
	IPC_OWNER
	SYS_MODULE
	SYS_RAWIO
	SYS_CHROOT
	SYS_PTRACE
	SYS_PACCT
	SYS_ADMIN
	SYS_BOOT
	SYS_NICE
	SYS_RESOURCE
	SYS_TIME
	SYS_TTY_CONFIG
	MKNOD
	LEASE
	AUDIT_WRITE
	AUDIT_CONTROL
	SETFCAP
	MAC_OVERRIDE
	MAC_ADMIN
	SYSLOG
	WAKE_ALARM
	BLOCK_SUSPEND
	AUDIT_READ
	PERFMON
	BPF
	CHECKPOINT_RESTORE
)

// maxCap is the highest capability a Set can hold: Set is one 64-bit word,
// as the kernel's capability sets are.
const maxCap Cap = 63

// names are the names without the "CAP_" prefix, indexed by Cap.
var names = [...]string{
	CHOWN:              "CHOWN",
	DAC_OVERRIDE:       "DAC_OVERRIDE",
	DAC_READ_SEARCH:    "DAC_READ_SEARCH",
	FOWNER:             "FOWNER",
	FSETID:             "FSETID",
	KILL:               "KILL",
	SETGID:             "SETGID",
	SETUID:             "SETUID",
	SETPCAP:            "SETPCAP",
	LINUX_IMMUTABLE:    "LINUX_IMMUTABLE",
	NET_BIND_SERVICE:   "NET_BIND_SERVICE",
	NET_BROADCAST:      "NET_BROADCAST",
	NET_ADMIN:          "NET_ADMIN",
	NET_RAW:            "NET_RAW",
	IPC_LOCK:           "IPC_LOCK",
	IPC_OWNER:          "IPC_OWNER",
	SYS_MODULE:         "SYS_MODULE",
	SYS_RAWIO:          "SYS_RAWIO",
	SYS_CHROOT:         "SYS_CHROOT",
	SYS_PTRACE:         "SYS_PTRACE",
	SYS_PACCT:          "SYS_PACCT",
	SYS_ADMIN:          "SYS_ADMIN",
	SYS_BOOT:           "SYS_BOOT",
	SYS_NICE:           "SYS_NICE",
	SYS_RESOURCE:       "SYS_RESOURCE",
	SYS_TIME:           "SYS_TIME",
	SYS_TTY_CONFIG:     "SYS_TTY_CONFIG",
	MKNOD:              "MKNOD",
	LEASE:              "LEASE",
	AUDIT_WRITE:        "AUDIT_WRITE",
	AUDIT_CONTROL:      "AUDIT_CONTROL",
	SETFCAP:            "SETFCAP",
	MAC_OVERRIDE:       "MAC_OVERRIDE",
	MAC_ADMIN:          "MAC_ADMIN",
	SYSLOG:             "SYSLOG",
	WAKE_ALARM:         "WAKE_ALARM",
	BLOCK_SUSPEND:      "BLOCK_SUSPEND",
	AUDIT_READ:         "AUDIT_READ",
	PERFMON:            "PERFMON",
	BPF:                "BPF",
	CHECKPOINT_RESTORE: "CHECKPOINT_RESTORE",
}

// String returns the name with its prefix, "CAP_NET_ADMIN"; a capability
// newer than this package is "CAP_41" and so on, as capsh prints it.
func (c Cap) String() string {
	if c >= 0 && int(c) < len(names) {
		return "CAP_" + names[c]
	}
	return "CAP_" + strconv.Itoa(int(c))
}

// lastCap is read once: the kernel's last capability does not change while
// we run.
var lastCap = sync.OnceValues(func() (Cap, error) {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		return 0, fmt.Errorf("read the kernel's last capability: %w", err)
	}
	return parseLastCap(string(b))
})

func parseLastCap(s string) (Cap, error) {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || n < 0 || n > int(maxCap) {
		return 0, fmt.Errorf("read the kernel's last capability: /proc/sys/kernel/cap_last_cap holds %q, want a number 0-%d", strings.TrimSpace(s), maxCap)
	}
	return Cap(n), nil
}

// Last returns the running kernel's last capability, from
// /proc/sys/kernel/cap_last_cap (CAP_CHECKPOINT_RESTORE, 40, on Linux 5.9
// and later).
func Last() (Cap, error) { return lastCap() }

// Parse turns a name into a capability of the running kernel. It accepts
// the forms podman does: "CAP_NET_ADMIN", "NET_ADMIN", "net_admin",
// "cap_net_admin". "ALL" is not a capability: Resolve handles it.
func Parse(name string) (Cap, error) {
	last, err := Last()
	if err != nil {
		return 0, err
	}
	return parse(name, last)
}

func parse(name string, last Cap) (Cap, error) {
	n := strings.ToUpper(strings.TrimSpace(name))
	n = strings.TrimPrefix(n, "CAP_")
	for c, s := range names {
		if s != n {
			continue
		}
		if Cap(c) > last {
			return 0, fmt.Errorf("capability %q: %w (its number is %d, the kernel's last is %d)", name, ErrUnsupported, c, last)
		}
		return Cap(c), nil
	}
	// A capability newer than this table, named by number as capsh does.
	if num, err := strconv.Atoi(n); err == nil && num >= 0 && num <= int(last) {
		return Cap(num), nil
	}
	return 0, fmt.Errorf("%w %q: valid names are %s, or ALL (case does not matter, the CAP_ prefix is optional; see capabilities(7))",
		ErrUnknown, name, knownNames(last))
}

func knownNames(last Cap) string {
	var b strings.Builder
	for c := Cap(0); c <= last; c++ {
		if c > 0 {
			b.WriteString(", ")
		}
		b.WriteString(c.String())
	}
	return b.String()
}
