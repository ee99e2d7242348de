// Command urun-runtime is urun's container runtime without the image
// store: the entry points of a container's monitor and init (package
// container), nothing else. urun runs it, when it lies beside urun, for
// every container's init and for the monitor of a container that needs no
// store step (--rootfs): urun links containers-storage and
// containers/image, whose package initialisation alone costs every start
// of urun's binary about 4 ms; this one starts in about 2.
//
// It is not meant to be run by hand.
package main

import (
	"fmt"
	"os"

	"github.com/urun-dev/urun/container"
	"github.com/urun-dev/urun/internal/reexec"
	"github.com/urun-dev/urun/internal/trace"
)

func main() {
	trace.Open()
	container.Register(nil)
	if reexec.Init() {
		return
	}
	fmt.Fprintf(os.Stderr, "%s: urun runs this binary to start containers; run urun instead\n", container.RuntimeName)
	os.Exit(container.ExitSetup)
}
