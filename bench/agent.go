package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The rootless agent is this program run as an unprivileged user inside a
// user and mount namespace of that user, driven over its stdin and stdout
// with one JSON object per line.

type agentRequest struct {
	Op       string   `json:"op"` // hello, open, measure, close, exec
	ID       int      `json:"id,omitempty"`
	Impl     Impl     `json:"impl,omitzero"`
	Workload string   `json:"workload,omitempty"`
	Argv     []string `json:"argv,omitempty"` // exec: the command, timed end to end
	Env      []string `json:"env,omitempty"`
	Dir      string   `json:"dir,omitempty"`
}

type agentReply struct {
	ID     int    `json:"id,omitempty"`
	Sample Sample `json:"sample,omitzero"`
	Info   string `json:"info,omitempty"`
	Err    string `json:"err,omitempty"`
}

// AgentConfig is what the agent is started with.
type AgentConfig struct {
	FixtureDir string // "" for an agent that only runs commands
	ScratchDir string
	UfsBin     string
	AsUser     bool // as root: run as the unprivileged user (runuser)
	UserNS     bool // in a user namespace of that user, with its subordinate ids
	MountNS    bool // in a private mount namespace (implied by UserNS)
}

// ServeAgent answers requests from in until it reaches EOF (the harness
// ended, or died), then unmounts everything it mounted.
func ServeAgent(ctx context.Context, cfg AgentConfig, in io.Reader, out io.Writer) error {
	var fx *Fixture
	if cfg.FixtureDir != "" {
		var err error
		if fx, err = loadFixture(cfg.FixtureDir); err != nil {
			return fmt.Errorf("agent: %w", err)
		}
	}
	ex := newLocalExecutor(fx, cfg.ScratchDir, cfg.UfsBin)
	var err error
	defer ex.Shutdown()
	dec, enc := json.NewDecoder(in), json.NewEncoder(out)
	for {
		var req agentRequest
		if err := dec.Decode(&req); err != nil {
			if errors.Is(err, io.EOF) {
				return ex.Shutdown()
			}
			return fmt.Errorf("agent: read request: %w", err)
		}
		var rep agentReply
		switch req.Op {
		case "hello":
			b, _ := os.ReadFile("/proc/self/uid_map")
			rep.Info = fmt.Sprintf("uid %d, uid_map %s", os.Geteuid(), strings.Join(strings.Fields(string(b)), " "))
		case "open":
			rep.ID, err = ex.Open(ctx, req.Impl, req.Workload)
		case "measure":
			rep.Sample, err = ex.Measure(ctx, req.ID)
		case "close":
			err = ex.Close(ctx, req.ID)
		case "exec":
			rep.Sample, rep.Info, err = timeCommand(ctx, req.Argv, req.Env, req.Dir)
		default:
			err = fmt.Errorf("unknown request %q", req.Op)
		}
		if err != nil {
			rep.Err = err.Error()
			err = nil
		}
		if err := enc.Encode(&rep); err != nil {
			return fmt.Errorf("agent: write reply: %w", err)
		}
	}
}

// agentExecutor drives a rootless agent.
type agentExecutor struct {
	mu     sync.Mutex
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	dec    *json.Decoder
	stderr *bytes.Buffer
	Info   string // what the agent says of its namespace
}

var _ Executor = (*agentExecutor)(nil)

