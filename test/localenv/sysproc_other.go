//go:build unix && !linux

package localenv

import "syscall"

// ChildAttr puts a child in its own process group. Only Linux can have the
// kernel kill children when their parent dies; elsewhere the
// caller's cleanup is all there is.
func ChildAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Credential: cred}
}
