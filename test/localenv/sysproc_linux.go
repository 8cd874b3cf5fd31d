package localenv

import "syscall"

// ChildAttr puts a child in its own process group, so that it and its own
// children can be signalled together, and has the kernel SIGKILL it when the
// process that started it dies, so no server outlives a crashed or
// interrupted run.
// Credential, when set, is applied before Pdeathsig in the child (see
// syscall.forkAndExecInChild), so the signal survives the change of user.
func ChildAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL, Credential: cred}
}
