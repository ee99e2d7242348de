module github.com/urun-dev/urun

go 1.26.8

require (
	github.com/alecthomas/kong v1.17.0 // indirect
	github.com/hanwen/go-fuse/v2 v2.12.1 // indirect
	golang.org/x/sys v0.50.0 // indirect
	golang.org/x/term v0.48.0 // indirect
)
