//go:build unix && !linux

package harness

import "syscall"

// childAttr puts a child in its own process group. Only Linux can have the
// kernel kill children when the test process dies; elsewhere Main's cleanup
// is all there is.
func childAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Credential: cred}
}
