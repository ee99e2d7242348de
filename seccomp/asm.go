package seccomp

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// label names a place in the program, for forward jumps only (classic BPF
// cannot jump back).
type label int

// asm assembles classic BPF with labels. Conditional jumps only ever skip
// zero or one instruction; a jump to a label is an unconditional "ja" with
// a 32-bit offset, so no program is limited by the 8-bit offsets of the
// conditional jumps.
type asm struct {
	insns  []unix.SockFilter
	target []label // per instruction: the label a "ja" goes to, or -1
	places []int   // per label: the index of the instruction it names, or -1
}

func (a *asm) newLabel() label {
	a.places = append(a.places, -1)
	return label(len(a.places) - 1)
}

// place puts l before the next instruction.
func (a *asm) place(l label) { a.places[l] = len(a.insns) }

// skip returns a label placed n instructions after the jump that uses it.
func (a *asm) skip(n int) label {
	l := a.newLabel()
	a.places[l] = len(a.insns) + 2 + n // after the conditional jump and its "ja"
	return l
}

func (a *asm) emit(code uint16, k uint32, jt, jf uint8, to label) {
	a.insns = append(a.insns, unix.SockFilter{Code: code, Jt: jt, Jf: jf, K: k})
	a.target = append(a.target, to)
}

func (a *asm) load(off uint32) { a.emit(unix.BPF_LD|unix.BPF_W|unix.BPF_ABS, off, 0, 0, -1) }
func (a *asm) and(k uint32)    { a.emit(unix.BPF_ALU|unix.BPF_AND|unix.BPF_K, k, 0, 0, -1) }
func (a *asm) ret(k uint32)    { a.emit(unix.BPF_RET|unix.BPF_K, k, 0, 0, -1) }
func (a *asm) jump(to label)   { a.emit(unix.BPF_JMP|unix.BPF_JA, 0, 0, 0, to) }

// jumpIf goes to l when "A op k" holds (op is BPF_JEQ, BPF_JGT or BPF_JGE).
func (a *asm) jumpIf(op uint16, k uint32, l label) {
	a.emit(unix.BPF_JMP|op|unix.BPF_K, k, 0, 1, -1)
	a.jump(l)
}

// jumpUnless goes to l when "A op k" does not hold.
func (a *asm) jumpUnless(op uint16, k uint32, l label) {
	a.emit(unix.BPF_JMP|op|unix.BPF_K, k, 1, 0, -1)
	a.jump(l)
}

// link resolves the labels.
func (a *asm) link() ([]unix.SockFilter, error) {
	out := make([]unix.SockFilter, len(a.insns))
	copy(out, a.insns)
	for i, l := range a.target {
		if l < 0 {
			continue
		}
		at := a.places[l]
		if at <= i || at > len(out) {
			return nil, fmt.Errorf("seccomp: internal error: jump at %d to label %d at %d", i, l, at)
		}
		out[i].K = uint32(at - i - 1)
	}
	return out, nil
}
