package bench

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Executor runs instances and workloads for one kind of caller.
type Executor interface {
	// Open mounts a fresh instance of impl for the workload and runs the
	// workload's untimed preparation on it.
	Open(ctx context.Context, impl Impl, workload string) (int, error)
	// Measure runs the timed step on an open instance.
	Measure(ctx context.Context, id int) (Sample, error)
	// Close unmounts the instance and removes its scratch directory.
	Close(ctx context.Context, id int) error
	// Shutdown closes everything still open.
	Shutdown() error
}

// localExecutor runs instances in this process.
type localExecutor struct {
	fx      *Fixture
	scratch string
	ufsBin  string
	next    int
	open    map[int]*openInstance
}

type openInstance struct {
	inst  *instance
	w     *Workload
	env   *wenv
	state any
}

var _ Executor = (*localExecutor)(nil)

func newLocalExecutor(fx *Fixture, scratch, ufsBin string) *localExecutor {
	return &localExecutor{fx: fx, scratch: scratch, ufsBin: ufsBin, open: map[int]*openInstance{}}
}

func (l *localExecutor) Open(ctx context.Context, impl Impl, workload string) (int, error) {
	w := WorkloadByName(workload)
	if w == nil {
		return 0, fmt.Errorf("unknown workload %q", workload)
	}
	inst, err := mountInstance(ctx, impl, l.fx, w.Stack, w.Mutates, l.scratch, l.ufsBin)
	if err != nil {
		return 0, err
	}
	oi := &openInstance{inst: inst, w: w, env: &wenv{root: inst.root, upper: inst.upper, fx: l.fx, stack: l.fx.Stacks[w.Stack]}}
	if w.Prep != nil {
		if oi.state, err = w.Prep(ctx, oi.env); err != nil {
			return 0, errors.Join(fmt.Errorf("prepare %s: %w", w.Name, err), inst.close())
		}
	}
	l.next++
	l.open[l.next] = oi
	return l.next, nil
}

func (l *localExecutor) Measure(ctx context.Context, id int) (Sample, error) {
	oi := l.open[id]
	if oi == nil {
		return Sample{}, fmt.Errorf("no open instance %d", id)
	}
	start := time.Now()
	s, err := oi.w.Run(ctx, oi.env, oi.state)
	wall := time.Since(start)
	if err != nil {
		return Sample{}, err
	}
	if s.Dur == 0 {
		s.Dur = wall
	}
	return s, nil
}

func (l *localExecutor) Close(_ context.Context, id int) error {
	oi := l.open[id]
	if oi == nil {
		return fmt.Errorf("no open instance %d", id)
	}
	delete(l.open, id)
	return oi.inst.close()
}

func (l *localExecutor) Shutdown() error {
	var errs []error
	for id, oi := range l.open {
		errs = append(errs, oi.inst.close())
		delete(l.open, id)
	}
	return errors.Join(errs...)
}
