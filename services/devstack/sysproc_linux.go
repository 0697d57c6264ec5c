package devstack

import "syscall"

// sysProcAttr puts a child in its own process group and has the kernel kill
// it if the launcher dies without cleaning up (SIGKILL, a crash), so no
// emulator or service is left behind holding its port.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
