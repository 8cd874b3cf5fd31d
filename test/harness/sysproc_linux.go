package harness

import "syscall"

// childAttr puts a child in its own process group, so that it and its own
// children can be signalled together, and has the kernel SIGKILL it when the
// test process dies, so no server outlives a crashed or timed-out test run.
// Credential, when set, is applied before Pdeathsig in the child (see
// syscall.forkAndExecInChild), so the signal survives the change of user.
func childAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL, Credential: cred}
}
