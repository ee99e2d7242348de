package capability

import "errors"

// ErrUnknown is wrapped by every error about a capability name that is not
// one of the kernel's: errors.Is(err, capability.ErrUnknown).
var ErrUnknown = errors.New("unknown capability")

// ErrUnsupported is wrapped when a capability is known by name but lies past
// the running kernel's last capability (/proc/sys/kernel/cap_last_cap).
var ErrUnsupported = errors.New("capability not supported by the running kernel")
