package main

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// separateCPUs gives the database server (every process of the postmaster serverPID's process
// group: the postmaster, its background workers and the backends it forks later) the first half
// of the CPUs this process may use, and this process (every thread; pgbench, which it starts,
// inherits them) the other half — as deployed, where the state manager runs in Lambda and the
// database on RDS, so the state manager's CPU never competes with the database's. It returns a
// function that gives both back every CPU they had. It fails on a machine with fewer than two
// CPUs.
func separateCPUs(serverPID int) (restore func() error, err error) {
	var all unix.CPUSet
	if err := unix.SchedGetaffinity(0, &all); err != nil {
		return nil, fmt.Errorf("reading this process's CPUs: %w", err)
	}
	var cpus []int
	for c := range 1024 {
		if all.IsSet(c) {
			cpus = append(cpus, c)
		}
	}
	if len(cpus) < 2 {
		return nil, fmt.Errorf("separating the server's CPUs from the clients' needs two CPUs; this process may use %d", len(cpus))
	}
	if serverPID <= 0 {
		return nil, errors.New("separating the server's CPUs: the server is not running or not ours")
	}
	var server, clients unix.CPUSet
	for i, c := range cpus {
		if i < len(cpus)/2 {
			server.Set(c)
		} else {
			clients.Set(c)
		}
	}
	pin := func(serverSet, clientSet *unix.CPUSet) error {
		group, err := processGroup(serverPID)
		if err != nil {
			return err
		}
		for _, pid := range group {
			if err := setThreads(pid, serverSet); err != nil {
				return err
			}
		}
		return setThreads(os.Getpid(), clientSet)
	}
	if err := pin(&server, &clients); err != nil {
		return nil, err
	}
	// The Go runtime sized GOMAXPROCS by the CPUs it had at start: with more Ps than CPUs, idle
	// Ps spin on the clients' CPUs looking for work, as a Lambda function whose GOMAXPROCS
	// matches its vCPUs never does.
	procs := runtime.GOMAXPROCS(clients.Count())
	return func() error {
		runtime.GOMAXPROCS(procs)
		return pin(&all, &all)
	}, nil
}

// processGroup lists the processes whose process group is pgid.
func processGroup(pgid int) ([]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("listing processes: %w", err)
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // gone meanwhile
		}
		// The fields after the command name, which is in parentheses and may hold spaces:
		// state, ppid, pgrp, …
		fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		if len(fields) > 2 && fields[2] == strconv.Itoa(pgid) {
			pids = append(pids, pid)
		}
	}
	if len(pids) == 0 {
		return nil, fmt.Errorf("no process in group %d", pgid)
	}
	return pids, nil
}

// setThreads sets the CPUs of every thread of process pid (an affinity belongs to a thread;
// threads started later inherit their creator's).
func setThreads(pid int, set *unix.CPUSet) error {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return fmt.Errorf("listing the threads of process %d: %w", pid, err)
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		if err := unix.SchedSetaffinity(tid, set); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("setting the CPUs of thread %d of process %d: %w", tid, pid, err)
		}
	}
	return nil
}
