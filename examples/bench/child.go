package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
)

// Scenarios with Measure (saturate, idle) measure the whole process: its
// resident set and heap. A process that ran a system before still holds
// that system's heap (the runtime returns memory to the OS lazily) and its
// VmHWM, so each of their runs is a fresh child process of this command,
// started with childArg, that runs nothing else: it brings up the system,
// measures it and prints its Result as one JSON line on stdout. Its stderr
// is the parent's.

// childArg, as the first argument, makes the command such a child. It is
// not a flag for users (-help does not list it); the rest of the command
// line is the scenario, the system and the Options in JSON.
const childArg = "-measure-in-child"

// measureInChild runs sc once against system in a child process and
// returns the child's result.
func measureInChild(sc *Scenario, system string, opts Options, stderr io.Writer) (Result, error) {
	exe, err := os.Executable()
	if err != nil {
		return Result{}, fmt.Errorf("starting a child process: %w", err)
	}
	optsJSON, err := json.Marshal(opts)
	if err != nil {
		return Result{}, err
	}
	var stdout bytes.Buffer
	cmd := exec.Command(exe, childArg, sc.Name, system, string(optsJSON))
	cmd.Stdout, cmd.Stderr = &stdout, stderr
	runErr := cmd.Run()
	var res Result
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		return Result{}, errors.Join(fmt.Errorf("child process printed no result: %w", err), runErr)
	}
	if res.Error != "" {
		return res, errors.New(res.Error)
	}
	return res, runErr
}

// runChild is the child's side: args are what follows childArg. A run
// that fails still prints its result, with Error set.
func runChild(args []string, stdout io.Writer) error {
	if len(args) != 3 {
		return fmt.Errorf("%s: want a scenario, a system and options", childArg)
	}
	sc := findScenario(args[0])
	if sc == nil || sc.Measure == nil {
		return fmt.Errorf("%s: %q is not a scenario measured in a child process", childArg, args[0])
	}
	var opts Options
	if err := json.Unmarshal([]byte(args[2]), &opts); err != nil {
		return fmt.Errorf("%s: options: %w", childArg, err)
	}
	res, err := sc.Measure(args[1], opts)
	res.Scenario, res.System = sc.Name, args[1]
	if err != nil {
		res.Error = err.Error()
	}
	return json.NewEncoder(stdout).Encode(res)
}