// startAgent starts a copy of self that serves requests: as shift.User
// (AsUser, when we are root), in a new user namespace of that user (0
// mapped to the user, 1..Count to its subordinate ids, through newuidmap),
// in a private mount namespace. A private mount namespace keeps the
// scratch mounts out of the host's: a mount namespace someone else creates
// meanwhile would otherwise hold a copy of them, keep them alive after our
// unmount, and keep their FUSE helpers running.
func startAgent(ctx context.Context, self string, shift IDShift, cfg AgentConfig) (*agentExecutor, error) {
	args := []string{self, "agent", "--fixture=" + cfg.FixtureDir, "--scratch=" + cfg.ScratchDir, "--ufs=" + cfg.UfsBin}
	switch {
	case cfg.UserNS:
		args = append([]string{
			"unshare", "--map-root-user",
			"--map-users=" + strconv.Itoa(shift.SubUID) + ",1," + strconv.Itoa(shift.Count),
			"--map-groups=" + strconv.Itoa(shift.SubGID) + ",1," + strconv.Itoa(shift.Count),
			"--mount", "--propagation=private",
		}, args...)
	case cfg.MountNS:
		args = append([]string{"unshare", "--mount", "--propagation=private"}, args...)
	}
	if cfg.AsUser && os.Geteuid() == 0 {
		args = append([]string{"runuser", "-u", shift.User, "--"}, args...)
	}
	name, args := args[0], args[1:]
	// Not cancelled with ctx: on an interrupt the agent is asked to stop
	// (its stdin closes) and unmounts what it holds before it exits.
	a := &agentExecutor{cmd: command(context.WithoutCancel(ctx), name, args...), stderr: new(bytes.Buffer)}
	a.cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin", "LANG=C"}
	a.cmd.Stderr = a.stderr
	var err error
	if a.stdin, err = a.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	stdout, err := a.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	a.dec = json.NewDecoder(bufio.NewReader(stdout))
	if err := a.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the agent: %w", err)
	}
	rep, err := a.call(agentRequest{Op: "hello"})
	if err != nil {
		return nil, errors.Join(err, a.Shutdown())
	}
	a.Info = rep.Info
	return a, nil
}

func (a *agentExecutor) call(req agentRequest) (agentReply, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	var rep agentReply
	if err := json.NewEncoder(a.stdin).Encode(&req); err != nil {
		return rep, fmt.Errorf("agent: %w (%s)", err, tail(a.stderr))
	}
	if err := a.dec.Decode(&rep); err != nil {
		return rep, fmt.Errorf("agent gave no reply: %w (%s)", err, tail(a.stderr))
	}
	if rep.Err != "" {
		return rep, errors.New(rep.Err)
	}
	return rep, nil
}

func tail(b *bytes.Buffer) string {
	s := strings.TrimSpace(b.String())
	if len(s) > 800 {
		s = "…" + s[len(s)-800:]
	}
	if s == "" {
		return "no output"
	}
	return s
}

func (a *agentExecutor) Open(_ context.Context, impl Impl, workload string) (int, error) {
	rep, err := a.call(agentRequest{Op: "open", Impl: impl, Workload: workload})
	return rep.ID, err
}

func (a *agentExecutor) Measure(_ context.Context, id int) (Sample, error) {
	rep, err := a.call(agentRequest{Op: "measure", ID: id})
	return rep.Sample, err
}

// Exec runs a command as the agent's user and times it end to end; it
// returns the command's standard output.
func (a *agentExecutor) Exec(argv, env []string, dir string) (Sample, string, error) {
	rep, err := a.call(agentRequest{Op: "exec", Argv: argv, Env: env, Dir: dir})
	return rep.Sample, rep.Info, err
}

// timeCommand runs argv and returns its wall time and standard output.
func timeCommand(ctx context.Context, argv, env []string, dir string) (Sample, string, error) {
	if len(argv) == 0 {
		return Sample{}, "", errors.New("exec: no command")
	}
	cmd := command(ctx, argv[0], argv[1:]...)
	cmd.Env, cmd.Dir = env, dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	if slices.ContainsFunc(env, func(v string) bool { return strings.HasPrefix(v, envTrace+"=") }) {
		// urun's phase "start" runs from here to its main.
		cmd.Env = append(slices.Clone(env), fmt.Sprintf("%s=%d", envTraceStart, start.UnixNano()))
	}
	err := cmd.Run()
	s := Sample{Dur: time.Since(start)}
	if err != nil {
		return Sample{}, stdout.String(), cmdError(cmd, err, stderr.Bytes())
	}
	return s, stdout.String(), nil
}

func (a *agentExecutor) Close(_ context.Context, id int) error {
	_, err := a.call(agentRequest{Op: "close", ID: id})
	return err
}

// Shutdown closes the agent's stdin; it unmounts what it holds and exits.
func (a *agentExecutor) Shutdown() error {
	a.stdin.Close()
	done := make(chan error, 1)
	go func() { done <- a.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("agent: %w (%s)", err, tail(a.stderr))
		}
		return nil
	case <-time.After(60 * time.Second):
		_ = a.cmd.Process.Kill()
		<-done
		return errors.New("agent did not exit within a minute of its shutdown; killed")
	}
}
