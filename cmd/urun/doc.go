// Command urun runs rootless containers: "urun run [FLAGS] --rootfs DIR
// CMD…", "urun run [FLAGS] IMAGE [CMD…]" or the short form "urun IMAGE
// [CMD…]", and manages images (pull, images, rmi, tag, untag, inspect,
// import, save, load, unshare). Each subcommand is a kong struct with a Run
// method in a file of its own; errors go back to the single exit point in
// main.go, which prints them as podman does ("Error: …") and sets the exit
// code.
package main
