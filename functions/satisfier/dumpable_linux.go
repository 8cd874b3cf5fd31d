package main

import "golang.org/x/sys/unix"

// notDumpable makes the process non-dumpable (prctl PR_SET_DUMPABLE 0): then only a privileged
// process may read its /proc/<pid>/environ and memory, so Terraform and its providers, running
// as the same user, cannot read the credentials the satisfier keeps for its own code.
func notDumpable() error {
	return unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0)
}
