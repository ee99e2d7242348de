//go:build !(linux && amd64)

package seccomp

// syscallNumbers is empty where no table was generated: Compile refuses.
var syscallNumbers = map[string]int{}
