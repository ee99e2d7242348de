package seccomp

import "errors"

// ErrProfile is wrapped by every error about a profile that cannot be
// compiled: a bad action, operator, argument index or errno.
var ErrProfile = errors.New("invalid seccomp profile")

// ErrTooLarge is wrapped when a compiled filter exceeds the kernel's limit
// of 4096 BPF instructions.
var ErrTooLarge = errors.New("seccomp filter too large")
