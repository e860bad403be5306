package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"
)

// The benchmark runs as three kinds of process, all of them this binary:
//
//   - the coordinator (main): runs the scenarios one after another, prints
//     the table and writes the markdown;
//   - one scenario process per broker and fleet size: it hosts the daemon
//     (and the embedded broker), so that its RSS is the daemon's alone and
//     no scenario inherits the heap of the one before;
//   - the scenario's devices process: the simulated fleet. Devices and daemon
//     apart also keep each process under the 20,000 open files allowed here:
//     with the embedded broker, 10,047 connections are two files each in one
//     process.
//
// A child is started with childFlag and its role, and answers requests in
// JSON lines on its stdin and stdout; its stderr is the parent's, for
// progress lines and the daemon's warnings.
const childFlag = "-loaxa-bench-child"

const (
	roleScenario = "scenario"
	roleDevices  = "devices"
)

// childRole reports whether args (os.Args) start a child, and which.
func childRole(args []string) (string, bool) {
	if len(args) == 3 && args[1] == childFlag {
		return args[2], true
	}
	return "", false
}

// handler serves a child's requests. Requests come one at a time.
type handler interface {
	handle(ctx context.Context, op string, args json.RawMessage) (any, error)
	close()
}

// runChild is main for a child process: it serves requests until its
// parent closes stdin, and returns the exit code.
func runChild(role string, stdin io.Reader, stdout, stderr io.Writer) int {
	// An interrupt at the terminal reaches every process of the group; the
	// child stops serving and cleans up (a scenario stops its Mosquitto),
	// rather than dying with temporary directories left behind.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if _, err := raiseFileLimit(); err != nil {
		fmt.Fprintf(stderr, "loaxa-bench %s: %v\n", role, err)
	}
	var h handler
	switch role {
	case roleScenario:
		h = &scenarioServer{log: stderr}
	case roleDevices:
		h = newFleet(stderr)
	default:
		fmt.Fprintf(stderr, "loaxa-bench: unknown child role %q\n", role)
		return 2
	}
	defer h.close()
	if err := serve(ctx, stdin, stdout, h); err != nil {
		fmt.Fprintf(stderr, "loaxa-bench %s: %v\n", role, err)
		return 1
	}
	return 0
}

// envelope is a request (Op, Args) or a reply (Result or Err).
type envelope struct {
	Op     string          `json:"op,omitempty"`
	Args   json.RawMessage `json:"args,omitempty"`
	Result json.RawMessage `json:"result,omitempty"`
	Err    string          `json:"err,omitempty"`
}

func serve(ctx context.Context, r io.Reader, w io.Writer, h handler) error {
	dec, enc := json.NewDecoder(r), json.NewEncoder(w)
	for {
		var req envelope
		if err := dec.Decode(&req); err != nil {
			if errors.Is(err, io.EOF) {
				return nil // the parent is done with us
			}
			return fmt.Errorf("read a request: %w", err)
		}
		var rep envelope
		res, err := h.handle(ctx, req.Op, req.Args)
		if err == nil {
			rep.Result, err = json.Marshal(res)
		}
		if err != nil {
			rep.Err = err.Error()
		}
		if err := enc.Encode(rep); err != nil {
			return fmt.Errorf("answer %s: %w", req.Op, err)
		}
	}
}

// child is the parent's end of a child process.
type child struct {
	role    string
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	enc     *json.Encoder
	dec     *json.Decoder
	exited  chan struct{}
	waitErr error
}

func startChild(ctx context.Context, role string, stderr io.Writer) (*child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("start the %s process: %w", role, err)
	}
	cmd := exec.Command(exe, childFlag, role)
	cmd.Stderr = stderr
	cmd.SysProcAttr = childAttr()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("start the %s process: %w", role, err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("start the %s process: %w", role, err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the %s process: %w", role, err)
	}
	c := &child{role: role, cmd: cmd, stdin: stdin, enc: json.NewEncoder(stdin), dec: json.NewDecoder(stdout), exited: make(chan struct{})}
	go func() {
		c.waitErr = cmd.Wait()
		close(c.exited)
	}()
	// A cancelled run kills the child, which also ends a call waiting for
	// its answer.
	go func() {
		select {
		case <-ctx.Done():
			_ = cmd.Process.Kill()
		case <-c.exited:
		}
	}()
	return c, nil
}

// call sends one request and decodes the answer into result.
func (c *child) call(op string, args, result any) error {
	raw, err := json.Marshal(args)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if err := c.enc.Encode(envelope{Op: op, Args: raw}); err != nil {
		return fmt.Errorf("%s: the %s process is gone: %w", op, c.role, err)
	}
	var rep envelope
	if err := c.dec.Decode(&rep); err != nil {
		return fmt.Errorf("%s: the %s process did not answer: %w", op, c.role, err)
	}
	if rep.Err != "" {
		return fmt.Errorf("%s: %s", op, rep.Err)
	}
	if result != nil {
		if err := json.Unmarshal(rep.Result, result); err != nil {
			return fmt.Errorf("%s: decode the answer: %w", op, err)
		}
	}
	return nil
}

// close ends the child: its stdin closes, it cleans up and exits; after
// grace it is killed.
func (c *child) close(grace time.Duration) error {
	_ = c.stdin.Close()
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-c.exited:
	case <-t.C:
		_ = c.cmd.Process.Kill()
		<-c.exited
		return fmt.Errorf("the %s process did not exit within %s; killed", c.role, grace)
	}
	return c.waitErr
}
