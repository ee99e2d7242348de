package image

import "go.podman.io/storage/pkg/reexec"

// Init must be called first in main (and in TestMain of tests that use a
// Store): containers-storage runs some work (unpacking layers in a chroot)
// by re-executing the binary, and Init runs that work when this process is
// such a re-execution. When Init returns true the work is done and main
// must return at once.
func Init() bool { return reexec.Init() }
