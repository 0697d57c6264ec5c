//go:build unix && !linux

package dynamolocal

import "syscall"

// groupAttr starts the child in a process group of its own; only Linux can
// also have the kernel kill it when this process dies.
func groupAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }
