package main

import (
	"path/filepath"
	"strings"
)

// compatArgs rewrites the command lines other programs use into
// "ufs mount ...":
//
//	ufs [-f] [-d] -o OPTS [-o OPTS]... TARGET    fuse-overlayfs, as containers-storage's mount_program
//	ufs SOURCE TARGET [-o OPTS] [-n] [-s] [-v]   a mount(8) helper (mount -t fuse.ufs, mount.fuse.ufs)
//
// argv0 is the name the program was called by; args are the arguments
// after it. Command lines that start with a subcommand or a help flag are
// left alone.
func compatArgs(argv0 string, args []string) []string {
	helper := strings.HasPrefix(filepath.Base(argv0), "mount.")
	if !helper && (len(args) == 0 || isSubcommand(args[0])) {
		return args
	}
	out := []string{"mount"}
	var pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "-o" && i+1 < len(args):
			out = append(out, "-o", args[i+1])
			i++
		case strings.HasPrefix(a, "-o") && len(a) > 2:
			out = append(out, "-o", a[2:])
		case a == "-f":
			out = append(out, "-f")
		case a == "-d" || a == "--debug":
			out = append(out, "-o", "debug")
		case a == "-n" || a == "-s" || a == "-v" || a == "-s2":
			// mount(8) helper flags: no mtab, sloppy, verbose.
		case a == "--":
			pos = append(pos, args[i+1:]...)
			i = len(args)
		default:
			pos = append(pos, a)
		}
	}
	if len(pos) == 2 {
		// SOURCE TARGET: the source names nothing for a union.
		pos = pos[1:]
	}
	return append(out, pos...)
}

func isSubcommand(a string) bool {
	switch a {
	case "mount", "unmount", "help", "--help", "-h":
		return true
	}
	return false
}
