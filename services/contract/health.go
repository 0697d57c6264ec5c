package contract

import "strconv"

// Ports the services listen on in a task (HERALD_HTTP_ADDR's defaults).
const (
	APIPort    = 8080
	SenderPort = 8081
)

// Health paths. Both services answer LivePath; the platform (load
// balancer, App Mesh, the container health check) asks the original
// design's paths.
const (
	// LivePath answers 200 while the process works (both services).
	LivePath = "/healthz"
	// ReadyPath is the API's readiness: the queue reachable, the API key
	// secret's version in use.
	ReadyPath = "/readyz"
	// APIHealthPath is what the load balancer and App Mesh check on the API.
	APIHealthPath = "/api"
	// SenderHealthPath is what App Mesh and the container health check ask
	// the sender: 200 while its poll loop makes progress.
	SenderHealthPath = "/api/notification/send-email"
)

// Port is the port svc listens on in a task.
func Port(svc Service) int {
	if svc == Sender {
		return SenderPort
	}
	return APIPort
}

// ListenAddr is svc's HERALD_HTTP_ADDR in a task: every interface, its port.
func ListenAddr(svc Service) string { return ":" + strconv.Itoa(Port(svc)) }

// HealthPath is the path the platform checks on svc.
func HealthPath(svc Service) string {
	if svc == Sender {
		return SenderHealthPath
	}
	return APIHealthPath
}
