//go:build unix && !linux

package devstack

import "syscall"

// sysProcAttr puts a child in its own process group. (Only Linux can also
// tie the child's life to the launcher's.)
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
