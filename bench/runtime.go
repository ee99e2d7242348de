package bench

import "context"

// RunRuntime runs the runtime part.
func RunRuntime(ctx context.Context, cfg *Config, rep *Report) error {
	return nil
}

func (r *Report) writeRuntime(p func(string, ...any)) {}
