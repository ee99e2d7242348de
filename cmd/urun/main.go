package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/alecthomas/kong"
	"github.com/urun-dev/urun/container"
	"github.com/urun-dev/urun/image"
	"github.com/urun-dev/urun/internal/reexec"
	"github.com/urun-dev/urun/internal/trace"
)

// exitCodeError ends urun with a code (and a message when Err is set).
type exitCodeError struct {
	Code int
	Err  error
}

func (e *exitCodeError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("exit status %d", e.Code)
	}
	return e.Err.Error()
}

type globals struct {
	Root     string `help:"Data directory (containers' state). Default: $$XDG_DATA_HOME/urun or ~/.local/share/urun." placeholder:"DIR"`
	LogLevel string `help:"Log level: debug, info, warn, error." default:"warn" enum:"debug,info,warn,error"`
	storeGlobals
}

type cli struct {
	globals
	Run runCmd `cmd:"" help:"Run a command in a new container."`

	Pull    pullCmd    `cmd:"" help:"Pull an image into the store."`
	Images  imagesCmd  `cmd:"" help:"List the images of the store."`
	Ps      psCmd      `cmd:"" help:"List containers (-a: also those kept without --rm that have ended)."`
	Rm      rmCmd      `cmd:"" help:"Remove containers that have ended (their state and writable layer)."`
	Rmi     rmiCmd     `cmd:"" help:"Remove images (layers other images use are kept)."`
	Tag     tagCmd     `cmd:"" help:"Give an image more names."`
	Untag   untagCmd   `cmd:"" help:"Take names off images."`
	Inspect inspectCmd `cmd:"" help:"Show images' configuration and layers as JSON."`
	Import  importCmd  `cmd:"" help:"Make an image of a root file system tarball."`
	Save    saveCmd    `cmd:"" help:"Write images to a docker-archive or oci-archive."`
	Load    loadCmd    `cmd:"" help:"Store the images of a docker-archive or oci-archive."`
	Unshare unshareCmd `cmd:"" help:"Run a command as root of urun's user namespace (where the store's files have their owners)."`

	PrepareContainer prepareContainerCmd `cmd:"" hidden:"" help:"Make a container record for an image and print its directories and config as JSON (urun run's store step)."`
	RemoveContainer  removeContainerCmd  `cmd:"" hidden:"" help:"Remove a container record and its writable layer."`
}

func main() {
	trace.Open()
	trace.Main()
	container.Register(openImages)
	registerStoreEntry()
	if image.Init() || reexec.Init() {
		return
	}
	code := run(os.Args[1:])
	trace.SinceMark("teardown")
	os.Exit(code)
}

// run parses args, runs the command and returns the exit code: the
// single exit point that prints errors.
func run(args []string) int {
	var c cli
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	parser, err := kong.New(&c,
		kong.Name("urun"),
		kong.Description("Rootless containers: the root filesystem is a ufs union, the process runs in new user (subuid-mapped), mount, pid, ipc, uts, cgroup and network namespaces."),
		kong.BindTo(ctx, (*context.Context)(nil)),
		kong.Bind(&c.globals),
		kong.UsageOnError(),
		kong.Exit(func(code int) {
			if code != 0 {
				code = container.ExitSetup
			}
			os.Exit(code)
		}),
	)
	if err != nil {
		fmt.Fprintf(os.Stderr, "Error: %v\n", err)
		return container.ExitSetup
	}
	k, err := parser.Parse(shortForm(parser, args))
	if err != nil {
		fmt.Fprintf(os.Stderr, "Error: %v\n", err)
		return container.ExitSetup
	}
	err = k.Run()
	var ec *exitCodeError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ec):
		if ec.Err != nil {
			fmt.Fprintf(os.Stderr, "Error: %v\n", ec.Err)
		}
		return ec.Code
	default:
		fmt.Fprintf(os.Stderr, "Error: %v\n", err)
		return container.ExitSetup
	}
}

func (g *globals) logger() *slog.Logger {
	var lvl slog.Level
	lvl.UnmarshalText([]byte(g.LogLevel))
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
}

// shortForm turns "urun [GLOBAL FLAGS] IMAGE [CMD...]" into
// "urun [GLOBAL FLAGS] run IMAGE [CMD...]": a first word that is not a
// command names an image, as in "urun fedora echo hello".
func shortForm(parser *kong.Kong, args []string) []string {
	commands := map[string]bool{}
	for _, n := range parser.Model.Children {
		commands[n.Name] = true
		for _, a := range n.Aliases {
			commands[a] = true
		}
	}
	valued := map[string]bool{}
	for _, f := range parser.Model.Flags {
		if !f.IsBool() {
			valued["--"+f.Name] = true
			if f.Short != 0 {
				valued["-"+string(f.Short)] = true
			}
		}
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			return args
		case strings.HasPrefix(a, "-"):
			if valued[a] {
				i++ // its value
			}
		case commands[a]:
			return args
		default:
			return append(append(append([]string(nil), args[:i]...), "run"), args[i:]...)
		}
	}
	return args
}
