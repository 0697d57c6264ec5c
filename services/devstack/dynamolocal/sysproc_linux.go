package dynamolocal

import "syscall"

// groupAttr starts the child in a process group of its own (so a stop
// reaches whatever it started), killed by the kernel if this process dies
// without stopping it.
func groupAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
