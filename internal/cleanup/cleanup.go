// Package cleanup undoes partial work: steps are pushed as they succeed and
// run in reverse order unless the whole operation succeeded.
//
//	var undo cleanup.Stack
//	defer undo.Run()
//	... undo.Add(func() { remove(x) }) ...
//	undo.Release() // success: keep everything
package cleanup

// Stack is a stack of undo steps. The zero value is ready to use.
type Stack struct {
	fns []func()
}

// Add pushes an undo step.
func (s *Stack) Add(fn func()) { s.fns = append(s.fns, fn) }

// Run runs the steps not released, last added first, once.
func (s *Stack) Run() {
	for i := len(s.fns) - 1; i >= 0; i-- {
		s.fns[i]()
	}
	s.fns = nil
}

// Release forgets the steps: the work they would undo is kept.
func (s *Stack) Release() { s.fns = nil }
